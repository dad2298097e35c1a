# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backup from a standby is DONE only once the whole WAL file holding its end is in the store.

A `.partial` file (which barman-cloud-wal-archive stores when a server is promoted) or a
`.backup` history file under that segment's name cannot stand in for it: a restore could not
replay the end of the backup. Here the store holds only such files for the segments the backup
may end in, and nothing completes the real segment (no primary_conninfo, no archive_timeout):
the backup must fail after wal_archive_timeout and be recorded as FAILED.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from testbed import (
    MotoServer,
    PostgresCluster,
    StandbyCluster,
    StorageTarget,
    backup_list,
    run_module,
)


@pytest.fixture
def standby_bucket(moto: MotoServer) -> Iterator[StorageTarget]:
    target = moto.target(moto.create_bucket(), "pg/standby-end-wal", "standby")
    yield target
    moto.delete_bucket(target.bucket)


def segment_names(current: str, around: int) -> list:
    """The names of the `around` segments before and after `current` (16 MiB segments), and itself."""
    timeline, log, segment = int(current[:8], 16), int(current[8:16], 16), int(current[16:], 16)
    number = (log << 8) + segment
    return ["%08X%08X%08X" % (timeline, n >> 8, n & 0xFF) for n in range(max(number - around, 0), number + around + 1)]


def test_partial_and_history_files_of_the_end_segment_do_not_end_the_wait(moto, standby_bucket):
    with PostgresCluster("primary-end-wal", tablespace=None, archive_target=standby_bucket) as primary:
        with StandbyCluster(primary, "standby-end-wal") as standby:
            # WAL past the segment that cloning the standby completed, replayed by the standby: the
            # backup ends in a segment that nothing completes during the test.
            primary.execute("CREATE TABLE testbed_end_wal AS SELECT g AS id FROM generate_series(1, 10000) g")
            standby.wait_replayed()
            current = primary.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
            for name in segment_names(current, 2):
                for suffix in (".partial", ".partial.gz", ".00000028.backup"):
                    moto.client().put_object(Bucket=standby_bucket.bucket, Body=b"not the whole segment",
                                             Key="%swals/%s/%s%s" % (standby_bucket.server_prefix, name[:16], name,
                                                                     suffix))
            run = run_module("base_backup", dict(standby_bucket.module_params(), **standby.connection_params,
                                                 immediate_checkpoint=True, wal_archive_timeout=10))
    assert run.rc != 0, run.result
    message = run.result["msg"]
    assert "did not reach" in message and "wal_archive_timeout (10 s)" in message, message
    assert [backup["status"] for backup in backup_list(standby_bucket)] == ["FAILED"]
