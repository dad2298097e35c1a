# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three modules around a stand-in engine: what they pass to it and what they return."""

from __future__ import annotations

import pytest

from ansible.module_utils import basic

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import BackupError, BackupNotFoundError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.version import COLLECTION_VERSION
from ansible_collections.pgcloud.backup.plugins.modules import backup_info, base_backup, check

REQUIRED = {"destination_url": "s3://acme-backups/postgres", "server_name": "db1"}


@pytest.fixture(autouse=True)
def no_journal(monkeypatch):
    monkeypatch.setattr(basic, "has_journal", False)
    monkeypatch.setattr(basic, "HAS_SYSLOG", False)


@pytest.fixture
def run(run_main):
    """run(module, args) -> (exit code, result)."""

    def run_module(module, args):
        code, result, _raw = run_main(args, module.main)
        return code, result

    return run_module


def storage_report(error=None):
    return {"cloud_provider": "aws-s3", "destination_url": "s3://acme-backups/postgres", "bucket": "acme-backups",
            "prefix": "postgres", "reachable": error is None, "bucket_exists": None if error else True, "error": error}


def postgres_report(error=None, warnings=()):
    return {"connected": True, "server_version": 150004, "data_directory": "/var/lib/postgresql/15/main",
            "in_recovery": False, "backup_privileges": error is None, "archive_mode": "on", "error": error,
            "warnings": list(warnings)}


# --- check -------------------------------------------------------------------------------


def test_check_passes_and_changes_nothing(run, monkeypatch):
    calls = []

    def check_destination(storage, postgres, check_wal=None):
        calls.append((storage, postgres))
        return {"ok": True, "storage": storage_report(), "postgres": postgres_report()}

    monkeypatch.setattr(check, "check_destination", check_destination)
    code, result = run(check, dict(REQUIRED, port=5433))
    assert code == 0
    assert result["changed"] is False and result["ok"] is True
    assert result["msg"] == ("s3://acme-backups/postgres is reachable; PostgreSQL 15.4 at "
                             "/var/lib/postgresql/15/main can be backed up")
    assert result["version"] == COLLECTION_VERSION
    assert calls[0][1].port == 5433


def test_check_without_postgres_tests_the_store_only(run, monkeypatch):
    calls = []

    def check_destination(storage, postgres, check_wal=None):
        calls.append(postgres)
        return {"ok": True, "storage": storage_report(), "postgres": None}

    monkeypatch.setattr(check, "check_destination", check_destination)
    code, result = run(check, dict(REQUIRED, check_postgres=False))
    assert code == 0
    assert calls == [None]
    assert result["postgres"] is None


def test_check_fails_with_the_findings(run, monkeypatch):
    report = {"ok": False, "storage": storage_report("bucket 'acme-backups' does not exist"),
              "postgres": postgres_report("the PostgreSQL role may not run backups")}
    monkeypatch.setattr(check, "check_destination", lambda storage, postgres, check_wal=None: report)
    code, result = run(check, dict(REQUIRED))
    assert code == 1
    assert result["msg"] == ("storage: bucket 'acme-backups' does not exist; "
                             "postgres: the PostgreSQL role may not run backups")
    assert result["ok"] is False
    assert result["storage"]["error"] == "bucket 'acme-backups' does not exist"
    assert result["postgres"]["backup_privileges"] is False
    assert result["changed"] is False


def wal_report(error=None, warnings=()):
    return {"archive_mode": "on", "segment": "000000010000000000000042", "switched": True, "in_store": error is None,
            "waited_seconds": 1.5, "archiver": {"failing": error is not None}, "error": error,
            "warnings": list(warnings)}


@pytest.mark.parametrize("params, expected", [({}, None), ({"check_wal": True}, True), ({"check_wal": False}, False),
                                              ({"check_postgres": False}, False)])
