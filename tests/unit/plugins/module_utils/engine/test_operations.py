# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""operations.py: the entry points the modules call, against moto's S3 server on loopback.

take_base_backup needs a live PostgreSQL and is covered by the integration suite; here the
connectivity check, the listing and the show of backups written in the reference layout.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import operations
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import PostgresConfig, StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import BackupNotFoundError, ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.postgres.session import untested_version_warning
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal import continuity

UTC = timezone.utc


def write_backup(store, backup_id, status, name=None, objects=(("data.tar", 3000),)):
    fields = {
        "status": status, "backup_name": name, "begin_wal": "000000010000000000000002",
        "end_wal": "000000010000000000000003" if status == "DONE" else None, "timeline": 1, "version": 150018,
        "begin_time": datetime(2026, 11, 25, 2, 33, 50, 633943, tzinfo=UTC),
        "end_time": datetime(2026, 11, 25, 2, 33, 54, 716105, tzinfo=UTC) if status == "DONE" else None,
        "tablespaces": [("ts1", 16384, "/srv/pg_ts1")], "error": "failure uploading data (boom)" if status == "FAILED" else None,
    }
    info = layout.render(fields)
    store.put_object(store.destination.key("base", backup_id, "backup.info"), info)
    for name_, size in objects:
        store.put_object(store.destination.key("base", backup_id, name_), b"x" * size)
    return len(info) + sum(size for _name, size in objects)


# --- check_destination -----------------------------------------------------------------------------


def test_check_destination_good(s3_config, s3_bucket):
    bucket = s3_bucket[0]
    result = operations.check_destination(s3_config())
    assert result == {
        "ok": True,
        "storage": {"cloud_provider": "aws-s3", "destination_url": "s3://%s/backups/pg" % bucket, "bucket": bucket,
                    "prefix": "backups/pg", "reachable": True, "bucket_exists": True, "error": None},
        "postgres": None,
        "wal": None,
    }


def test_check_destination_missing_bucket(moto_endpoint, aws_environment):
    config = StorageConfig(destination_url="s3://missing-bucket-x/pg", server_name="db1", endpoint_url=moto_endpoint,
                           aws_access_key="testing", aws_secret_key="testing")
    result = operations.check_destination(config)
    assert result["ok"] is False
    assert (result["storage"]["reachable"], result["storage"]["bucket_exists"]) == (True, False)
    assert "'missing-bucket-x' does not exist" in result["storage"]["error"]


def test_check_destination_unreachable(closed_port, aws_environment):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", endpoint_url="http://127.0.0.1:%d" % closed_port,
                           aws_access_key="testing", aws_secret_key="testing")
    result = operations.check_destination(config)
    assert result["ok"] is False
    assert (result["storage"]["reachable"], result["storage"]["bucket_exists"]) == (False, None)
    assert "cannot reach S3" in result["storage"]["error"]


def test_check_destination_reports_a_postgres_that_cannot_be_reached(s3_config, closed_port):
    result = operations.check_destination(s3_config(), PostgresConfig(host="127.0.0.1", port=closed_port, user="nobody"))
    assert result["ok"] is False
    assert result["storage"]["error"] is None
    postgres = result["postgres"]
    assert postgres["connected"] is False
    assert postgres["error"].startswith("cannot connect to PostgreSQL")


class FactsSession:
    """Stands in for PostgresSession in the check of the server: given facts, nothing else."""

    def __init__(self, facts):
        self.version = facts.version
        self._facts = facts

    def facts(self):
        return self._facts

    def close(self):
        pass


def test_check_destination_reports_the_warnings_of_the_server(s3_config, facts, monkeypatch):
    facts.version = 190002
    facts.warnings = [untested_version_warning(facts.version)]
    monkeypatch.setattr(operations, "PostgresSession", lambda config: FactsSession(facts))
    result = operations.check_destination(s3_config(), PostgresConfig())
    assert result["ok"] is True
    assert result["postgres"]["server_version"] == 190002
    assert result["postgres"]["warnings"] == facts.warnings
    assert facts.warnings[0].startswith("PostgreSQL 19 is newer than the newest major")


def test_check_destination_bad_url_raises(aws_environment):
    with pytest.raises(ConfigurationError) as caught:
        operations.check_destination(StorageConfig(destination_url="https://bkt/pg", server_name="db1"))
    assert caught.value.parameter == "destination_url"


# --- list and show -------------------------------------------------------------------------------------


@pytest.fixture
def backups(s3_config):
    config = s3_config()
    store = open_store(config)
    sizes = {
        "20261125T023350": write_backup(store, "20261125T023350", "DONE", name="mybackup",
                                        objects=(("data.tar", 3000), ("data_0001.tar", 100), ("16384.tar", 700))),
        "20261126T023350": write_backup(store, "20261126T023350", "FAILED"),
        "20261127T023350": write_backup(store, "20261127T023350", "STARTED"),
    }
    store.put_object(store.destination.key("base", "20261124T000000", "data.tar"), b"no backup.info")
    return config, sizes


def test_list_backups(backups):
    config, sizes = backups
    listed = operations.list_backups(config)
    assert [(item["backup_id"], item["status"], item["backup_name"]) for item in listed] == [
        ("20261125T023350", "DONE", "mybackup"), ("20261126T023350", "FAILED", None), ("20261127T023350", "STARTED", None)]
    first = listed[0]
    assert first == {
        "backup_id": "20261125T023350", "backup_name": "mybackup", "status": "DONE",
        "begin_time": "2026-11-25T02:33:50.633943+00:00", "end_time": "2026-11-25T02:33:54.716105+00:00",
        "begin_wal": "000000010000000000000002", "end_wal": "000000010000000000000003", "timeline": 1,
        "size": sizes["20261125T023350"], "error": None, "keep": None,
    }
    assert listed[1]["error"] == "failure uploading data (boom)"


