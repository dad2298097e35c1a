# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`pgcloud-backup delete`: the flags reach the retention, the result is JSON, failures are exit statuses."""

from __future__ import annotations

import json

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import cli
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError, StorageError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import scheduled


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"storage": {"destination_url": "s3://b/p", "server_name": "db1"},
                                "retention": {"retention_policy": "REDUNDANCY 3"}}))
    return str(path)


def test_flags_reach_the_retention_and_the_result_is_printed(config_file, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(scheduled, "run_retention", lambda *args, **kwargs: calls.append((args[2:], kwargs)) or {
        "changed": False, "deleted": []})
    assert cli.main(["--config", config_file, "delete"]) == 0
    assert json.loads(capsys.readouterr().out) == {"changed": False, "deleted": []}
    assert cli.main(["--config", config_file, "delete", "--retention-policy", "REDUNDANCY 1",
                     "--minimum-redundancy", "2", "--dry-run"]) == 0
    assert cli.main(["--config", config_file, "delete", "--backup-id", "oldest"]) == 0
    assert calls == [((None, None, None), {"check_mode": False}), ((None, "REDUNDANCY 1", 2), {"check_mode": True}),
                     (("oldest", None, None), {"check_mode": False})]


def test_backup_id_and_policy_exclude_each_other(config_file):
    with pytest.raises(SystemExit):
        cli.main(["--config", config_file, "delete", "--backup-id", "x", "--retention-policy", "REDUNDANCY 1"])


@pytest.mark.parametrize("error, code", [(ConfigurationError("retention_policy: bad", "retention_policy"), 2),
                                         (StorageError("S3 refused"), 1)])
def test_failures_are_exit_statuses(config_file, monkeypatch, capsys, error, code):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(scheduled, "run_retention", fail)
    assert cli.main(["--config", config_file, "delete"]) == code
    captured = capsys.readouterr()
    assert captured.out == "" and str(error) in captured.err
