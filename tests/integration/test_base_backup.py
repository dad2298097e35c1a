# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base backups taken by the modules through ansible-playbook, judged by the real barman tools.

Every backup that should work is restored with barman-cloud-restore (WAL from
barman-cloud-wal-restore), started, checked with pg_amcheck and compared with the source;
every backup that should fail must not look like a good one to the reference tools.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import pytest

from testbed import (
    BACKUP_ID_PATTERN,
    MotoServer,
    PostgresCluster,
    StorageTarget,
    backup_files,
    backup_list,
    backup_show,
    free_port,
    restore_and_verify,
    wait_for,
)

TABLESPACE = "testbed_space"
EXTENSIONS = {"none": "tar", "gzip": "tar.gz", "bzip2": "tar.bz2", "snappy": "tar.snappy", "lz4": "tar.lz4",
              "zstd": "tar.zst"}
TAKE = "Take a base backup"


def backup_vars(storage: StorageTarget, **params: Any) -> Dict[str, Any]:
    return dict(storage.module_params(), **params)


def take_backup(playbook, storage: StorageTarget, **params: Any) -> Dict[str, Any]:
    """Run playbooks/base_backup.yml; the backup task must succeed. Returns its result."""
    run = playbook("base_backup", backup_vars(storage, **params))
    assert run.rc == 0, run.output
    return run.task(TAKE)


def assert_done(result: Dict[str, Any], moto: MotoServer, storage: StorageTarget) -> List[str]:
    """The module's result describes a finished backup whose keys are in the bucket; returns
    the file names of the backup."""
    assert result["changed"] is True
    assert BACKUP_ID_PATTERN.match(result["backup_id"]), result["backup_id"]
    assert result["status"] == "DONE"
    prefix = storage.backup_prefix(result["backup_id"])
    stored = moto.list_objects(storage.bucket, prefix)
    assert sorted(result["object_keys"]) == sorted(stored)
    assert result["object_keys"][-1] == prefix + "backup.info"
    archives = sum(size for key, size in stored.items() if not key.endswith("backup.info"))
    assert archives <= result["bytes_written"] <= sum(stored.values())
    assert result["bytes_read"] > 0
    assert result["elapsed_seconds"] > 0
    assert moto.multipart_uploads(storage.bucket) == []
    return backup_files(list(stored), storage, result["backup_id"])


def assert_restores(source: PostgresCluster, storage: StorageTarget, backup_id: str) -> None:
    """barman-cloud-restore gives a cluster that starts, passes pg_amcheck, has the tablespace
    where it was relocated, and holds the source's data (as of the last archived WAL)."""
    source.switch_wal_and_wait()
    expected = source.fingerprint()
    restored = restore_and_verify(storage, backup_id, tablespaces=[TABLESPACE])
    assert restored.amcheck_passed, restored.amcheck_output
    relocated = restored.relocations[TABLESPACE]
    assert restored.tablespace_links == {source.tablespace_oids()[TABLESPACE]: relocated}
    assert restored.tablespace_locations == {TABLESPACE: relocated}
    assert restored.fingerprint == expected


def reference_statuses(storage: StorageTarget) -> Dict[str, str]:
    return {backup["backup_id"]: backup["status"] for backup in backup_list(storage)}


@pytest.mark.parametrize("compression", sorted(EXTENSIONS))
def test_each_compression_restores_with_barman(playbook, moto, source_cluster, storage, compression):
    params = {"jobs": 2}
    if compression != "none":
        params["compression"] = compression
    result = take_backup(playbook, storage, **params)

    files = assert_done(result, moto, storage)
    extension = EXTENSIONS[compression]
    oid = source_cluster.tablespace_oids()[TABLESPACE]
    assert "data.%s" % extension in files
    assert "%d.%s" % (oid, extension) in files
    assert all(name == "backup.info" or name.endswith("." + extension) for name in files), files
    if compression != "none":
        assert result["bytes_written"] < result["bytes_read"]
    assert_restores(source_cluster, storage, result["backup_id"])


def test_split_archives_restore(playbook, moto, source_cluster, storage):
    result = take_backup(playbook, storage, compression="zstd", max_archive_size="1MB", jobs=2)

    files = assert_done(result, moto, storage)
    oid = source_cluster.tablespace_oids()[TABLESPACE]
    assert {"data.tar.zst", "data_0001.tar.zst", "data_0002.tar.zst", "%d.tar.zst" % oid} <= set(files), files
    assert "%d_0001.tar.zst" % oid in files, "the tablespace archive was not split: %s" % files
    sizes = moto.list_objects(storage.bucket, storage.backup_prefix(result["backup_id"]))
    # Files are never split, so a part may pass the limit by one file, but not by much.
    assert max(sizes.values()) < 16 << 20, sizes
    assert_restores(source_cluster, storage, result["backup_id"])


