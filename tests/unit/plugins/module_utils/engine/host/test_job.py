# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled job (`pgcloud-backup backup`, engine/host/job.py and report.py), piece by piece,
without a server or a store.

The integration tests (tests/integration/test_scheduled_backup.py) run it for real; these
cover what they cannot easily provoke: malformed credentials, secrets in error messages, a
failed run after a success, a ping that fails.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import time
import urllib.error

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import host_config
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import MissingDependencyError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.host import job as job_module
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.host import report as report_module

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "..", "..", "roles", "scheduled_backup")


@pytest.fixture
def job():
    return job_module


@pytest.fixture
def report():
    return report_module


WAL_HEALTH = {"archive_mode": "on", "in_recovery": False, "archived_count": 66,
              "last_archived_wal": "000000010000000000000042", "last_archived_time": "2026-01-25T03:15:01+00:00",
              "failed_count": 2, "last_failed_wal": "000000010000000000000041",
              "last_failed_time": "2026-01-25T03:10:00+00:00", "failing": False, "ready_count": 3,
              "oldest_ready_age_seconds": 12.5}


@pytest.fixture(autouse=True)
def wal_health(monkeypatch):
    """The job reads the WAL archiver's state after each run: no server here."""
    monkeypatch.setattr(job_module, "read_wal_health", lambda config, credentials: dict(WAL_HEALTH))


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


def test_status_keeps_last_success_after_a_failure(job, report):
    success = report.build_status(CONFIG, {}, 100.0, 160.0, {"backup_id": "20260101T020000", "bytes_written": 42}, None)
    assert success["result"] == "success" and success["size_bytes"] == 42
    assert success["last_success"]["timestamp"] == 160.0
    failure = report.build_status(CONFIG, success, 200.0, 201.5, {"backup_id": None}, "bucket gone")
    assert failure["result"] == "failure" and failure["error"] == "bucket gone" and failure["size_bytes"] is None
    assert failure["last_success"] == success["last_success"]


def test_metrics_text(job, report):
    status = report.build_status(CONFIG, {}, 100.0, 160.0, {"backup_id": "20260101T020000", "bytes_written": 42}, None)
    values = {}
    for line in report.metrics_text(status).splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    labels = '{job_name="nightly",server_name="db1"}'
    assert values["pgcloud_backup_last_status" + labels] == 1
    assert values["pgcloud_backup_last_success_timestamp_seconds" + labels] == 160.0
    assert values["pgcloud_backup_last_duration_seconds" + labels] == 60.0
    assert values["pgcloud_backup_last_size_bytes" + labels] == 42


def test_write_atomically_leaves_only_the_file(job, report, tmp_path):
    target = tmp_path / "job.prom"
    report.write_atomically(str(target), "one\n")
    report.write_atomically(str(target), "two\n", 0o640)
    assert target.read_text() == "two\n"
    assert os.listdir(str(tmp_path)) == ["job.prom"]
    assert target.stat().st_mode & 0o777 == 0o640


class FakeResponse:
    status = 200

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def test_ping_success_and_failure_urls(job, report, monkeypatch):
    called = []
    monkeypatch.setattr(report, "http_get", lambda url, timeout: called.append(url) or FakeResponse())
    report.ping("https://hc.example/ping/abc/", True, 5)
    report.ping("https://hc.example/ping/abc", False, 5)
    assert called == ["https://hc.example/ping/abc", "https://hc.example/ping/abc/fail"]


def test_ping_that_fails_does_not_raise(job, report, monkeypatch, caplog):
    def refuse(url, timeout):
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(report, "http_get", refuse)
    report.ping("https://hc.example/ping/abc", True, 5)
    assert "could not ping" in caplog.text


def test_unusable_config_exits_2(job, tmp_path):
    assert job.run_job(write(tmp_path / "config.json", "{}")) == 2
    assert job.run_job(str(tmp_path / "missing.json")) == 2


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
        assert job.run_job(write(tmp_path / "config.json", json.dumps(config))) == 1
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
    for key, (section, parameter) in host_config.CREDENTIAL_KEYS.items():
        assert parameter in names[section], key


