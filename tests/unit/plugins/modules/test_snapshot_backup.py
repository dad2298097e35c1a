# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_backup around a stand-in engine: the configs it builds, the rules Ansible checks
before the engine runs, and what it returns."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.pgcloud.backup.plugins.module_utils import ansible_adapter as adapter
from ansible_collections.pgcloud.backup.plugins.modules import snapshot_backup

REQUIRED = {"destination_url": "s3://acme-backups/postgres", "server_name": "db1",
            "snapshot_instance": "i-0abc", "snapshot_disks": ["pgdata", "pgwal"]}


@pytest.fixture(autouse=True)
def no_journal(monkeypatch):
    monkeypatch.setattr(basic, "has_journal", False)
    monkeypatch.setattr(basic, "HAS_SYSLOG", False)


@pytest.fixture
def engine(monkeypatch):
    calls = []

    def take_snapshot_backup(storage, postgres, snapshot, backup, check_mode=False):
        calls.append((storage, postgres, snapshot, backup, check_mode))
        return {"changed": not check_mode, "backup_id": "20260125T031500", "status": "DONE", "snapshots": [],
                "keys": ["postgres/db1/base/20260125T031500/backup_label"], "msg": "done"}

    monkeypatch.setattr(snapshot_backup, "take_snapshot_backup", take_snapshot_backup)
    return calls


@pytest.fixture
def run(run_main):
    def run_module(args):
        code, result, _raw = run_main(args, snapshot_backup.main)
        return code, result

    return run_module


def test_parameters_become_the_engine_configs(run, engine):
    code, result = run(dict(REQUIRED, aws_region="eu-west-1", aws_snapshot_lock_mode="compliance",
                            aws_snapshot_lock_duration=30, backup_name="nightly", tags={"team": "dba"}))
    assert code == 0, result
    storage, _postgres, snapshot, backup, check_mode = engine[0]
    assert (snapshot.snapshot_instance, snapshot.snapshot_disks, snapshot.aws_region) == (
        "i-0abc", ["pgdata", "pgwal"], "eu-west-1")
    assert (snapshot.aws_snapshot_lock_mode, snapshot.aws_snapshot_lock_duration) == ("compliance", 30)
    assert snapshot.aws_await_snapshots_timeout == 3600
    assert backup.backup_name == "nightly" and backup.compression is None
    assert storage.tags == {"team": "dba"} and check_mode is False
    assert result["object_keys"] == ["postgres/db1/base/20260125T031500/backup_label"]


def test_deprecated_gcp_aliases_still_work_and_warn(run, engine):
    code, result = run(dict(REQUIRED, cloud_provider="google-cloud-storage", snapshot_gcp_project="acme",
                            snapshot_zone="europe-west1-b"))
    assert code == 0, result
    snapshot = engine[0][2]
    assert (snapshot.gcp_project, snapshot.gcp_zone, snapshot.provider) == ("acme", "europe-west1-b", "gcp")
    assert any("snapshot_gcp_project" in str(item) for item in result.get("deprecations", []))


@pytest.mark.parametrize("extra, words", [
    ({"cloud_provider": "google-cloud-storage", "gcp_project": "acme"}, ["gcp_zone"]),
    ({"cloud_provider": "azure-blob-storage", "azure_subscription_id": "s"}, ["azure_resource_group"]),
    ({"aws_snapshot_lock_mode": "compliance"}, ["aws_snapshot_lock_duration", "aws_snapshot_lock_expiration_date"]),
    ({"aws_snapshot_lock_mode": "governance", "aws_snapshot_lock_duration": 3,
      "aws_snapshot_lock_expiration_date": "2099-01-01T00:00:00.000Z"}, ["mutually exclusive"]),
    ({"aws_snapshot_lock_duration": 3}, ["aws_snapshot_lock_mode"]),
    ({"aws_snapshot_lock_mode": "legal-hold", "aws_snapshot_lock_duration": 3}, ["governance, compliance"]),
])
def test_rules_ansible_can_express_fail_before_the_engine(run, engine, extra, words):
    code, result = run(dict(REQUIRED, **extra))
    assert code == 1
    assert engine == []
    for word in words:
        assert word in result["msg"]


def test_engine_rules_fail_with_the_parameter(run, engine):
    code, result = run(dict(REQUIRED, aws_snapshot_lock_mode="governance", aws_snapshot_lock_duration=3,
                            aws_snapshot_lock_cool_off_period=1))
    assert code == 1
    assert result["parameter"] == "aws_snapshot_lock_cool_off_period"
    assert "compliance mode only" in result["msg"]


def test_check_mode_reaches_the_engine(run, engine):
    code, result = run(dict(REQUIRED, _ansible_check_mode=True))
    assert code == 0
    assert engine[0][4] is True and result["changed"] is False


def test_snapshot_piece_is_a_valid_argument_spec_with_no_secret():
    spec = adapter.merge_argument_specs(adapter.storage_argument_spec(), adapter.snapshot_argument_spec())
    assert ArgumentSpecValidator(spec).validate(dict(REQUIRED)).error_messages == []
    assert not any(option.get("no_log") for option in adapter.snapshot_argument_spec().values())


def test_module_spec_reuses_the_shared_pieces():
    names = set(snapshot_backup.argument_spec())
    for piece in (adapter.storage_argument_spec(), adapter.postgres_argument_spec(), adapter.upload_argument_spec(),
                  adapter.snapshot_argument_spec()):
        assert set(piece) <= names
    assert not {"compression", "jobs", "max_archive_size"} & names
