# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Blob Storage (Azurite) and Google Cloud Storage (gcp-storage-emulator) to the S3 standard.

Each test runs once per provider (the `cloud` fixture). The backups are taken by the modules
through ansible-playbook and judged by the real barman tools with --cloud-provider, exactly
as in test_base_backup.py: restored, started, checked with pg_amcheck and compared with the
source, WAL archived to and restored from the same store.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import pytest

from conftest import Cloud
from testbed import BACKUP_ID_PATTERN, backup_files, backup_list, backup_show, free_port, restore_and_verify, wait_for

TABLESPACE = "testbed_space"
EXTENSIONS = {"none": "tar", "gzip": "tar.gz", "bzip2": "tar.bz2", "snappy": "tar.snappy", "lz4": "tar.lz4",
              "zstd": "tar.zst"}
TAKE = "Take a base backup"
CHECK = "Check the store and the server"


def run_backup(playbook, cloud: Cloud, **params: Any):
    return playbook("base_backup", dict(cloud.target.module_params(), **params), env=cloud.target.module_env())


def take_backup(playbook, cloud: Cloud, **params: Any) -> Dict[str, Any]:
    run = run_backup(playbook, cloud, **params)
    assert run.rc == 0, run.output
    return run.task(TAKE)


def assert_done(result: Dict[str, Any], cloud: Cloud) -> List[str]:
    """A DONE result whose keys are what the store holds, nothing left half-uploaded."""
    assert result["changed"] is True and result["status"] == "DONE"
    assert BACKUP_ID_PATTERN.match(result["backup_id"]), result["backup_id"]
    prefix = cloud.target.backup_prefix(result["backup_id"])
    stored = cloud.server.list_objects(cloud.target.bucket, prefix)
    assert sorted(result["object_keys"]) == sorted(stored)
    archives = sum(size for key, size in stored.items() if not key.endswith("backup.info"))
    assert archives <= result["bytes_written"] <= sum(stored.values())
    assert cloud.server.open_uploads(cloud.target.bucket) == []
    return backup_files(list(stored), cloud.target, result["backup_id"])


def assert_restores(source, cloud: Cloud, backup_id: str) -> None:
    source.switch_wal_and_wait()
    expected = source.fingerprint()
    restored = restore_and_verify(cloud.target, backup_id, tablespaces=[TABLESPACE])
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.tablespace_locations == {TABLESPACE: restored.relocations[TABLESPACE]}
    assert restored.fingerprint == expected


TAGS = {"team": "dba", "env": "test"}


@pytest.mark.parametrize("compression", sorted(EXTENSIONS))
def test_each_compression_restores_with_barman(playbook, source_cluster, cloud, compression):
    params: Dict[str, Any] = {"jobs": 2, "object_tags": TAGS}
    if compression != "none":
        params["compression"] = compression
    result = take_backup(playbook, cloud, **params)

    files = assert_done(result, cloud)
    extension = EXTENSIONS[compression]
    oid = source_cluster.tablespace_oids()[TABLESPACE]
    assert {"data.%s" % extension, "%d.%s" % (oid, extension), "backup.info"} <= set(files)
    assert all(name == "backup.info" or name.endswith("." + extension) for name in files), files
    # Tags on the archives (written in parts) and on backup.info (written whole): blob index
    # tags on Azure, custom metadata on Cloud Storage.
    for name in ("data.%s" % extension, "backup.info"):
        assert cloud.server.object_tags(cloud.target.bucket, cloud.target.backup_prefix(result["backup_id"]) + name) \
            == TAGS, name
    assert_restores(source_cluster, cloud, result["backup_id"])