def test_azure_and_gcp_secrets_are_read_whole(job, tmp_path):
    # The role writes each value JSON-encoded on one line: a service account key spans lines.
    key = json.dumps({"type": "service_account", "private_key": "-----BEGIN\nabc\n-----END\n"}, indent=2)
    path = write(tmp_path / "credentials.env", "AZURE_STORAGE_KEY=%s\nPGCLOUD_GCP_SERVICE_ACCOUNT_CONTENTS=%s\n"
                 % (json.dumps("k3y=="), json.dumps(key)))
    assert job.read_credentials(path) == {"AZURE_STORAGE_KEY": "k3y==", "PGCLOUD_GCP_SERVICE_ACCOUNT_CONTENTS": key}


# --- exit status: one test per code of the README's table --------------------------------------

README = os.path.join(ROLE, "README.md")


def readme_exit_codes():
    """The codes of the role README's exit status table (| code | meaning |)."""
    codes = []
    with open(README, encoding="utf-8") as handle:
        for line in handle:
            cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
            if line.startswith("|") and cells[0] and (cells[0].isdigit() or cells[0].startswith("128")):
                codes.append(cells[0])
    return codes


def test_readme_exit_codes_are_the_scripts(job):
    assert readme_exit_codes() == [str(job.EXIT_DONE), str(job.EXIT_FAILED), str(job.EXIT_CONFIG),
                                   str(job.EXIT_LOCKED), "128+N"]


@pytest.fixture
def restore_logging():
    yield
    logging.getLogger().handlers[:] = []


def job_config(tmp_path, **extra):
    config = dict(CONFIG, report={"status_file": str(tmp_path / "status.json"), "textfile": str(tmp_path / "job.prom")},
                  lock_file=str(tmp_path / "job.lock"), max_runtime=3600)
    config.update(extra)
    return write(tmp_path / "config.json", json.dumps(config))


def status_of(tmp_path):
    return json.loads((tmp_path / "status.json").read_text())


def test_exit_0_when_done(job, tmp_path, monkeypatch, restore_logging):
    monkeypatch.setattr(job, "run_backup", lambda config, credentials: {"backup_id": "20260101T020000",
                                                                        "bytes_written": 1})
    assert job.run_job(job_config(tmp_path)) == 0
    assert status_of(tmp_path)["result"] == "success"
    # The lock is released and emptied: no start time outlives its run.
    assert (tmp_path / "job.lock").read_text() == ""


def test_exit_2_when_the_engine_refuses_a_parameter(job, tmp_path, restore_logging):
    """A ConfigurationError of the engine is a configuration error: exit 2, recorded as a failure."""
    config = job_config(tmp_path, backup={"compression": "rar"})
    assert job.run_job(config) == 2
    status = status_of(tmp_path)
    assert status["result"] == "failure" and "compression" in status["error"]


def test_exit_2_when_a_library_is_missing(job, tmp_path, monkeypatch, restore_logging):
    def fail(config, credentials):
        raise MissingDependencyError("zstandard", "compression: zstd")

    monkeypatch.setattr(job, "run_backup", fail)
    assert job.run_job(job_config(tmp_path)) == 2
    assert "zstandard" in status_of(tmp_path)["error"]


def test_exit_2_when_the_lock_file_cannot_be_opened(job, tmp_path, monkeypatch, restore_logging):
    monkeypatch.setattr(job, "run_backup", lambda *args: pytest.fail("ran without its lock"))
    assert job.run_job(job_config(tmp_path, lock_file=str(tmp_path / "gone" / "job.lock"))) == 2


def test_exit_75_while_another_run_holds_the_lock(job, tmp_path, monkeypatch, restore_logging):
    monkeypatch.setattr(job, "run_backup", lambda *args: pytest.fail("ran while the lock was held"))
    lock = tmp_path / "job.lock"
    lock.write_text(json.dumps({"pid": 4242, "started": job.time.time() - 60}))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert job.run_job(job_config(tmp_path)) == 75
    assert not (tmp_path / "status.json").exists()


@pytest.mark.parametrize("content", ["stale json", ""])
def test_exit_1_when_an_earlier_run_is_stuck(job, tmp_path, monkeypatch, restore_logging, content):
    """The lock held past max_runtime: a failure in the status file and the metrics, not a skip.

    With the start time in the lock file, and without (the empty lock of flock(1): its mtime).
    """
    monkeypatch.setattr(job, "run_backup", lambda *args: pytest.fail("ran while the lock was held"))
    lock = tmp_path / "job.lock"
    started = job.time.time() - 7200
    lock.write_text(json.dumps({"pid": 4242, "started": started}) if content else "")
    os.utime(lock, (started, started))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert job.run_job(job_config(tmp_path)) == 1
    status = status_of(tmp_path)
    assert status["result"] == "failure" and status["error"].startswith("previous run stuck since")
    assert ("pid 4242" in status["error"]) == bool(content)
    assert "max_runtime (3600 s)" in status["error"]
    assert "pgcloud_backup_last_status{" in (tmp_path / "job.prom").read_text()
    assert status["wal_archiving"] == WAL_HEALTH
    assert [line for line in (tmp_path / "job.prom").read_text().splitlines()
            if line.startswith("pgcloud_backup_last_status{")][0].endswith(" 0")


