# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Session-wide real parts: one moto server and one PostgreSQL 15 cluster with a tablespace,
pgbench data and WAL archived by barman-cloud-wal-archive to the destination the tests
back up to (a restore needs the WAL next to the base backup)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from testbed import MotoServer, PostgresCluster  # noqa: E402  pylint: disable=wrong-import-position

SCALE = int(os.environ.get("PGCLOUD_TEST_SCALE", "5"))
BUCKET = "pgcloud-it"
URL = "s3://%s/clusters" % BUCKET
SERVER = "it"
TABLESPACE = "ts_it"


class Bed:
    """What the tests share: the store, the source cluster, and where its backups go."""

    def __init__(self, workdir, moto, cluster):
        self.workdir = workdir
        self.moto = moto
        self.cluster = cluster
        self.url = URL
        self.server = SERVER
        self.bucket = BUCKET
        self.tablespace = TABLESPACE

    def variables(self, **extra):
        """Extra variables for the test playbooks: destination, store and server."""
        base = {"destination_url": self.url, "server_name": self.server, "endpoint_url": self.moto.endpoint_url,
                "pg_host": self.cluster.workdir, "pg_port": self.cluster.port}
        base.update(extra)
        return base

    def fresh_destination(self):
        """A server name of its own, for tests that look at everything under it."""
        return "solo-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def bed():
    workdir = tempfile.mkdtemp(prefix="pgcloud-it-")
    shutil.chown(workdir, "postgres", "postgres")
    os.chmod(workdir, 0o755)
    moto = MotoServer(workdir).start()
    cluster = PostgresCluster(workdir)
    try:
        moto.create_bucket(BUCKET)
        cluster.initdb()
        cluster.archive_to(moto, URL, SERVER)
        cluster.start()
        cluster.create_tablespace(TABLESPACE)
        cluster.load_data(SCALE, TABLESPACE)
        yield Bed(workdir, moto, cluster)
    finally:
        cluster.stop("immediate")
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)
