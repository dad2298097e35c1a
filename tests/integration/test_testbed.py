# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test bed proves itself with the reference tool alone.

A backup by the reference `barman-cloud-backup`, taken while pgbench writes, must come back
through restore_and_verify with exactly the source's data. If this fails, the test bed is
broken, and no verdict of the other integration tests can be trusted.
"""

from __future__ import annotations

from testbed import BACKUP_ID_PATTERN, backup_files, backup_list, backup_show, reference_backup, restore_and_verify

TABLESPACE = "testbed_space"


def test_reference_backup_during_pgbench_restores_the_same_data(moto, source_cluster, storage):
    before = source_cluster.fingerprint()
    with source_cluster.pgbench_running() as pgbench:
        backup_id = reference_backup(storage, source_cluster, compression="lz4", name="testbed-proof")
    assert pgbench.transactions > 0
    source_cluster.switch_wal_and_wait()
    expected = source_cluster.fingerprint()
    # pgbench changed the data during the backup: the base backup alone cannot hold the
    # expected data, only the base backup with its WAL replayed to the end can.
    assert expected != before

    assert BACKUP_ID_PATTERN.match(backup_id)
    oid = source_cluster.tablespace_oids()[TABLESPACE]
    files = backup_files(moto.list_keys(storage.bucket), storage, backup_id)
    assert files == sorted(["backup.info", "data.tar.lz4", "%d.tar.lz4" % oid])
    listed = {backup["backup_id"]: backup for backup in backup_list(storage)}
    assert (listed[backup_id]["status"], listed[backup_id]["backup_name"]) == ("DONE", "testbed-proof")
    shown = backup_show(storage, "testbed-proof")
    assert shown["backup_id"] == backup_id
    # tablespaces as (name, oid, location) triples
    assert [tuple(space[:2]) for space in shown["tablespaces"]] == [(TABLESPACE, oid)]

    restored = restore_and_verify(storage, backup_id, tablespaces=[TABLESPACE])

    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected
    relocated = restored.relocations[TABLESPACE]
    assert restored.tablespace_links == {oid: relocated}
    assert restored.tablespace_locations == {TABLESPACE: relocated}
    assert relocated != str(source_cluster.tablespace_dir)
