# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retention/scheduled.py: the job's retention pass, which reports its failure and never raises."""

from __future__ import annotations

import logging

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import delete, scheduled
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.retention.stores import (
    put_backup, put_wals)

LABELS = '{job_name="j",server_name="db1"}'


def job_config(**retention):
    return {"storage": {"destination_url": "s3://test-bucket/some/path", "server_name": "db1"},
            "retention": retention}


@pytest.fixture
def stored(store, monkeypatch):
    monkeypatch.setattr(delete, "open_store", lambda config: store)
    put_backup(store, "20261101T000000", begin=2, end=2)
    put_backup(store, "20261102T000000", begin=4, end=4)
    put_backup(store, "20261103T000000", begin=6, end=6)
    put_wals(store, 1, 7)
    return store


def test_no_policy_no_pass(stored):
    assert scheduled.apply_retention(job_config(retention_policy=""), {}) is None
    assert scheduled.apply_retention({"storage": {}}, {}) is None


def test_a_pass_reports_what_it_deleted(stored, caplog):
    with caplog.at_level(logging.INFO):
        section = scheduled.apply_retention(job_config(retention_policy="REDUNDANCY 1"), {})
    assert section == {"result": "success", "policy": "REDUNDANCY 1", "error": None,
                       "deleted_backups": ["20261101T000000", "20261102T000000"], "deleted_wals": 5,
                       "aborted_uploads": []}
    assert "retention REDUNDANCY 1: 2 backups deleted (20261101T000000, 20261102T000000), 5 WAL files" in caplog.text


def test_minimum_redundancy_of_the_job(stored):
    section = scheduled.apply_retention(job_config(retention_policy="REDUNDANCY 1", minimum_redundancy=2), {})
    assert section["deleted_backups"] == ["20261101T000000"]


def test_a_failure_is_reported_redacted_and_logged_never_raised(stored, caplog):
    stored.fail_delete = lambda key: True
    with caplog.at_level(logging.INFO):
        section = scheduled.apply_retention(job_config(retention_policy="REDUNDANCY 1"), {},
                                            lambda text: text.replace("simulated", "********"))
    assert section["result"] == "failure" and section["deleted_backups"] == []
    assert "deleting backup 20261101T000000 failed: ******** failure" in section["error"]
    assert [record.levelname for record in caplog.records if "FAILED" in record.getMessage()] == ["ERROR"]


def test_an_unexpected_error_is_a_failed_pass_too(stored, monkeypatch):
    monkeypatch.setattr(scheduled, "run_retention", lambda *args: {}["boom"])
    assert scheduled.apply_retention(job_config(retention_policy="REDUNDANCY 1"), {})["error"] == "'boom'"


def test_run_retention_without_a_policy_is_refused(stored):
    with pytest.raises(ConfigurationError, match="the job has none .*--retention-policy") as raised:
        scheduled.run_retention(job_config(), {})
    assert raised.value.parameter == "retention_policy"


def test_run_retention_flags_override_the_job(stored):
    config = job_config(retention_policy="REDUNDANCY 1")
    assert len(scheduled.run_retention(config, {}, retention_policy="REDUNDANCY 2", check_mode=True)["deleted"]) == 1
    assert len(scheduled.run_retention(config, {}, minimum_redundancy=3, check_mode=True)["deleted"]) == 0
    latest = scheduled.run_retention(config, {}, backup_id="latest", check_mode=True)
    assert [step["backup_id"] for step in latest["deleted"]] == ["20261103T000000"]
    assert len(stored.delete_batches) == 0


@pytest.mark.parametrize("retention, parameter", [
    ({"retention_policy": "KEEP 3"}, "retention_policy"),
    ({"retention_policy": "REDUNDANCY 1", "minimum_redundancy": -2}, "minimum_redundancy"),
    ({"retention_policy": "REDUNDANCY 1", "abort_uploads_older_than": "1d"}, "abort_uploads_older_than"),
])
def test_settings_checked(retention, parameter):
    with pytest.raises(ConfigurationError) as raised:
        scheduled.retention_settings({"retention": retention})
    assert raised.value.parameter == parameter


def test_metrics():
    assert scheduled.retention_metrics(None, LABELS) == []
    lines = scheduled.retention_metrics({"result": "failure", "deleted_backups": [], "deleted_wals": 0,
                                         "aborted_uploads": ["k"]}, LABELS)
    values = {line.split("{")[0]: line.rsplit(" ", 1)[1] for line in lines if not line.startswith("#")}
    assert values == {"pgcloud_backup_retention_last_status": "0", "pgcloud_backup_retention_deleted_backups": "0",
                      "pgcloud_backup_retention_deleted_wals": "0", "pgcloud_backup_retention_aborted_uploads": "1"}
