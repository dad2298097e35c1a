# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_keep and backup_delete around a stand-in engine: what they pass to it and what they return."""

from __future__ import annotations

import pytest

from ansible.module_utils import basic

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.modules import backup_delete, backup_keep

REQUIRED = {"destination_url": "s3://acme-backups/postgres", "server_name": "db1"}


@pytest.fixture(autouse=True)
def no_journal(monkeypatch):
    monkeypatch.setattr(basic, "has_journal", False)
    monkeypatch.setattr(basic, "HAS_SYSLOG", False)


@pytest.fixture
def run(run_main):
    def run_module(module, args):
        code, result, _raw = run_main(args, module.main)
        return code, result

    return run_module


def test_keep_passes_the_request_and_check_mode(run, monkeypatch):
    calls = []

    def manage_keep(storage, backup, state, target, check_mode):
        calls.append((storage.server_name, backup, state, target, check_mode))
        return {"backup_id": "20260125T031500", "keep": target, "previous_keep": None, "changed": True}

    monkeypatch.setattr(backup_keep, "manage_keep", manage_keep)
    code, result = run(backup_keep, dict(REQUIRED, backup="latest", target="standalone", _ansible_check_mode=True))
    assert code == 0 and result["changed"] is True and result["keep"] == "standalone"
    assert calls == [("db1", "latest", "present", "standalone", True)]


def test_keep_present_needs_a_target(run):
    code, result = run(backup_keep, dict(REQUIRED, backup="latest"))
    assert code == 1 and "target" in result["msg"]


def test_delete_needs_one_of_backup_id_and_policy(run):
    code, result = run(backup_delete, dict(REQUIRED))
    assert code == 1 and "backup_id" in result["msg"] and "retention_policy" in result["msg"]
    code, result = run(backup_delete, dict(REQUIRED, backup_id="x", retention_policy="REDUNDANCY 1"))
    assert code == 1 and "mutually exclusive" in result["msg"]


def test_delete_passes_the_request_and_reports_the_engines_errors(run, monkeypatch):
    calls = []

    def delete_backups(storage, backup_id, retention_policy, minimum_redundancy, check_mode, abort_uploads_older_than):
        calls.append((backup_id, retention_policy, minimum_redundancy, check_mode, abort_uploads_older_than))
        if retention_policy == "bad":
            raise ConfigurationError("retention_policy='bad' is not a policy", "retention_policy")
        return {"changed": False, "deleted": [], "retention": []}

    monkeypatch.setattr(backup_delete, "delete_backups", delete_backups)
    code, result = run(backup_delete, dict(REQUIRED, retention_policy="REDUNDANCY 2", minimum_redundancy=1))
    assert code == 0 and result["changed"] is False and result["deleted"] == []
    code, result = run(backup_delete, dict(REQUIRED, retention_policy="bad"))
    assert code == 1 and result["parameter"] == "retention_policy"
    assert calls == [(None, "REDUNDANCY 2", 1, False, 86400), (None, "bad", 0, False, 86400)]