def test_backup_while_pgbench_writes_restores_consistent_data(playbook, moto, source_cluster, storage):
    with source_cluster.pgbench_running(clients=2, rate=200) as pgbench:
        history_at_start = pgbench.history_before
        result = take_backup(playbook, storage, compression="lz4", jobs=2)
    assert pgbench.transactions > 0
    assert source_cluster.scalar("SELECT count(*) FROM pgbench_history") > history_at_start
    assert_done(result, moto, storage)
    assert result["begin_wal"] <= result["end_wal"]
    assert_restores(source_cluster, storage, result["backup_id"])


def test_reference_tools_read_a_named_backup(playbook, moto, source_cluster, storage):
    run = playbook("base_backup", backup_vars(storage, compression="gzip", backup_name="before-upgrade"))
    assert run.rc == 0, run.output
    result = run.task(TAKE)
    assert_done(result, moto, storage)
    assert result["backup_name"] == "before-upgrade"

    listed = {backup["backup_id"]: backup for backup in backup_list(storage)}
    assert list(listed) == [result["backup_id"]]
    assert (listed[result["backup_id"]]["status"], listed[result["backup_id"]]["backup_name"]) == \
        ("DONE", "before-upgrade")
    shown = backup_show(storage, "before-upgrade")
    assert shown["backup_id"] == result["backup_id"]
    assert shown["status"] == "DONE"
    assert (shown["begin_wal"], shown["end_wal"]) == (result["begin_wal"], result["end_wal"])
    assert shown["systemid"] == source_cluster.scalar("SELECT system_identifier::text FROM pg_control_system()")
    assert shown["version"] == int(source_cluster.scalar("SHOW server_version_num"))
    assert [tuple(space[:2]) for space in shown["tablespaces"]] == \
        [(TABLESPACE, source_cluster.tablespace_oids()[TABLESPACE])]

    # backup_info (the same play) agrees with the reference tools.
    mine = run.task("List the backups")["backups"]
    assert [(item["backup_id"], item["backup_name"], item["status"]) for item in mine] == \
        [(result["backup_id"], "before-upgrade", "DONE")]
    assert mine[0]["size"] > 0 and mine[0]["begin_time"] and mine[0]["end_time"]
    one = run.task("Show the backup")["backup"]
    assert (one["backup_id"], one["backup_name"], one["status"]) == (result["backup_id"], "before-upgrade", "DONE")
    by_name = playbook("backup_info", backup_vars(storage, backup="before-upgrade"))
    assert by_name.rc == 0, by_name.output
    assert by_name.task("Read backup information")["backup"]["backup_id"] == result["backup_id"]


def test_backup_info_finds_a_deleted_object_without_downloading(playbook, moto, storage):
    result = take_backup(playbook, storage, compression="zstd", max_archive_size="1MB", jobs=2)
    files = assert_done(result, moto, storage)
    prefix = storage.backup_prefix(result["backup_id"])

    def objects_check() -> Dict[str, Any]:
        run = playbook("backup_info", backup_vars(storage, backup=result["backup_id"], check_objects=True))
        assert run.rc == 0, run.output
        return run.task("Read backup information")["objects_check"]

    intact = objects_check()
    assert (intact["ok"], intact["missing"], intact["mismatched"]) == (True, [], [])
    assert intact["stored_size"] == intact["recorded_size"] == sum(
        size for key, size in moto.list_objects(storage.bucket, prefix).items() if not key.endswith("backup.info"))
    assert intact["objects"] == len(files)

    moto.client().delete_object(Bucket=storage.bucket, Key=prefix + "data_0001.tar.zst")
    broken = objects_check()
    assert broken["ok"] is False
    assert broken["missing"] == [prefix + "data_0001.tar.zst"]
    assert broken["objects"] == len(files) - 1


def test_backup_name_makes_the_task_idempotent(playbook, moto, storage):
    first = take_backup(playbook, storage, compression="lz4", backup_name="weekly")
    assert_done(first, moto, storage)
    base = storage.server_prefix + "base/"
    keys_after_first = moto.list_keys(storage.bucket, base)

    second = take_backup(playbook, storage, compression="lz4", backup_name="weekly")
    assert second["changed"] is False
    assert (second["backup_id"], second["backup_name"], second["status"]) == (first["backup_id"], "weekly", "DONE")
    assert second["object_keys"] == []
    assert moto.list_keys(storage.bucket, base) == keys_after_first
    assert list(reference_statuses(storage).values()) == ["DONE"]