def test_no_bound_means_a_held_lock_is_always_a_skip(job, tmp_path, restore_logging):
    lock = tmp_path / "job.lock"
    lock.write_text(json.dumps({"pid": 4242, "started": 0}))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert job.run_job(job_config(tmp_path, max_runtime=0)) == 75


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
@pytest.mark.parametrize("wrapped", [False, True])
def test_exit_128_plus_n_when_a_signal_stops_the_backup(job, tmp_path, monkeypatch, restore_logging,
                                                        signum, code, wrapped):
    """A stop signal is a failure: the backup's clean-up runs (the engine's except block), the
    status file says failed with the signal named, and the handlers are given back afterwards."""
    cleaned = []
    previous = signal.getsignal(signum)

    def interrupted(config, credentials):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(10)
        except BaseException as error:  # what the engine's _take does
            cleaned.append(error)
            if wrapped:
                raise RuntimeError("backup 20260101T020000 failed: %s" % error) from error
            raise
        pytest.fail("the signal did not stop the backup")

    monkeypatch.setattr(job, "run_backup", interrupted)
    assert job.run_job(job_config(tmp_path)) == code
    assert len(cleaned) == 1
    status = status_of(tmp_path)
    assert status["result"] == "failure" and "stopped by %s" % signal.Signals(signum).name in status["error"]
    assert "max_runtime" not in status["error"]
    assert signal.getsignal(signum) == previous


def test_signal_at_max_runtime_says_so(job, tmp_path, monkeypatch, restore_logging):
    def interrupted(config, credentials):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)

    monkeypatch.setattr(job, "run_backup", interrupted)
    assert job.run_job(job_config(tmp_path, max_runtime=3)) == 143
    assert "at the job's max_runtime (3 s)" in status_of(tmp_path)["error"]


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_the_job_was_not_given_are_redacted_too(job, tmp_path, monkeypatch, capsys, restore_logging):
    """A conninfo password and a URL's password in an error: redacted by the engine's patterns."""
    def fail(config, credentials):
        raise RuntimeError("cannot connect with 'host=db password=pg-s3cret' to http://key:url-s3cret@store:9000/b")

    monkeypatch.setattr(job, "run_backup", fail)
    assert job.run_job(job_config(tmp_path)) == 1
    text = (tmp_path / "status.json").read_text() + capsys.readouterr().err
    assert "pg-s3cret" not in text and "url-s3cret" not in text
    assert "password=********" in status_of(tmp_path)["error"]


def test_destination_url_echoes_hide_userinfo(job, tmp_path, monkeypatch, capsys, restore_logging):
    monkeypatch.setattr(job, "run_backup", lambda *args: {"backup_id": "20260101T020000", "bytes_written": 1})
    config = job_config(tmp_path, storage={"destination_url": "s3://user:dest-s3cret@bucket/pg", "server_name": "db1"})
    job.run_job(config)
    assert "dest-s3cret" not in (tmp_path / "status.json").read_text() + capsys.readouterr().err
    assert status_of(tmp_path)["destination_url"] == "s3://********@bucket/pg"


def test_ping_url_is_never_logged(job, report, tmp_path, monkeypatch, caplog, restore_logging):
    token = "ping-token-1234"
    monkeypatch.setattr(report, "http_get", lambda url, timeout: FakeResponse())
    report.ping("https://hc.example/ping/%s" % token, True, 5)

    def refuse(url, timeout):
        raise ValueError("unknown url type: %r" % url)

    monkeypatch.setattr(report, "http_get", refuse)
    report.ping("https://hc.example/ping/%s" % token, False, 5)
    assert "hc.example" in caplog.text and token not in caplog.text


def test_ping_url_is_redacted_from_every_log_line(job, report, tmp_path, monkeypatch, capsys, restore_logging):
    token = "ping-token-5678"
    monkeypatch.setattr(job, "run_backup", lambda *args: job.LOG.info("an SDK quoting http://hc/%s", token) or {
        "backup_id": "20260101T020000", "bytes_written": 1})
    monkeypatch.setattr(report, "http_get", lambda url, timeout: FakeResponse())
    config = job_config(tmp_path, report={"status_file": str(tmp_path / "status.json"),
                                          "ping_url": "http://hc/%s" % token})
    assert job.run_job(config) == 0
    assert token not in capsys.readouterr().err