@pytest.mark.parametrize("target", ["full", "standalone"])
def test_list_and_show_tell_the_keep_of_a_backup(backups, target):
    # barman-cloud-backup-list shows KEEP:FULL / KEEP:STANDALONE from base/<id>/annotations/keep.
    config = backups[0]
    store = open_store(config)
    unkept = operations.show_and_check_backup(config, "mybackup")[1]
    store.put_object(store.destination.key("base", "20261125T023350", "annotations", "keep"), target.encode())
    assert [item["keep"] for item in operations.list_backups(config)] == [target, None, None]
    assert operations.show_backup(config, "mybackup")["keep"] == target
    shown, checked = operations.show_and_check_backup(config, "mybackup")
    assert shown["keep"] == target
    # The check is that of the backup without its keep (where the fixture's 100-byte part is not a tar).
    assert dict(checked, objects=unkept["objects"]) == unkept and checked["objects"] == unkept["objects"] + 1


def test_list_backups_of_an_empty_destination(s3_config):
    assert operations.list_backups(s3_config(server_name="nothing-here")) == []


def test_show_backup_by_name_and_shortcut(backups):
    config, sizes = backups
    shown = operations.show_backup(config, "mybackup")
    assert shown["backup_id"] == "20261125T023350"
    assert shown["begin_time"] == "2026-11-25T02:33:50.633943+00:00"
    assert shown["tablespaces"] == [{"name": "ts1", "oid": 16384, "location": "/srv/pg_ts1"}]
    assert shown["size"] == sizes["20261125T023350"]
    keys = sorted(item["key"].rsplit("/", 1)[1] for item in shown["objects"])
    assert keys == ["16384.tar", "backup.info", "data.tar", "data_0001.tar"]
    assert operations.show_backup(config, "latest")["backup_id"] == "20261126T023350"
    assert operations.show_backup(config, "last-failed")["backup_id"] == "20261126T023350"
    assert operations.show_backup(config, "20261127T023350")["status"] == "STARTED"


def test_show_unknown_backup(backups):
    config = backups[0]
    with pytest.raises(BackupNotFoundError) as caught:
        operations.show_backup(config, "nope")
    assert "server 'db1'" in str(caught.value)
    assert config.destination_url in str(caught.value)


def test_check_destination_skips_the_wal_check_when_the_store_fails(moto_endpoint, aws_environment, monkeypatch):
    """No segment switch on the server for a store that does not answer (the check fails anyway)."""
    asked = []
    monkeypatch.setattr(operations, "_check_postgres",
                        lambda postgres, storage, check_wal: asked.append(check_wal) or {"error": None})
    config = StorageConfig(destination_url="s3://missing-bucket-x/pg", server_name="db1", endpoint_url=moto_endpoint,
                           aws_access_key="testing", aws_secret_key="testing")
    result = operations.check_destination(config, PostgresConfig(), True)
    assert result["ok"] is False and result["wal"] is None
    assert asked == [False]


# --- describe_backup(check_wal=True): the WAL archive from the backup's first segment on -------------


def put_wals(store, *names):
    for name in names:
        store.put_object(store.destination.key(*layout.wal_path(name, "gzip" if name.endswith("3") else None)), b"w")


def test_wal_check_finds_the_newest_segment_and_the_gaps(backups):
    config = backups[0]
    store = open_store(config)
    # mybackup begins at ...02. 01 is older; 04 is missing; 06 is on timeline 2 (after a promotion),
    # with its history file; a .partial and a backup history file are not segments.
    put_wals(store, "000000010000000000000001", "000000010000000000000002", "000000010000000000000003",
             "000000010000000000000005", "000000010000000000000006.partial",
             "000000010000000000000003.00000028.backup", "00000002.history", "000000020000000000000006")
    checked = operations.describe_backup(config, "mybackup", check_wal=True)["wal_check"]
    assert checked == {"backup_id": "20261125T023350", "begin_wal": "000000010000000000000002",
                       "newest": "000000020000000000000006", "segments": 4, "missing": ["000000010000000000000004"],
                       "missing_count": 1, "ok": False, "error": None}
    put_wals(store, "000000010000000000000004")
    checked = operations.describe_backup(config, "mybackup", check_wal=True)["wal_check"]
    assert checked["ok"] is True and checked["missing"] == [] and checked["segments"] == 5


def test_wal_check_without_any_wal_from_the_backup_on(backups):
    checked = operations.describe_backup(backups[0], "mybackup", check_wal=True)["wal_check"]
    assert checked["ok"] is False and checked["newest"] is None and "no WAL archived" in checked["error"]


def test_segment_numbers_cross_a_log_boundary():
    size = 16 << 20
    last_of_log = continuity.segment_number("0000000100000000000000FF", size)
    assert continuity.segment_number("000000010000000100000000", size) == last_of_log + 1
    assert continuity.segment_name(1, last_of_log + 1, size) == "000000010000000100000000"
    # 1 GiB segments: four to a log.
    assert continuity.segment_name(3, continuity.segment_number("000000030000000200000003", 1 << 30) + 1,
                                   1 << 30) == "000000030000000300000000"
