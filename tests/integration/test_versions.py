# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every PostgreSQL major still in use (13 to 18), as a real server, backed up and restored.

Each major gets a cluster of its own (with a tablespace, pgbench data and WAL archived next
to the backup by the collection's `pgcloud-backup wal-archive`), is backed up by base_backup while pgbench writes, and is restored by
barman-cloud-restore (its WAL by barman-cloud-wal-restore); pg_verifybackup checks the restored files against the backup's
backup_manifest; then the copy is started with the same major's binaries, checked with
pg_amcheck and compared with the source. 15 is Debian's; the others come from scripts/setup.sh.
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest

from testbed import (
    MotoServer,
    StorageTarget,
    backup_module_args,
    backup_show,
    pg_bin_of,
    restore_and_verify,
    run_module,
    server_major,
    verify_backup,
)
from wal_host import CollectionArchivedCluster

MAJORS = (13, 14, 15, 16, 17, 18)
TABLESPACE = "testbed_space"


@pytest.fixture
def archived_bucket(moto: MotoServer, request: pytest.FixtureRequest) -> Iterator[StorageTarget]:
    """A bucket of this test's own on moto, deleted afterwards."""
    target = moto.target(moto.create_bucket(), "pg/%s" % request.node.callspec.id, "versions")
    yield target
    moto.delete_bucket(target.bucket)


@pytest.mark.parametrize("major", MAJORS, ids=["pg%d" % major for major in MAJORS])
def test_each_major_backs_up_and_restores(archived_bucket, major):
    # WAL archived by the collection's own command, replayed by barman-cloud-wal-restore.
    with CollectionArchivedCluster("pg%d" % major, archived_bucket, tablespace=TABLESPACE,
                                   pg_bin=pg_bin_of(major)) as cluster:
        assert int(cluster.scalar("SHOW server_version_num")) // 10000 == major
        cluster.load_data(1)
        with cluster.pgbench_running(clients=2, rate=100):
            run = run_module("base_backup", backup_module_args(cluster, archived_bucket, compression="lz4", jobs=2))
        assert run.rc == 0 and run.result["status"] == "DONE", run.result
        backup_id = run.result["backup_id"]
        assert backup_show(archived_bucket, backup_id)["version"] == int(cluster.scalar("SHOW server_version_num"))

        archived = cluster.switch_wal_and_wait()
        # The command logs each file it stores to stderr, which is the server's log.
        assert re.search(r"pgcloud-backup: %s (stored|present)" % archived, cluster.log_file.read_text()), archived
        expected = cluster.fingerprint()
        checked = []

        def check_files(pgdata):
            checked.append((server_major(pgdata), verify_backup(pgdata)))

        restored = restore_and_verify(archived_bucket, backup_id, tablespaces=[TABLESPACE], pg_bin=pg_bin_of(major),
                                      before_start=check_files)
    [(restored_major, verified)] = checked
    assert restored_major == major
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "backup successfully verified" in verified.stdout
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected
    assert restored.fingerprint["postgres"]["pgbench_accounts"][0] == 100000