def test_check_wal_unset_is_left_to_the_server(run, monkeypatch, params, expected):
    """Unset, check_wal reaches the engine as None: it runs where archive_mode is on."""
    calls = []

    def check_destination(storage, postgres, check_wal=None):
        calls.append(check_wal)
        return {"ok": True, "storage": storage_report(), "postgres": postgres_report(), "wal": None}

    monkeypatch.setattr(check, "check_destination", check_destination)
    code, _result = run(check, dict(REQUIRED, **params))
    assert code == 0 and calls == [expected]


def test_check_wal_needs_check_postgres(run, monkeypatch):
    monkeypatch.setattr(check, "check_destination", lambda *args: pytest.fail("checked with a refused parameter"))
    code, result = run(check, dict(REQUIRED, check_wal=True, check_postgres=False))
    assert code == 1
    assert result["parameter"] == "check_wal" and "check_postgres" in result["msg"]
    assert result["wal"] is None


def test_check_fails_when_wal_does_not_arrive(run, monkeypatch):
    report = {"ok": False, "storage": storage_report(), "postgres": postgres_report(),
              "wal": wal_report("WAL segment 000000010000000000000042 did not reach s3://b/db1/wals within 300 s")}
    monkeypatch.setattr(check, "check_destination", lambda storage, postgres, check_wal=None: report)
    code, result = run(check, dict(REQUIRED))
    assert code == 1
    assert result["msg"].startswith("wal: WAL segment 000000010000000000000042 did not reach")
    assert result["wal"]["in_store"] is False


def test_check_reports_the_wal_segment_and_warnings(run, monkeypatch):
    report = {"ok": True, "storage": storage_report(), "postgres": postgres_report(),
              "wal": wal_report(warnings=["the server is a standby: the WAL segment switch is skipped"])}
    monkeypatch.setattr(check, "check_destination", lambda storage, postgres, check_wal=None: report)
    code, result = run(check, dict(REQUIRED))
    assert code == 0
    assert result["msg"].endswith("; WAL segment 000000010000000000000042 reached the store in 1.5 s")
    assert any("standby" in str(warning) for warning in result["warnings"])


def test_check_passes_postgres_warnings_on(run, monkeypatch):
    report = {"ok": True, "storage": storage_report(), "postgres": postgres_report(warnings=["archive_mode is off"])}
    monkeypatch.setattr(check, "check_destination", lambda storage, postgres, check_wal=None: report)
    code, result = run(check, dict(REQUIRED))
    assert code == 0
    assert any("archive_mode is off" in str(warning) for warning in result["warnings"])


# --- base_backup -------------------------------------------------------------------------


def backup_result(**overrides):
    result = {"changed": True, "backup_id": "20260125T031500", "backup_name": None, "status": "DONE",
              "destination": "s3://acme-backups/postgres/db1/base/20260125T031500/",
              "keys": ["postgres/db1/base/20260125T031500/data.tar", "postgres/db1/base/20260125T031500/backup.info"],
              "bytes_read": 10, "bytes_written": 10, "elapsed_seconds": 1.0, "begin_wal": "000000010000000000000002",
              "end_wal": "000000010000000000000002", "begin_time": None, "end_time": None, "compression": None,
              "tablespaces": [], "msg": "backup 20260125T031500 DONE"}
    result.update(overrides)
    return result


def test_base_backup_passes_its_options_and_returns_the_objects(run, monkeypatch):
    calls = []

    def take_base_backup(storage, postgres, backup, check_mode=False):
        calls.append((storage, postgres, backup, check_mode))
        return backup_result()

    monkeypatch.setattr(base_backup, "take_base_backup", take_base_backup)
    code, result = run(base_backup, dict(REQUIRED, compression="zstd", jobs=4, max_bandwidth="20MB", name="nightly"))
    assert code == 0, result
    storage, postgres, backup, check_mode = calls[0]
    assert (storage.jobs, storage.max_bandwidth) == (4, 20 * 1024 ** 2)
    assert (backup.compression, backup.backup_name) == ("zstd", "nightly")
    assert postgres.dbname == "postgres"
    assert check_mode is False
    assert result["changed"] is True
    assert result["object_keys"][-1].endswith("backup.info")
    assert "keys" not in result  # result.keys would be the dict method in Jinja


