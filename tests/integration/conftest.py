# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the integration tests (the parts themselves are in testbed.py).

One source cluster and one server of each store (moto, Azurite, the GCS emulator) per
session, so per pytest-xdist worker; a bucket of its own per test, into which the source
also archives its WAL during that test, so that tests never see each other's backups and
every backup has its WAL next to it.

Run as root on a machine set up by scripts/setup.sh (scripts/test.sh uses two workers):

    source /opt/pgcloud-backup/env.sh && python -m pytest tests/integration -n 2

PGCLOUD_TEST_SCALE sets the pgbench scale of the source cluster (default 5, about 80 MB).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Union

import pytest

# testbed.py sits next to this file; pytest puts this folder on sys.path too, but the
# import must not depend on how pytest was started.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from local_stores import AzuriteServer, GcsServer  # noqa: E402  pylint: disable=wrong-import-position
from testbed import (  # noqa: E402  pylint: disable=wrong-import-position
    INTEGRATION_DIR,
    MotoServer,
    PlaybookResult,
    PostgresCluster,
    StorageTarget,
    run_playbook,
    tail,
)

SCALE = int(os.environ.get("PGCLOUD_TEST_SCALE", "5"))
SERVER_NAME = "source"
TABLESPACE = "testbed_space"
PLAYBOOKS = INTEGRATION_DIR / "playbooks"
# moto's memory only grows (see MotoServer): past this, the next test gets a fresh one.
MOTO_MEMORY_LIMIT = int(os.environ.get("PGCLOUD_MOTO_MEMORY_LIMIT", str(4 << 30)))


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    with AzuriteServer() as server:
        yield server


@pytest.fixture(scope="session")
def gcs() -> Iterator[GcsServer]:
    with GcsServer() as server:
        yield server


@pytest.fixture(scope="session")
def session_wal_target(moto: MotoServer) -> StorageTarget:
    """Where the source's WAL goes outside the tests (while its data is loaded, between tests)."""
    return moto.target(moto.create_bucket("pgcloud-session-wal"), "session", SERVER_NAME)


@pytest.fixture(scope="session")
def source_cluster(session_wal_target: StorageTarget) -> Iterator[PostgresCluster]:
    """PostgreSQL 15 with a tablespace, pgbench data at SCALE and WAL archiving on."""
    with PostgresCluster(SERVER_NAME, tablespace=TABLESPACE, archive_target=session_wal_target) as cluster:
        cluster.load_data(SCALE)
        yield cluster


StoreServer = Union[MotoServer, AzuriteServer, GcsServer]


@dataclass(frozen=True)
class Cloud:
    """A store server and this test's target in it."""

    server: StoreServer
    target: StorageTarget


def own_bucket(request: pytest.FixtureRequest, server: StoreServer, source_cluster: PostgresCluster,
               session_wal_target: StorageTarget) -> Iterator[StorageTarget]:
    """A bucket of this test's own, where the source archives its WAL during the test."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    target = server.target(server.create_bucket(), "pg/%s" % name, SERVER_NAME)
    source_cluster.archive_to(target)
    yield target
    # WAL goes back to the session bucket before this one is deleted, so that no WAL file
    # is sent to a bucket that is gone (the archiver would retry it and fall behind).
    source_cluster.archive_to(session_wal_target)
    with contextlib.suppress(Exception):
        server.delete_bucket(target.bucket)


@pytest.fixture
def storage(request: pytest.FixtureRequest, moto: MotoServer, source_cluster: PostgresCluster,
            session_wal_target: StorageTarget) -> Iterator[StorageTarget]:
    """An S3 bucket of this test's own on moto."""
    if moto.memory_bytes() > MOTO_MEMORY_LIMIT:
        moto.restart()
    yield from own_bucket(request, moto, source_cluster, session_wal_target)


@pytest.fixture(params=["azure-blob-storage", "google-cloud-storage"])
def cloud(request: pytest.FixtureRequest, source_cluster: PostgresCluster,
          session_wal_target: StorageTarget) -> Iterator[Cloud]:
    """A container on Azurite or a bucket on the GCS emulator, of this test's own."""
    server = request.getfixturevalue("azurite" if request.param == "azure-blob-storage" else "gcs")
    for target in own_bucket(request, server, source_cluster, session_wal_target):
        yield Cloud(server, target)


@pytest.fixture
def playbook(source_cluster: PostgresCluster) -> Callable[..., PlaybookResult]:
    """playbook(name, extravars, check=False, env=None, verbosity=0): run playbooks/<name>.yml against the source.

    The source's connection is passed as pg_host, pg_port and pg_user; env is added to the
    environment of ansible-playbook (and so of the modules).
    """

    def run(name: str, extravars: Dict[str, Any], check: bool = False,
            env: Optional[Dict[str, str]] = None, verbosity: int = 0) -> PlaybookResult:
        params = source_cluster.connection_params
        variables = {"pg_host": params["host"], "pg_port": params["port"], "pg_user": params["user"]}
        variables.update(extravars)
        return run_playbook(PLAYBOOKS / ("%s.yml" % name), variables, check=check, env=env, verbosity=verbosity)

    return run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "alone: a measure under a load of the test's own; scripts/test.sh runs it "
                                       "after the others, with no other test beside it")


def pytest_collection_modifyitems(items: list) -> None:
    """The test bed's own proof (test_testbed.py) first: when it fails, the verdicts of the
    other tests mean nothing, and the report should show that failure at the top."""
    items.sort(key=lambda item: item.path.name != "test_testbed.py")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:  # pylint: disable=unused-argument
    """A failed test's report ends with the last lines of the server logs of its clusters and
    stores (the archiver's messages, an emulator's traceback): the test bed removes them at
    the end of the session, and a failure that does not come again can only be read there."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name, value in sorted(getattr(item, "funcargs", {}).items()):
        for server in (value, getattr(value, "server", None)):
            log_file = getattr(server, "log_file", None)
            if log_file is not None:
                report.sections.append(("log of %s (%s), last lines" % (name, log_file), tail(log_file, 60)))


def pytest_report_header(config: pytest.Config) -> str:  # pylint: disable=unused-argument
    return "pgcloud.backup integration tests: source cluster at pgbench scale %d" % SCALE