# --- metrics file -----------------------------------------------------------------------------


def test_metrics_rewritten_in_place_where_the_folder_is_not_writable(job, report, tmp_path, monkeypatch):
    """A textfile folder the role did not create: the job rewrites the file the role created."""
    target = tmp_path / "job.prom"
    target.write_text("old content that is longer than the new one\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(report.tempfile, "mkstemp", refuse)
    report.write_metrics(str(target), "new\n")
    assert target.read_text() == "new\n"


def prom_values(path):
    return {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in path.read_text().splitlines()
            if line and not line.startswith("#")}


def test_retention_after_a_done_backup_is_in_status_and_metrics(job, tmp_path, monkeypatch, restore_logging):
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import scheduled

    monkeypatch.setattr(job, "run_backup", lambda config, credentials: {"backup_id": "20260101T020000",
                                                                        "bytes_written": 1})
    seen = []
    monkeypatch.setattr(scheduled, "run_retention", lambda config, credentials: seen.append(config["retention"]) or {
        "deleted": [{"backup_id": "20251201T020000", "wals": ["a", "b"]}], "aborted_uploads": [{"key": "k"}]})
    retention = {"retention_policy": "REDUNDANCY 7", "minimum_redundancy": 1, "abort_uploads_older_than": 86400}
    assert job.run_job(job_config(tmp_path, retention=retention)) == 0
    assert seen == [retention]
    assert status_of(tmp_path)["retention"] == {
        "result": "success", "policy": "REDUNDANCY 7", "error": None, "deleted_backups": ["20251201T020000"],
        "deleted_wals": 2, "aborted_uploads": ["k"]}
    values = prom_values(tmp_path / "job.prom")
    assert (values["pgcloud_backup_retention_last_status"], values["pgcloud_backup_retention_deleted_backups"],
            values["pgcloud_backup_retention_deleted_wals"], values["pgcloud_backup_retention_aborted_uploads"]) == (
        1, 1, 2, 1)


def test_a_failed_retention_leaves_the_run_a_success(job, tmp_path, monkeypatch, capsys, restore_logging):
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import StorageError
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import scheduled

    monkeypatch.setattr(job, "run_backup", lambda config, credentials: {"backup_id": "20260101T020000",
                                                                        "bytes_written": 1})

    def refuse(config, credentials):
        raise StorageError("S3 refused to delete 1 of 1 objects with key hunter2-secret-key")

    monkeypatch.setattr(scheduled, "run_retention", refuse)
    credentials = write(tmp_path / "credentials.env", "AWS_SECRET_ACCESS_KEY=hunter2-secret-key\n")
    config = job_config(tmp_path, retention={"retention_policy": "REDUNDANCY 7"}, credentials_file=credentials)
    assert job.run_job(config) == 0
    status = status_of(tmp_path)
    assert status["result"] == "success" and status["error"] is None
    assert status["retention"]["result"] == "failure" and "S3 refused to delete" in status["retention"]["error"]
    assert "hunter2" not in (tmp_path / "status.json").read_text()
    values = prom_values(tmp_path / "job.prom")
    assert values["pgcloud_backup_last_status"] == 1 and values["pgcloud_backup_retention_last_status"] == 0
    assert "ERROR pgcloud-backup: retention REDUNDANCY 7 FAILED" in capsys.readouterr().err


def test_no_retention_without_a_policy_nor_after_a_failed_backup(job, tmp_path, monkeypatch, restore_logging):
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import scheduled

    monkeypatch.setattr(scheduled, "run_retention", lambda *args: pytest.fail("retention ran"))
    monkeypatch.setattr(job, "run_backup", lambda config, credentials: {"backup_id": "20260101T020000",
                                                                        "bytes_written": 1})
    assert job.run_job(job_config(tmp_path, retention={"retention_policy": ""})) == 0
    assert status_of(tmp_path)["retention"] is None
    assert "retention" not in (tmp_path / "job.prom").read_text()

    def fail(config, credentials):
        raise RuntimeError("the backup failed")

    monkeypatch.setattr(job, "run_backup", fail)
    assert job.run_job(job_config(tmp_path, retention={"retention_policy": "REDUNDANCY 1"})) == 1
    assert "retention" not in status_of(tmp_path)
# --- WAL archiving health ---------------------------------------------------------------------


def metric_values(text):
    values = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values


def test_status_and_metrics_carry_wal_health(job, tmp_path, monkeypatch, restore_logging):
    monkeypatch.setattr(job, "run_backup", lambda *args: {"backup_id": "20260101T020000", "bytes_written": 1})
    assert job.run_job(job_config(tmp_path)) == 0
    assert status_of(tmp_path)["wal_archiving"] == WAL_HEALTH
    values = metric_values((tmp_path / "job.prom").read_text())
    assert values["pgcloud_backup_wal_status_read"] == 1
    assert values["pgcloud_backup_wal_archived_count"] == 66
    assert values["pgcloud_backup_wal_failed_count"] == 2
    assert values["pgcloud_backup_wal_ready_count"] == 3
    assert values["pgcloud_backup_wal_oldest_ready_age_seconds"] == 12.5
    assert values["pgcloud_backup_wal_last_archived_timestamp_seconds"] == 1769310901
    assert values["pgcloud_backup_wal_last_failed_timestamp_seconds"] == 1769310600


@pytest.mark.parametrize("outcome", ["done", "failed"])
def test_wal_health_read_after_every_run(job, tmp_path, monkeypatch, restore_logging, outcome):
    def backup(*args):
        if outcome == "failed":
            raise RuntimeError("store gone")
        return {"backup_id": "20260101T020000", "bytes_written": 1}

    monkeypatch.setattr(job, "run_backup", backup)
    job.run_job(job_config(tmp_path))
    assert status_of(tmp_path)["wal_archiving"]["last_archived_wal"] == "000000010000000000000042"


def test_unreadable_wal_health_does_not_fail_the_backup(job, tmp_path, monkeypatch, restore_logging):
    """The real reader against a server that does not answer: DONE, exit 0, the error in the status."""
    monkeypatch.undo()
    monkeypatch.setattr(job, "run_backup", lambda *args: {"backup_id": "20260101T020000", "bytes_written": 1})
    config = job_config(tmp_path, postgres={"host": "127.0.0.1", "port": 1, "password": "pg-s3cret"})
    assert job.run_job(config) == 0
    status = status_of(tmp_path)
    assert status["result"] == "success" and "cannot connect to PostgreSQL" in status["wal_archiving"]["error"]
    values = metric_values((tmp_path / "job.prom").read_text())
    assert values["pgcloud_backup_wal_status_read"] == 0 and values["pgcloud_backup_last_status"] == 1
    assert "pgcloud_backup_wal_ready_count" not in values


def test_metrics_without_ready_files_listing(report):
    """A role without pg_monitor: the ready count and age are NaN, not 0 (which would look healthy)."""
    status = report.build_status(CONFIG, {}, 100.0, 160.0, {"backup_id": "x", "bytes_written": 1}, None,
                                 dict(WAL_HEALTH, ready_count=None, oldest_ready_age_seconds=None))
    text = report.metrics_text(status)
    assert 'pgcloud_backup_wal_ready_count{job_name="nightly",server_name="db1"} NaN' in text
    assert 'pgcloud_backup_wal_oldest_ready_age_seconds{job_name="nightly",server_name="db1"} NaN' in text


# --- the host command -------------------------------------------------------------------------


def test_pgcloud_backup_backup_is_the_job(job, tmp_path, monkeypatch, restore_logging):
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import cli

    monkeypatch.setattr(job, "run_backup", lambda *args: {"backup_id": "20260101T020000", "bytes_written": 1})
    assert cli.main(["--config", job_config(tmp_path), "backup"]) == 0
    assert status_of(tmp_path)["backup_id"] == "20260101T020000"
    assert cli.main(["--config", str(tmp_path / "missing.json"), "backup"]) == 2


def test_status_carries_the_archiving_setup_the_role_recorded(report, tmp_path):
    config = dict(CONFIG, report={"status_file": str(tmp_path / "status.json")})
    assert report.build_status(config, {}, 100.0, 160.0, {"backup_id": None}, "x")["wal_archiving_setup"] is None
    write(tmp_path / "wal-archiving.json", json.dumps({"restart_required": True, "reason": "archive_mode"}))
    status = report.build_status(config, {}, 100.0, 160.0, {"backup_id": None}, "x")
    assert status["wal_archiving_setup"] == {"restart_required": True, "reason": "archive_mode"}