def test_base_backup_in_check_mode_asks_the_engine_for_a_plan(run, monkeypatch):
    calls = []

    def take_base_backup(storage, postgres, backup, check_mode=False):
        calls.append(check_mode)
        return backup_result(backup_id=None, status=None, keys=[], plan={"jobs": 2})

    monkeypatch.setattr(base_backup, "take_base_backup", take_base_backup)
    code, result = run(base_backup, dict(REQUIRED, _ansible_check_mode=True))
    assert code == 0
    assert calls == [True]
    assert result["plan"] == {"jobs": 2}


def test_base_backup_failure_reports_the_backup_id(run, monkeypatch):
    def take_base_backup(storage, postgres, backup, check_mode=False):
        raise BackupError("backup 20260125T031500 failed: no space left on device", "20260125T031500")

    monkeypatch.setattr(base_backup, "take_base_backup", take_base_backup)
    code, result = run(base_backup, dict(REQUIRED))
    assert code == 1
    assert result["backup_id"] == "20260125T031500"
    assert "no space left on device" in result["msg"]


def test_base_backup_refuses_a_kms_key_without_encryption(run, monkeypatch):
    monkeypatch.setattr(base_backup, "take_base_backup", lambda *args, **kwargs: pytest.fail("engine called"))
    code, result = run(base_backup, dict(REQUIRED, sse_kms_key_id="alias/backups"))
    assert code == 1
    assert "sse_kms_key_id" in result["msg"] and "encryption" in result["msg"]


def test_base_backup_refuses_a_kms_key_with_aes256(run, monkeypatch):
    monkeypatch.setattr(base_backup, "take_base_backup", lambda *args, **kwargs: pytest.fail("engine called"))
    code, result = run(base_backup, dict(REQUIRED, encryption="AES256", sse_kms_key_id="alias/backups"))
    assert code == 1
    assert result["parameter"] == "sse_kms_key_id"


# --- backup_info -------------------------------------------------------------------------


def test_backup_info_lists_without_a_backup(run, monkeypatch):
    listing = [{"backup_id": "20260125T031500", "status": "DONE"}]
    monkeypatch.setattr(backup_info, "list_backups", lambda storage: listing)
    code, result = run(backup_info, dict(REQUIRED))
    assert code == 0
    assert result["backups"] == listing and "backup" not in result
    assert result["changed"] is False


def test_backup_info_shows_one_backup(run, monkeypatch):
    asked = []

    def describe_backup(storage, wanted, check_objects=False, check_wal=False):
        asked.append((wanted, check_objects, check_wal))
        return {"backup": {"backup_id": "20260125T031500", "status": "DONE", "objects": [], "size": 0}}

    monkeypatch.setattr(backup_info, "describe_backup", describe_backup)
    code, result = run(backup_info, dict(REQUIRED, backup="latest"))
    assert code == 0
    assert asked == [("latest", False, False)]
    assert result["backup"]["backup_id"] == "20260125T031500" and "backups" not in result
    code, result = run(backup_info, dict(REQUIRED, backup="latest", check_wal=True))
    assert code == 0 and asked[-1] == ("latest", False, True)


def test_backup_info_check_wal_needs_a_backup(run):
    code, result = run(backup_info, dict(REQUIRED, check_wal=True))
    assert code == 1 and "check_wal" in result["msg"] and "backup" in result["msg"]


def test_backup_info_fails_for_an_unknown_backup(run, monkeypatch):
    def describe_backup(storage, wanted, check_objects=False, check_wal=False):
        raise BackupNotFoundError("no backup 'nightly' of server 'db1' at s3://acme-backups/postgres")

    monkeypatch.setattr(backup_info, "describe_backup", describe_backup)
    code, result = run(backup_info, dict(REQUIRED, backup="nightly"))
    assert code == 1
    assert result["msg"] == "no backup 'nightly' of server 'db1' at s3://acme-backups/postgres"
