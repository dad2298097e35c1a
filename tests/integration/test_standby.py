# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A base backup taken from a streaming standby, restored by barman-cloud-restore.

The primary archives WAL next to the backup; the standby archives nothing. The backup must
only return once the WAL file holding its end is in the store, which it gets by switching
WAL on the primary (primary_conninfo).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from testbed import (
    MotoServer,
    PostgresCluster,
    StandbyCluster,
    StorageTarget,
    backup_show,
    restore_and_verify,
    run_module,
)

TABLESPACE = "testbed_space"


@pytest.fixture
def standby_bucket(moto: MotoServer) -> Iterator[StorageTarget]:
    target = moto.target(moto.create_bucket(), "pg/standby", "standby")
    yield target
    moto.delete_bucket(target.bucket)


def wal_needed_to(end_lsn: str, timeline: int, segment_size: int) -> str:
    """The WAL file holding the byte before end_lsn: the last one a restore of the backup needs."""
    high, low = end_lsn.split("/")
    last_byte = (int(high, 16) << 32) + int(low, 16) - 1
    segment = last_byte // segment_size
    per_log = 0x100000000 // segment_size
    return "%08X%08X%08X" % (timeline, segment // per_log, segment % per_log)


def test_backup_from_a_standby_restores_the_primarys_data(moto, standby_bucket):
    with PostgresCluster("primary", tablespace=TABLESPACE, archive_target=standby_bucket) as primary:
        primary.load_data(1)
        with StandbyCluster(primary) as standby:
            standby.wait_replayed()
            primary_conninfo = "host=%s port=%d user=postgres dbname=postgres" % (primary.socket_dir, primary.port)
            with primary.pgbench_running(clients=2, rate=100):
                run = run_module("base_backup", dict(
                    standby_bucket.module_params(), **standby.connection_params, compression="lz4",
                    immediate_checkpoint=True, primary_conninfo=primary_conninfo, wal_archive_timeout=120))
            assert run.rc == 0 and run.result["status"] == "DONE", run.result
            backup_id = run.result["backup_id"]
            shown = backup_show(standby_bucket, backup_id)
            assert "BACKUP FROM: standby" in str(shown), shown
            # Waited for by the module, not by the test: nothing has switched WAL since.
            end_wal = wal_needed_to(shown["end_xlog"], shown["timeline"], shown["xlog_segment_size"])
            wals = moto.list_keys(standby_bucket.bucket, standby_bucket.server_prefix + "wals/")
            assert any(key.rsplit("/", 1)[-1].startswith(end_wal) for key in wals), (end_wal, wals[-3:])

            primary.switch_wal_and_wait()
            expected = primary.fingerprint()
            restored = restore_and_verify(standby_bucket, backup_id, tablespaces=[TABLESPACE])
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected
