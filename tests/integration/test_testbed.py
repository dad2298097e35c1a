# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test bed proves itself with the reference tool alone.

A backup by the reference `barman-cloud-backup`, taken while pgbench writes, must come back
through restore_and_verify with exactly the source's data. If this fails, the test bed is
broken, and no verdict of the other integration tests can be trusted. The test clusters'
archive_command reports a call killed after its timeout as a failure PostgreSQL counts.
"""

from __future__ import annotations

import subprocess

import pytest
from testbed import (BACKUP_ID_PATTERN, archive_function, archive_script, backup_files, backup_list, backup_show,
                     reference_backup, restore_and_verify)

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


@pytest.mark.parametrize("tool, status, logged", [
    # Ignores the timeout's TERM, so that timeout kills it: 137, which PostgreSQL would take for a signal.
    (["timeout", "--kill-after=1", "1", "sh", "-c", 'trap "" TERM; sleep 30', "tool"], 1, True),
    (["sh", "-c", "exit 3", "tool"], 3, False),
    (["sh", "-c", "exit 0", "tool"], 0, False),
])
def test_archive_command_reports_a_killed_call_as_a_failure(tmp_path, tool, status, logged):
    function_file = tmp_path / "archive-target.env"
    function_file.write_text(archive_function(tool))
    script = tmp_path / "archive-wal.sh"
    script.write_text(archive_script("proof", function_file))
    script.chmod(0o755)
    result = subprocess.run([str(script), "000000010000000000000001"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == status, result.stderr
    assert ("exited with status 137, reported as 1" in result.stderr) == logged, result.stderr
