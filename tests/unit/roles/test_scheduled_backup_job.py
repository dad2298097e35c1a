# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The job script of the scheduled_backup role, piece by piece, without a server or a store.

The integration tests (tests/integration/test_scheduled_backup.py) run it for real; these
cover what they cannot easily provoke: malformed credentials, secrets in error messages, a
failed run after a success, a ping that fails.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import urllib.error

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "scheduled_backup", "files",
                      "pgcloud-backup-job.py")


@pytest.fixture(scope="module")
def job():
    spec = importlib.util.spec_from_file_location("pgcloud_backup_job", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, text):
    path.write_text(text)
    return str(path)


def test_credentials_quoted_and_plain(job, tmp_path):
    path = write(tmp_path / "credentials.env",
                 '# comment\n\nAWS_ACCESS_KEY_ID=AKID\nAWS_SECRET_ACCESS_KEY="se=cr\\"et"\nPGPASSWORD=p w\n')
    assert job.read_credentials(path) == {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": 'se=cr"et',
                                          "PGPASSWORD": "p w"}


def test_credentials_missing_file_means_none(job, tmp_path):
    assert job.read_credentials(str(tmp_path / "absent.env")) == {}
    assert job.read_credentials(None) == {}


def test_credentials_unknown_key_refused_without_showing_the_line(job, tmp_path):
    path = write(tmp_path / "credentials.env", "AWS_SECRET=topsecret\n")
    with pytest.raises(job.JobConfigError) as raised:
        job.read_credentials(path)
    assert "line 1" in str(raised.value) and "topsecret" not in str(raised.value)


def test_redactor_replaces_longest_secret_first(job):
    redact = job.Redactor(["abc", "abcdef", ""])
    assert redact("password=abcdef and abc") == "password=******** and ********"
    assert redact(None) is None


def test_log_lines_are_redacted(job, capsys):
    job.setup_logging(job.Redactor(["s3cr3t"]), "INFO")
    try:
        logging.getLogger("pgcloud.backup").error("connection %s failed", "password=s3cr3t")
        assert "password=********" in capsys.readouterr().err
    finally:
        logging.getLogger().handlers[:] = []


CONFIG = {"job_name": "nightly", "storage": {"destination_url": "s3://b/p", "server_name": "db1"}}


def test_status_keeps_last_success_after_a_failure(job):
    success = job.build_status(CONFIG, {}, 100.0, 160.0, {"backup_id": "20260101T020000", "bytes_written": 42}, None)
    assert success["result"] == "success" and success["size_bytes"] == 42
    assert success["last_success"]["timestamp"] == 160.0
    failure = job.build_status(CONFIG, success, 200.0, 201.5, {"backup_id": None}, "bucket gone")
    assert failure["result"] == "failure" and failure["error"] == "bucket gone" and failure["size_bytes"] is None
    assert failure["last_success"] == success["last_success"]


def test_metrics_text(job):
    status = job.build_status(CONFIG, {}, 100.0, 160.0, {"backup_id": "20260101T020000", "bytes_written": 42}, None)
    values = {}
    for line in job.metrics_text(status).splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    labels = '{job_name="nightly",server_name="db1"}'
    assert values["pgcloud_backup_last_status" + labels] == 1
    assert values["pgcloud_backup_last_success_timestamp_seconds" + labels] == 160.0
    assert values["pgcloud_backup_last_duration_seconds" + labels] == 60.0
    assert values["pgcloud_backup_last_size_bytes" + labels] == 42


def test_write_atomically_leaves_only_the_file(job, tmp_path):
    target = tmp_path / "job.prom"
    job.write_atomically(str(target), "one\n")
    job.write_atomically(str(target), "two\n", 0o640)
    assert target.read_text() == "two\n"
    assert os.listdir(str(tmp_path)) == ["job.prom"]
    assert target.stat().st_mode & 0o777 == 0o640


class FakeResponse:
    status = 200

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def test_ping_success_and_failure_urls(job, monkeypatch):
    called = []
    monkeypatch.setattr(job.urllib.request, "urlopen", lambda url, timeout: called.append(url) or FakeResponse())
    job.ping("https://hc.example/ping/abc/", True, 5)
    job.ping("https://hc.example/ping/abc", False, 5)
    assert called == ["https://hc.example/ping/abc", "https://hc.example/ping/abc/fail"]


def test_ping_that_fails_does_not_raise(job, monkeypatch, caplog):
    def refuse(url, timeout):
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(job.urllib.request, "urlopen", refuse)
    job.ping("https://hc.example/ping/abc", True, 5)
    assert "could not ping" in caplog.text


def test_unusable_config_exits_2(job, tmp_path):
    assert job.main(["--config", write(tmp_path / "config.json", "{}")]) == 2
    assert job.main(["--config", str(tmp_path / "missing.json")]) == 2


def test_failed_backup_is_reported(job, tmp_path, monkeypatch):
    """A failure of the engine: exit 1, status file with the error, secrets redacted."""
    credentials = write(tmp_path / "credentials.env", 'AWS_SECRET_ACCESS_KEY="hunter2"\n')
    status_file = tmp_path / "status.json"
    config = dict(CONFIG, credentials_file=credentials, report={"status_file": str(status_file)})
    seen = {}

    def fail(config_, credentials_):
        seen.update(credentials_)
        raise RuntimeError("denied for secret hunter2")

    monkeypatch.setattr(job, "run_backup", fail)
    try:
        assert job.main(["--config", write(tmp_path / "config.json", json.dumps(config))]) == 1
    finally:
        logging.getLogger().handlers[:] = []
    assert seen == {"AWS_SECRET_ACCESS_KEY": "hunter2"}
    status = json.loads(status_file.read_text())
    assert status["result"] == "failure" and status["error"] == "denied for secret ********"


def test_every_credential_key_names_an_engine_parameter(job):
    from dataclasses import fields

    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import PostgresConfig, StorageConfig

    names = {"storage": {item.name for item in fields(StorageConfig)},
             "postgres": {item.name for item in fields(PostgresConfig)}}
    for key, (section, parameter) in job.CREDENTIAL_KEYS.items():
        assert parameter in names[section], key


def test_azure_and_gcp_secrets_are_read_whole(job, tmp_path):
    # The role writes each value JSON-encoded on one line: a service account key spans lines.
    key = json.dumps({"type": "service_account", "private_key": "-----BEGIN\nabc\n-----END\n"}, indent=2)
    path = write(tmp_path / "credentials.env", "AZURE_STORAGE_KEY=%s\nPGCLOUD_GCP_SERVICE_ACCOUNT_CONTENTS=%s\n"
                 % (json.dumps("k3y=="), json.dumps(key)))
    assert job.read_credentials(path) == {"AZURE_STORAGE_KEY": "k3y==", "PGCLOUD_GCP_SERVICE_ACCOUNT_CONTENTS": key}
