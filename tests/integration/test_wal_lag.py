# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL archiving keeps up with pgbench at full speed (issue 19): the `.ready` files stay few.

A cluster whose archive_command is `pgcloud-backup ... wal-archive %p` (no copy script in
between) to moto; pgbench runs unthrottled with 8 clients for 60 s while the `.ready` files
in pg_wal/archive_status are counted every second. The issue's bound: at most 8 at any time.

pgbench at full speed takes both cores of the test machine. Run beside another test (the CI's
second xdist worker), the archiver then waits for a core too, and the count measured the other
test's load: 12 at worst in one CI run where it stays at 1 alone. So the test is marked `alone`,
and scripts/test.sh runs it with nothing beside it.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from testbed import PG_BIN, POSTGRES_USER, MotoServer, wait_for
from wal_host import WalCluster

pytestmark = pytest.mark.alone

CLIENTS = 8
DURATION_SECONDS = 60
MAX_READY = 8


class DirectWalCluster(WalCluster):
    """archive_command is the host command itself, as the role sets it.

    Checkpoints every 30 s (or 64 MB of WAL), as on a busy server: the full-page images after
    each one multiply the WAL that pgbench writes, enough for barman-cloud-wal-archive in its
    place to fall far behind the bound (benchmarks/README.md has the figures of both), so that
    the bound tells the two apart.
    """

    def _settings(self) -> Dict[str, str]:
        settings = super()._settings()
        settings["archive_command"] = "'%s %%p'" % shlex.join(self.host.command("wal-archive")).replace("'", "''")
        settings.update({"checkpoint_timeout": "30s", "max_wal_size": "64MB", "min_wal_size": "32MB"})
        return settings


@pytest.fixture(scope="module")
def lag_cluster(moto: MotoServer) -> Iterator[DirectWalCluster]:
    cluster = DirectWalCluster("wallag")
    cluster.host.configure(moto.target(moto.create_bucket(), "lag", "wallag"))
    with cluster:
        cluster.load_data(10)
        cluster.switch_wal_and_wait()
        yield cluster


def ready_count(pgdata: Path) -> int:
    try:
        return sum(1 for name in (pgdata / "pg_wal" / "archive_status").iterdir() if name.suffix == ".ready")
    except FileNotFoundError:
        return 0


def sample_ready(pgdata: Path, stop: threading.Event, samples: List[int]) -> None:
    while not stop.wait(1.0):
        samples.append(ready_count(pgdata))


def test_ready_files_stay_few_under_pgbench(lag_cluster: DirectWalCluster) -> None:
    before = lag_cluster.scalar("SELECT archived_count FROM pg_stat_archiver")
    samples: List[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_ready, args=(lag_cluster.pgdata, stop, samples), daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        bench = subprocess.run(
            [str(PG_BIN / "pgbench"), "-h", str(lag_cluster.socket_dir), "-p", str(lag_cluster.port), "-U",
             POSTGRES_USER, "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(DURATION_SECONDS), "postgres"],
            capture_output=True, text=True, timeout=DURATION_SECONDS + 120, check=False)
    finally:
        stop.set()
        sampler.join()
    elapsed = time.monotonic() - started
    assert bench.returncode == 0, bench.stdout + bench.stderr
    archived = lag_cluster.scalar("SELECT archived_count FROM pg_stat_archiver") - before
    # Everything pgbench wrote gets archived: the cluster is not just idle.
    final = lag_cluster.switch_wal_and_wait(timeout=300)
    failed = lag_cluster.scalar("SELECT failed_count FROM pg_stat_archiver")
    figures = "max .ready %d, samples %s, %d segments archived in %.0f s, failed_count %s, last %s; pgbench: %s" % (
        max(samples), samples, archived, elapsed, failed, final, bench.stdout.strip().splitlines()[-3:])
    print(figures)
    assert archived > MAX_READY, figures
    assert max(samples) <= MAX_READY, figures
    wait_for(lambda: ready_count(lag_cluster.pgdata) == 0, 120, what="no .ready file left")