def test_check_mode_uploads_nothing(playbook, moto, source_cluster, storage):
    base = storage.server_prefix + "base/"
    run = playbook("base_backup", backup_vars(storage, compression="zstd"), check=True)
    assert run.rc == 0, run.output
    result = run.task(TAKE)
    assert result["object_keys"] == []
    assert result["backup_id"] is None
    # It still tells what it would back up: it connected and found the cluster.
    assert result["plan"]["data_directory"] == str(source_cluster.pgdata), result
    assert moto.list_keys(storage.bucket, base) == []
    assert moto.multipart_uploads(storage.bucket) == []
    assert backup_list(storage) == []
    assert source_cluster.sessions_left() == []


def test_missing_bucket_fails_clearly_and_writes_nothing(playbook, moto, source_cluster, storage):
    missing = StorageTarget(storage.endpoint_url, "no-such-bucket-here", "pg", storage.server_name)
    buckets_before = sorted(bucket["Name"] for bucket in moto.client().list_buckets()["Buckets"])
    run = playbook("base_backup", backup_vars(missing))
    assert run.rc != 0
    result = run.task(TAKE)
    assert result["failed"] is True
    assert "no-such-bucket-here" in result["msg"] and "does not exist" in result["msg"], result["msg"]
    assert "Traceback" not in result["msg"]
    assert not run.ran("List the backups")
    assert sorted(bucket["Name"] for bucket in moto.client().list_buckets()["Buckets"]) == buckets_before
    assert source_cluster.sessions_left() == []


def test_unreachable_postgres_fails_clearly_and_writes_nothing(playbook, moto, storage):
    port = free_port()  # nothing listens there
    run = playbook("base_backup", backup_vars(storage, pg_host="127.0.0.1", pg_port=port))
    assert run.rc != 0
    result = run.task(TAKE)
    assert result["failed"] is True
    assert str(port) in result["msg"] or "connect" in result["msg"].lower(), result["msg"]
    assert "Traceback" not in result["msg"]
    assert moto.list_keys(storage.bucket, storage.server_prefix + "base/") == []
    assert moto.multipart_uploads(storage.bucket) == []


def test_lost_session_fails_the_backup_and_leaves_nothing_open(playbook, moto, source_cluster, storage):
    """The backup's PostgreSQL session is terminated mid-copy (as by a server restart): the
    task fails, the reference tools never see the backup as DONE, no multipart upload is
    left open, and no session (so no backup mode) is left on the server."""
    killed: List[Dict[str, Any]] = []

    def terminate_when_copying() -> None:
        def copying() -> Optional[List[Dict[str, Any]]]:
            sessions = source_cluster.client_sessions()
            uploading = moto.multipart_uploads(storage.bucket, storage.server_prefix) or \
                moto.list_keys(storage.bucket, storage.server_prefix + "base/")
            return sessions if sessions and uploading else None

        try:
            sessions = wait_for(copying, timeout=120, interval=0.1, what="the backup to upload")
        except Exception:  # pylint: disable=broad-except
            return  # the assertions below report that nothing was killed
        for session in sessions:
            if source_cluster.scalar("SELECT pg_terminate_backend(%s)", (session["pid"],)):
                killed.append(session)

    killer = threading.Thread(target=terminate_when_copying)
    killer.start()
    try:
        # Throttled so that the copy lasts long enough to be interrupted.
        run = playbook("base_backup", backup_vars(storage, max_bandwidth="4MB", keepalive_interval=1, jobs=1))
    finally:
        killer.join()
    assert killed, "the backup session was never seen copying:\n%s" % run.output
    assert run.rc != 0, run.output
    result = run.task(TAKE)
    assert result["failed"] is True
    assert "session was lost" in result["msg"], result["msg"]
    assert "Traceback" not in result["msg"]
    assert BACKUP_ID_PATTERN.match(result["backup_id"])

    # Recorded as FAILED (never DONE) for the reference tools and for backup_info alike.
    assert reference_statuses(storage) == {result["backup_id"]: "FAILED"}
    info = playbook("backup_info", storage.module_params())
    assert [(item["backup_id"], item["status"]) for item in info.task("Read backup information")["backups"]] == \
        [(result["backup_id"], "FAILED")]
    assert moto.multipart_uploads(storage.bucket) == []
    assert source_cluster.sessions_left() == []


def test_check_module_reports_store_and_server(playbook, storage):
    run = playbook("check", storage.module_params())
    assert run.rc == 0, run.output
    good = run.task("Check the store and the server")
    assert good["changed"] is False
    assert good["ok"] is True
    assert good["storage"]["bucket_exists"] is True
    assert good["storage"]["error"] is None
    assert good["postgres"]["connected"] is True

    missing = StorageTarget(storage.endpoint_url, "absent-bucket", "pg", storage.server_name)
    run = playbook("check", missing.module_params())
    assert run.rc != 0
    bad = run.task("Check the store and the server")
    assert bad["failed"] is True
    assert bad["ok"] is False
    assert "absent-bucket" in bad["msg"]
    assert bad["storage"]["reachable"] is True and bad["storage"]["bucket_exists"] is False
