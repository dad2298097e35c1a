# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Base backups taken by the modules through ansible-playbook, judged by the real barman tools."""

from __future__ import annotations

import re
import threading
import time

import pytest

from testbed import barman_json, restore_and_fingerprint, run_playbook

BACKUP_ID = re.compile(r"^\d{8}T\d{6}$")
EXTENSIONS = {None: "tar", "gzip": "tar.gz", "bzip2": "tar.bz2", "snappy": "tar.snappy", "lz4": "tar.lz4",
              "zstd": "tar.zst"}


def backup(bed, **variables):
    return run_playbook("base_backup.yml", bed.variables(**variables))


def assert_restores(bed, backup_id):
    """barman-cloud-restore gives a cluster that starts, passes pg_amcheck and holds the source's data."""
    bed.cluster.switch_wal_and_wait_archived()
    expected = bed.cluster.fingerprint()
    restored = restore_and_fingerprint(bed.moto, bed.url, bed.server, backup_id, bed.workdir,
                                       {bed.tablespace: ""})
    assert restored["amcheck_rc"] == 0, restored["amcheck_output"]
    assert restored["fingerprint"] == expected
    assert restored["tablespace_links"] == {bed.tablespace: restored["relocated"][bed.tablespace]}
    return restored


@pytest.mark.parametrize("compression", [None, "gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_each_compression_restores_with_barman(bed, compression):
    variables = {"compression": compression} if compression else {}
    result = backup(bed, **variables)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert BACKUP_ID.match(result["backup_id"])
    assert result["status"] == "DONE"
    folder = "clusters/it/base/%s/" % result["backup_id"]
    extension = EXTENSIONS[compression]
    assert folder + "data." + extension in result["object_keys"]
    assert any(key.startswith(folder + "16384") or re.match(folder + r"\d+\." + re.escape(extension), key)
               for key in result["object_keys"])
    assert sorted(result["object_keys"]) == bed.moto.keys(bed.bucket, folder)
    assert result["bytes_read"] > 10 << 20
    if compression:
        assert result["bytes_written"] < result["bytes_read"]
    assert_restores(bed, result["backup_id"])


def test_split_archives_restore(bed):
    result = backup(bed, compression="lz4", max_archive_size="1MB", jobs=3)
    assert result["status"] == "DONE", result.get("msg")
    names = [key.rsplit("/", 1)[-1] for key in result["object_keys"]]
    assert "data.tar.lz4" in names and "data_0001.tar.lz4" in names and "data_0002.tar.lz4" in names
    oid = [name for name in names if re.match(r"^\d+\.tar\.lz4$", name)][0].split(".")[0]
    assert "%s_0001.tar.lz4" % oid in names, "the tablespace archive was not split"
    assert_restores(bed, result["backup_id"])


def test_backup_while_pgbench_writes_restores_consistent(bed):
    with bed.cluster.pgbench_running(clients=4):
        result = backup(bed, compression="zstd", jobs=4)
        time.sleep(1)
    assert result["status"] == "DONE", result.get("msg")
    assert result["begin_wal"] <= result["end_wal"]
    assert_restores(bed, result["backup_id"])


def test_barman_lists_and_shows_a_named_backup(bed):
    name = "nightly-%d" % int(time.time())
    result = backup(bed, compression="gzip", backup_name=name)
    assert (result["status"], result["backup_name"]) == ("DONE", name)
    listed = barman_json("barman-cloud-backup-list", bed.moto, bed.url, bed.server)
    entry = [item for item in listed["backups_list"] if item["backup_id"] == result["backup_id"]]
    assert entry and entry[0]["status"] == "DONE" and entry[0]["backup_name"] == name
    shown = barman_json("barman-cloud-backup-show", bed.moto, bed.url, bed.server, name)
    shown = shown["cloud"]  # the reference tool keys it by the server_name field, always "cloud"
    assert shown["backup_id"] == result["backup_id"]
    assert shown["status"] == "DONE"
    assert shown["tablespaces"][0][0] == bed.tablespace  # (name, oid, location)

    info = run_playbook("backup_info.yml", bed.variables(backup=name))
    assert info["backup"]["backup_id"] == result["backup_id"]
    assert info["backup"]["status"] == "DONE"
    assert info["backup"]["size"] == sum(obj["size"] for obj in info["backup"]["objects"]) > 0
    listing = run_playbook("backup_info.yml", bed.variables())
    mine = [item for item in listing["backups"] if item["backup_id"] == result["backup_id"]][0]
    assert mine["backup_name"] == name and mine["status"] == "DONE" and mine["size"] > 0


def test_backup_name_makes_the_task_idempotent(bed):
    name = "weekly-%d" % int(time.time())
    first = backup(bed, compression="lz4", backup_name=name)
    second = backup(bed, compression="lz4", backup_name=name)
    assert first["changed"] is True
    assert second["changed"] is False
    assert second["backup_id"] == first["backup_id"]
    assert second["object_keys"] == []


def test_check_mode_uploads_nothing(bed):
    server = bed.fresh_destination()
    result = run_playbook("base_backup.yml", bed.variables(server_name=server, compression="zstd"), check_mode=True)
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is True
    assert result["backup_id"] is None
    assert result["plan"]["data_directory"] == bed.cluster.pgdata
    assert bed.moto.keys(bed.bucket, "clusters/%s/" % server) == []


def test_missing_bucket_fails_clearly_and_writes_nothing(bed):
    result = backup(bed, destination_url="s3://no-such-bucket-here/x")
    assert result["failed"] is True
    assert "no-such-bucket-here" in result["msg"] and "does not exist" in result["msg"]
    assert "Traceback" not in result["msg"]
    assert bed.cluster.backup_sessions() == 0


def test_lost_session_fails_the_backup_and_leaves_nothing_open(bed):
    """The server's backup session is killed mid-copy: FAILED, uploads aborted, no backup mode left."""
    server = bed.fresh_destination()
    killer = threading.Thread(target=_terminate_backup_session, args=(bed,))
    killer.start()
    result = backup(bed, server_name=server, max_bandwidth="8MB", keepalive_interval=1)
    killer.join()
    assert result["failed"] is True
    assert "session was lost" in result["msg"]
    assert BACKUP_ID.match(result["backup_id"])
    assert bed.moto.open_multipart_uploads(bed.bucket) == []
    assert bed.cluster.backup_sessions() == 0
    info = run_playbook("backup_info.yml", bed.variables(server_name=server))
    assert [(item["backup_id"], item["status"]) for item in info["backups"]] == [(result["backup_id"], "FAILED")]
    listed = barman_json("barman-cloud-backup-list", bed.moto, bed.url, server)
    assert [item["status"] for item in listed["backups_list"]] == ["FAILED"]


def _terminate_backup_session(bed):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if bed.cluster.backup_sessions():
            time.sleep(2)  # let the copy get going, with parts in flight
            bed.cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = 'pgcloud_backup'")
            return
        time.sleep(0.1)


def test_check_module(bed):
    good = run_playbook("check.yml", bed.variables())
    assert good.get("failed") is not True, good.get("msg")
    assert good["changed"] is False
    assert good["storage"]["bucket_exists"] is True
    assert good["postgres"]["data_directory"] == bed.cluster.pgdata
    assert good["postgres"]["backup_privileges"] is True
    missing = run_playbook("check.yml", bed.variables(destination_url="s3://absent-bucket/pg"))
    assert missing["failed"] is True
    assert "absent-bucket" in missing["msg"]
    assert missing["storage"]["reachable"] is True and missing["storage"]["bucket_exists"] is False