def test_split_archives_taken_while_pgbench_writes_restore(playbook, source_cluster, cloud):
    # Parts of 1 MiB (above Azure's 64 KiB minimum) make the archives multi-part uploads;
    # GCS parts stay at its 5 MiB minimum.
    with source_cluster.pgbench_running(clients=2, rate=200) as pgbench:
        history_at_start = pgbench.history_before
        result = take_backup(playbook, cloud, compression="zstd", max_archive_size="1MB", min_chunk_size="1MB",
                             jobs=3)
    assert pgbench.transactions > 0
    assert source_cluster.scalar("SELECT count(*) FROM pgbench_history") > history_at_start
    files = assert_done(result, cloud)
    assert "data_0001.tar.zst" in files, files
    listed = {backup["backup_id"]: backup["status"] for backup in backup_list(cloud.target)}
    assert listed == {result["backup_id"]: "DONE"}
    shown = backup_show(cloud.target, result["backup_id"])
    assert shown["status"] == "DONE" and shown["begin_wal"] == result["begin_wal"]
    assert_restores(source_cluster, cloud, result["backup_id"])


def test_lost_session_aborts_every_upload_and_records_failed(playbook, source_cluster, cloud):
    """Uploads in parts are aborted (Azure: staged blocks discarded; GCS: multipart upload
    deleted) and the reference tools see FAILED."""
    killed: List[int] = []

    def terminate_when_copying() -> None:
        def copying() -> Optional[List[Dict[str, Any]]]:
            sessions = source_cluster.client_sessions()
            started = cloud.server.open_uploads(cloud.target.bucket)
            return sessions if sessions and started else None

        try:
            sessions = wait_for(copying, timeout=120, interval=0.1, what="the backup to upload parts")
        except Exception:  # pylint: disable=broad-except
            return
        killed.extend(session["pid"] for session in sessions
                      if source_cluster.scalar("SELECT pg_terminate_backend(%s)", (session["pid"],)))

    killer = threading.Thread(target=terminate_when_copying)
    killer.start()
    try:
        run = run_backup(playbook, cloud, max_bandwidth="2MB", min_chunk_size="5MB", keepalive_interval=1, jobs=1)
    finally:
        killer.join()
    assert killed, "the backup was never seen uploading parts:\n%s" % run.output
    assert run.rc != 0, run.output
    result = run.task(TAKE)
    assert "session was lost" in result["msg"], result["msg"]
    assert {backup["backup_id"]: backup["status"] for backup in backup_list(cloud.target)} == \
        {result["backup_id"]: "FAILED"}
    assert cloud.server.open_uploads(cloud.target.bucket) == []


def test_check_tells_unreachable_missing_and_forbidden_apart(playbook, cloud):
    target = cloud.target

    def check(checked, **params: Any) -> Dict[str, Any]:
        return playbook("check", dict(checked.module_params(), **params), env=checked.module_env()).task(CHECK)

    good = check(target)
    assert good["ok"] is True and good["storage"]["bucket_exists"] is True, good

    missing = check(target.with_bucket("absent-container"))
    assert missing["failed"] is True
    assert (missing["storage"]["reachable"], missing["storage"]["bucket_exists"]) == (True, False)
    assert "absent-container" in missing["msg"] and "does not exist" in missing["msg"]

    if target.cloud_provider == "azure-blob-storage":
        # A wrong account key: Azurite checks the signature as Azure does.
        wrong_key = target.module_params()["azure_storage_connection_string"].replace("AccountKey=Eby8", "AccountKey=AAAA")
        forbidden = check(target, azure_storage_connection_string=wrong_key)
    else:
        forbidden = check(target.with_bucket("forbidden-bucket"))
    assert forbidden["failed"] is True
    assert forbidden["storage"]["reachable"] is True and forbidden["storage"]["bucket_exists"] is None
    assert "refused" in forbidden["msg"], forbidden["msg"]

    port = free_port()
    if target.cloud_provider == "azure-blob-storage":
        closed = target.module_params()["azure_storage_connection_string"].replace(
            ":%d/" % cloud.server.port, ":%d/" % port)
        unreachable = check(target, azure_storage_connection_string=closed)
    else:
        unreachable = playbook("check", target.module_params(),
                               env={"STORAGE_EMULATOR_HOST": "http://127.0.0.1:%d" % port}).task(CHECK)
    assert unreachable["failed"] is True
    assert unreachable["storage"]["reachable"] is False, unreachable
    assert "cannot reach" in unreachable["msg"], unreachable["msg"]
