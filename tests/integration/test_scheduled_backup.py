# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pgcloud.backup.scheduled_backup role, applied to this machine (connection local).

Every folder the role writes to (/etc/systemd/system, /etc/cron.d, /etc/pgcloud-backup,
/opt/pgcloud-backup-job, /var/lib/pgcloud-backup) is moved under a scratch root by the role's
variables, so the machine itself is left alone. systemd is not PID 1 here: the timer cannot be
started (pgcloud_backup_systemd_activate: false), so the tests run the service's ExecStart
command themselves, parsed from the written unit, as the unit's User= with its Environment=,
which is what systemd would do when the timer fires. The job then backs up the test bed's
source cluster to moto, and the barman tools must list the backup as DONE.

The job's Python is the test venv (pgcloud_backup_venv_create: false), because creating a
virtual environment and installing boto3 at every run is slow; test_virtualenv_install takes
the real pip path once.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from testbed import (
    BACKUP_ID_PATTERN,
    COLLECTION_ROOT,
    INTEGRATION_DIR,
    POSTGRES_USER,
    MotoServer,
    PYTHON_LIB,
    VENV_BIN,
    VENV_PYTHON,
    PlaybookResult,
    PostgresCluster,
    StorageTarget,
    backup_list,
    remove_tree,
    run_playbook,
    scratch_dir,
    wait_for,
)

PLAYBOOK = INTEGRATION_DIR / "playbooks" / "scheduled_backup.yml"
JOB = "pgcloud-backup-test"
ACCESS_KEY = "testing"
# moto accepts any credentials: a unique secret shows wherever it leaks.
SECRET = "pgcloud-secret-%s" % uuid.uuid4().hex


class PingServer:
    """A healthchecks.io stand-in on loopback: records the path of every GET."""

    def __init__(self) -> None:
        self.paths: List[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (the name http.server calls)
                paths.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d/ping/%s" % (self.server.server_address[1], JOB)

    def __enter__(self) -> "PingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A scratch stand-in for the managed host's /: the folders a host always has exist."""
    root = scratch_dir("pgcloud-scheduled-")
    for folder in ("etc/systemd/system", "etc/cron.d", "var/lib/prometheus/node-exporter"):
        (root / folder).mkdir(parents=True)
    yield root
    remove_tree(root)


@pytest.fixture
def ping() -> Iterator[PingServer]:
    with PingServer() as server:
        yield server


def role_vars(root: Path, storage: StorageTarget, cluster: PostgresCluster, **extra: Any) -> Dict[str, Any]:
    params = cluster.connection_params
    variables = {
        "pgcloud_backup_destination_url": storage.url,
        "pgcloud_backup_server_name": storage.server_name,
        "pgcloud_backup_endpoint_url": storage.endpoint_url,
        "pgcloud_backup_aws_access_key": ACCESS_KEY,
        "pgcloud_backup_aws_secret_key": SECRET,
        "pgcloud_backup_host": params["host"],
        "pgcloud_backup_port": params["port"],
        "pgcloud_backup_user": params["user"],
        "pgcloud_backup_compression": "zstd",
        "pgcloud_backup_immediate_checkpoint": True,
        "pgcloud_backup_schedule": "*-*-* 02:00:00",
        "pgcloud_backup_job_name": JOB,
        "pgcloud_backup_scheduler": "systemd",
        "pgcloud_backup_systemd_activate": False,
        "pgcloud_backup_venv_create": False,
        "pgcloud_backup_python": str(VENV_PYTHON),
        # The test venv's interpreter is a copy that needs its own libpython.
        "pgcloud_backup_job_environment": {"LD_LIBRARY_PATH": str(PYTHON_LIB)},
        "pgcloud_backup_install_dir": str(root / "opt/pgcloud-backup-job"),
        "pgcloud_backup_config_root": str(root / "etc/pgcloud-backup"),
        "pgcloud_backup_status_root": str(root / "var/lib/pgcloud-backup"),
        "pgcloud_backup_unit_dir": str(root / "etc/systemd/system"),
        "pgcloud_backup_cron_dir": str(root / "etc/cron.d"),
        "pgcloud_backup_textfile_dir": str(root / "var/lib/prometheus/node-exporter"),
        # The source cluster archives with barman-cloud-wal-archive (conftest.py): test_wal_archiving_role.py
        # sets archiving up on clusters of its own.
        "pgcloud_backup_wal_archiving": False,
    }
    variables.update(extra)
    return variables


def apply(variables: Dict[str, Any], check: bool = False) -> PlaybookResult:
    result = run_playbook(PLAYBOOK, variables, check=check)
    assert result.rc == 0, result.output
    return result


def changed(result: PlaybookResult) -> int:
    return int(result.stats["localhost"]["changed"])


def unit_settings(path: Path) -> Dict[str, List[str]]:
    """Key -> values of a unit file (keys may repeat, as Environment= does)."""
    settings: Dict[str, List[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def run_service(service: Path) -> subprocess.CompletedProcess:
    """Run the service's ExecStart as systemd would: as User=, with only its Environment=.

    systemd is not PID 1 on the test machine, so the timer cannot start the service.
    """
    settings = unit_settings(service)
    environment = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
    for value in settings.get("Environment", []):
        environment.append(json.loads(value) if value.startswith('"') else value)
    command = shlex.split(settings["ExecStart"][0])
    return subprocess.run(["runuser", "-u", settings["User"][0], "--", "env", "-i", *environment, *command],
                          capture_output=True, text=True, timeout=600, check=False)


def start_service(service: Path, output: Any) -> subprocess.Popen:
    """run_service, started in the background with its output to a file."""
    settings = unit_settings(service)
    environment = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
    for value in settings.get("Environment", []):
        environment.append(json.loads(value) if value.startswith('"') else value)
    command = shlex.split(settings["ExecStart"][0])
    return subprocess.Popen(["runuser", "-u", settings["User"][0], "--", "env", "-i", *environment, *command],
                            stdout=output, stderr=subprocess.STDOUT)


def job_pid(parent: int) -> int:
    """The pid of the job's Python under `parent` (runuser): what systemd signals on stop."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path("/proc/%s/stat" % entry).read_text()
                cmdline = Path("/proc/%s/cmdline" % entry).read_bytes()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == parent and b"/bin/pgcloud-backup.py\x00" in cmdline:
                return int(entry)
    raise AssertionError("no job process under pid %d" % parent)


def backup_started(moto: MotoServer, storage: StorageTarget) -> bool:
    """A backup.info STARTED in the store and a multipart upload open: mid-backup."""
    if not moto.multipart_uploads(storage.bucket):
        return False
    infos = [key for key in moto.list_keys(storage.bucket, storage.server_prefix + "base/")
             if key.endswith("/backup.info")]
    return bool(infos) and b"status=STARTED" in moto.get_object(storage.bucket, infos[0])


def assert_failed_cleanly(moto: MotoServer, storage: StorageTarget, cluster: PostgresCluster,
                          status_file: Path, words: str) -> None:
    """FAILED in the store and in status.json, no upload open, the server's backup session gone."""
    listed = backup_list(storage)
    assert [backup["status"] for backup in listed] == ["FAILED"], listed
    assert moto.multipart_uploads(storage.bucket) == []
    # A non-exclusive backup lives as long as its session: no session, no backup mode.
    assert cluster.sessions_left() == []
    info = moto.get_object(storage.bucket, storage.backup_prefix(listed[0]["backup_id"]) + "backup.info").decode()
    assert "status=FAILED" in info and words in info, info
    status = json.loads(status_file.read_text())
    assert status["result"] == "failure" and words in status["error"], status
    assert status["backup_id"] == listed[0]["backup_id"]
    assert SECRET not in info + status_file.read_text()


SLOW_BACKUP = {"pgcloud_backup_max_bandwidth": "2MB", "pgcloud_backup_jobs": 1,
               "pgcloud_backup_min_chunk_size": "5MB", "pgcloud_backup_max_archive_size": "40MB"}


def slow_backup_vars(root: Path, storage: StorageTarget, cluster: PostgresCluster, **extra: Any) -> Dict[str, Any]:
    """Uncompressed, throttled, in parts: a backup that lasts, with an upload open."""
    variables = role_vars(root, storage, cluster, **dict(SLOW_BACKUP, **extra))
    del variables["pgcloud_backup_compression"]
    return variables


def test_sigterm_mid_backup_fails_it_cleanly(host_root: Path, storage: StorageTarget, moto: MotoServer,
                                             source_cluster: PostgresCluster) -> None:
    """systemctl stop or a shutdown during a backup: the job stops it as any failure."""
    variables = slow_backup_vars(host_root, storage, source_cluster)
    apply(variables)
    service = host_root / "etc/systemd/system" / ("%s.service" % JOB)
    status_file = host_root / "var/lib/pgcloud-backup" / JOB / "status.json"
    textfile = host_root / "var/lib/prometheus/node-exporter" / ("%s.prom" % JOB)
    log = host_root / "job.log"
    with open(log, "w") as output:
        runner = start_service(service, output)
        try:
            wait_for(lambda: backup_started(moto, storage) or runner.poll() is not None, timeout=120, interval=0.05,
                     what="an upload open")
            assert runner.poll() is None, log.read_text()
            os.kill(job_pid(runner.pid), signal.SIGTERM)
            runner.wait(timeout=120)
        finally:
            if runner.poll() is None:
                runner.kill()
    assert runner.returncode == 128 + signal.SIGTERM, log.read_text()
    assert_failed_cleanly(moto, storage, source_cluster, status_file, "stopped by SIGTERM")
    assert metrics(textfile)["pgcloud_backup_last_status"] == 0
    assert "aborted the incomplete upload" in log.read_text()


def test_cron_run_stopped_at_max_runtime(host_root: Path, storage: StorageTarget, moto: MotoServer,
                                         source_cluster: PostgresCluster) -> None:
    """The cron entry's timeout: SIGTERM at pgcloud_backup_max_runtime, recorded as a failure."""
    variables = slow_backup_vars(host_root, storage, source_cluster, pgcloud_backup_scheduler="cron",
                                 pgcloud_backup_max_runtime=6)
    apply(variables)
    entry = [line for line in (host_root / "etc/cron.d" / JOB).read_text().splitlines() if line and line[0].isdigit()]
    command = entry[0].split(None, 6)[6]
    assert command.startswith("timeout --kill-after=90 6 ")
    ran = subprocess.run(["runuser", "-u", POSTGRES_USER, "--", "env", "-i", "PATH=/usr/bin:/bin", "sh", "-c",
                          command.replace("| logger -t %s" % JOB, "")], capture_output=True, text=True,
                         timeout=300, check=False)
    assert ran.returncode == 124, ran.stdout + ran.stderr  # timeout's own status after it stopped the job
    status_file = host_root / "var/lib/pgcloud-backup" / JOB / "status.json"
    assert_failed_cleanly(moto, storage, source_cluster, status_file, "stopped by SIGTERM")
    assert "at the job's max_runtime (6 s)" in json.loads(status_file.read_text())["error"]


def test_urls_with_a_password_are_refused(host_root: Path, storage: StorageTarget,
                                          source_cluster: PostgresCluster) -> None:
    for name, url in (("pgcloud_backup_endpoint_url", storage.endpoint_url.replace("//", "//testing:%s@" % SECRET)),
                      ("pgcloud_backup_destination_url", "s3://testing:%s@%s/pg" % (SECRET, storage.bucket))):
        result = run_playbook(PLAYBOOK, role_vars(host_root, storage, source_cluster, **{name: url}))
        assert result.rc != 0
        assert "USER:PASSWORD@HOST" in result.stdout, result.output
        assert SECRET not in result.stdout + result.stderr
        assert job_files(host_root) == []


def metrics(path: Path) -> Dict[str, float]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values


def owner(path: Path) -> str:
    return pwd.getpwuid(path.stat().st_uid).pw_name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def job_files(root: Path) -> List[str]:
    """Everything under the scratch root but the folders the host had before."""
    kept = {"etc", "etc/systemd", "etc/systemd/system", "etc/cron.d", "var", "var/lib", "var/lib/prometheus",
            "var/lib/prometheus/node-exporter", "opt"}
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if str(path.relative_to(root)) not in kept)


def test_systemd_schedule_runs_backups_and_is_removed(host_root: Path, storage: StorageTarget,
                                                      source_cluster: PostgresCluster, ping: PingServer) -> None:
    variables = role_vars(host_root, storage, source_cluster, pgcloud_backup_ping_url=ping.url)
    units = host_root / "etc/systemd/system"
    service, timer = units / ("%s.service" % JOB), units / ("%s.timer" % JOB)
    config_dir = host_root / "etc/pgcloud-backup" / JOB
    status_file = host_root / "var/lib/pgcloud-backup" / JOB / "status.json"
    textfile = host_root / "var/lib/prometheus/node-exporter" / ("%s.prom" % JOB)

    # Check mode on a bare host: it runs, reports changes and writes nothing.
    assert changed(apply(variables, check=True)) > 0
    assert job_files(host_root) == []

    first = apply(variables)
    assert changed(first) > 0

    # The units: a oneshot service as postgres under flock, logging to the journal, and a
    # spread, persistent timer.
    service_settings, timer_settings = unit_settings(service), unit_settings(timer)
    assert service_settings["Type"] == ["oneshot"]
    assert service_settings["User"] == [POSTGRES_USER]
    assert service_settings["StandardError"] == ["journal"]
    exec_start = shlex.split(service_settings["ExecStart"][0])
    # The job takes its lock itself (flock(1) would skip a stuck run silently).
    assert exec_start[:2] == [str(VENV_PYTHON), str(host_root / "opt/pgcloud-backup-job/bin/pgcloud-backup.py")]
    assert exec_start[exec_start.index("--config") + 1] == str(config_dir / "config.json")
    assert exec_start[-1] == "backup"
    assert service_settings["TimeoutStartSec"] == ["86400"]
    assert timer_settings["OnCalendar"] == ["*-*-* 02:00:00"]
    assert timer_settings["RandomizedDelaySec"] == ["3600"]
    assert timer_settings["FixedRandomDelay"] == ["true"]  # systemd 252 on the test machine
    assert timer_settings["Persistent"] == ["true"]
    assert timer_settings["Unit"] == [service.name]
    verify = shutil.which("systemd-analyze")
    if verify:
        checked = subprocess.run([verify, "verify", str(service), str(timer)], capture_output=True, text=True,
                                 cwd=units, check=False)
        assert checked.returncode == 0, checked.stderr

    # Secrets: in the credentials file only, which only postgres reads.
    credentials = config_dir / "credentials.env"
    assert owner(credentials) == POSTGRES_USER and mode(credentials) == 0o600
    assert SECRET in credentials.read_text()
    for path in (service, timer, config_dir / "config.json"):
        assert SECRET not in path.read_text(), path
    assert SECRET not in first.stdout + first.stderr
    assert mode(config_dir) == 0o750 and mode(config_dir / "config.json") == 0o640

    # The textfile folder existed: its owner and mode are left alone; the job's own file is made.
    assert owner(textfile.parent) == "root" and mode(textfile.parent) == 0o755
    assert owner(textfile) == POSTGRES_USER and mode(textfile) == 0o644

    # Idempotent, in check mode too.
    assert changed(apply(variables)) == 0
    assert changed(apply(variables, check=True)) == 0

    # The timer fires: a backup that the reference tools list as DONE, and its outcome recorded.
    ran = run_service(service)
    assert ran.returncode == 0, ran.stderr
    assert SECRET not in ran.stdout + ran.stderr
    assert "DONE" in ran.stderr
    listed = backup_list(storage)
    assert [backup["status"] for backup in listed] == ["DONE"]
    status = json.loads(status_file.read_text())
    assert status["result"] == "success" and status["error"] is None
    assert status["backup_id"] == listed[0]["backup_id"]
    assert BACKUP_ID_PATTERN.match(status["backup_id"])
    assert status["size_bytes"] > 0 and status["duration_seconds"] > 0
    assert owner(status_file) == POSTGRES_USER
    success = metrics(textfile)
    assert success["pgcloud_backup_last_status"] == 1
    assert success["pgcloud_backup_last_size_bytes"] == status["size_bytes"]
    assert success["pgcloud_backup_last_success_timestamp_seconds"] > 0
    assert ping.paths == ["/ping/%s" % JOB]
    # WAL archiving health, read from the server at the end of the run: the backup's last WAL
    # file is archived (the backup waited for it), nothing is failing.
    wal = status["wal_archiving"]
    assert wal["archive_mode"] == "on" and wal["failing"] is False and wal["ready_count"] is not None, wal
    assert wal["last_archived_wal"] and wal["archived_count"] > 0, wal
    assert success["pgcloud_backup_wal_status_read"] == 1
    assert success["pgcloud_backup_wal_last_archived_timestamp_seconds"] > 0
    assert success["pgcloud_backup_wal_oldest_ready_age_seconds"] >= 0
    # The job writes by rename: no temporary file is left behind.
    assert sorted(path.name for path in textfile.parent.iterdir()) == [textfile.name]

    # A run that fails (the bucket is gone) is recorded as such; the last success is kept.
    missing = dict(variables, pgcloud_backup_destination_url="s3://pgcloud-missing-%s/pg" % uuid.uuid4().hex[:8])
    assert changed(apply(missing)) > 0
    failed = run_service(service)
    assert failed.returncode == 1, failed.stderr
    status = json.loads(status_file.read_text())
    assert status["result"] == "failure"
    assert "pgcloud-missing-" in status["error"]
    assert status["last_success"]["backup_id"] == listed[0]["backup_id"]
    failure = metrics(textfile)
    assert failure["pgcloud_backup_last_status"] == 0
    assert failure["pgcloud_backup_last_success_timestamp_seconds"] == success[
        "pgcloud_backup_last_success_timestamp_seconds"]
    assert ping.paths[-1] == "/ping/%s/fail" % JOB
    assert SECRET not in status_file.read_text() + failed.stderr

    # A run while another holds the lock is skipped, with the unit's success status 75.
    lock = host_root / "var/lib/pgcloud-backup" / JOB / "job.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what flock(1) takes
        skipped = run_service(service)
    assert skipped.returncode == 75
    assert service_settings["SuccessExitStatus"] == ["75"]
    assert json.loads(status_file.read_text()) == status

    # Held for longer than max_runtime: a stuck run, recorded as a failure, not skipped.
    lock.write_text(json.dumps({"pid": 4242, "started": time.time() - 90000}))
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        stuck = run_service(service)
    assert stuck.returncode == 1, stuck.stderr
    status = json.loads(status_file.read_text())
    assert status["result"] == "failure" and status["error"].startswith("previous run stuck since"), status
    assert "pid 4242" in status["error"]
    assert metrics(textfile)["pgcloud_backup_last_status"] == 0
    assert ping.paths[-1] == "/ping/%s/fail" % JOB
    assert "/ping/" not in stuck.stderr  # the ping URL is a token: its host only is logged

    # Removed: the schedule and every file of the job; then nothing left to change.
    absent = dict(variables, pgcloud_backup_state="absent")
    assert changed(apply(absent, check=True)) > 0
    assert service.exists()
    assert changed(apply(absent)) > 0
    assert job_files(host_root) == []
    assert changed(apply(absent)) == 0


def test_cron_schedule_where_systemd_is_absent(host_root: Path, storage: StorageTarget,
                                               source_cluster: PostgresCluster) -> None:
    # A textfile folder that does not exist yet: created group-writable and sticky.
    textfile_dir = host_root / "var/lib/node-exporter-new"
    variables = role_vars(host_root, storage, source_cluster, pgcloud_backup_scheduler="cron",
                          pgcloud_backup_cron_hour="3", pgcloud_backup_textfile_dir=str(textfile_dir))
    apply(variables)
    assert mode(textfile_dir) == 0o1775 and textfile_dir.group() == POSTGRES_USER and owner(textfile_dir) == "root"
    cron_file = host_root / "etc/cron.d" / JOB
    assert not (host_root / "etc/systemd/system" / ("%s.service" % JOB)).exists()
    entry = [line for line in cron_file.read_text().splitlines() if line and line[0].isdigit()]
    assert len(entry) == 1
    minute, hour, day, month, weekday, user, command = entry[0].split(None, 6)
    # The minute is the host name's: stable from run to run, spread across a fleet.
    assert 0 <= int(minute) <= 59 and (hour, day, month, weekday, user) == ("3", "*", "*", "*", POSTGRES_USER)
    assert command.startswith("timeout --kill-after=90 86400 env ")
    assert command.endswith("| logger -t %s" % JOB)
    assert SECRET not in cron_file.read_text()
    assert mode(cron_file) == 0o644
    assert changed(apply(variables)) == 0

    # cron runs the command with /bin/sh as the user: the job backs up (its log to syslog).
    ran = subprocess.run(["runuser", "-u", POSTGRES_USER, "--", "env", "-i", "PATH=/usr/bin:/bin", "sh", "-c",
                          command.replace("| logger -t %s" % JOB, "")], capture_output=True, text=True,
                         timeout=600, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert [backup["status"] for backup in backup_list(storage)] == ["DONE"]
    assert metrics(textfile_dir / ("%s.prom" % JOB))["pgcloud_backup_last_status"] == 1

    # Switching to systemd replaces the cron entry.
    apply(dict(variables, pgcloud_backup_scheduler="systemd"))
    assert not cron_file.exists()
    assert (host_root / "etc/systemd/system" / ("%s.timer" % JOB)).exists()

    apply(dict(variables, pgcloud_backup_state="absent"))
    # The folder is node-exporter's too: it stays, empty.
    assert job_files(host_root) == ["var/lib/node-exporter-new"]
    assert list(textfile_dir.iterdir()) == []


def test_invalid_variables_are_refused(host_root: Path) -> None:
    result = run_playbook(PLAYBOOK, {"pgcloud_backup_destination_url": "s3://bucket/pg",
                                     "pgcloud_backup_server_name": "db1", "pgcloud_backup_compression": "rar",
                                     "pgcloud_backup_unit_dir": str(host_root / "etc/systemd/system")})
    assert result.rc != 0
    assert "pgcloud_backup_compression" in result.stdout + result.stderr
    assert job_files(host_root) == []


def test_fleet_playbooks_check_and_back_up(storage: StorageTarget, source_cluster: PostgresCluster) -> None:
    """playbooks/check.yml and backup.yml, with the role's variables, on a fleet of one (localhost).

    ansible_become=false: the test runs as root, which reads PGDATA, and has no sudo.
    """
    params = source_cluster.connection_params
    variables = {
        "pgcloud_hosts": "localhost",
        "ansible_become": False,
        "pgcloud_throttle": 1,
        "pgcloud_backup_destination_url": storage.url,
        "pgcloud_backup_server_name": storage.server_name,
        "pgcloud_backup_endpoint_url": storage.endpoint_url,
        "pgcloud_backup_host": params["host"],
        "pgcloud_backup_port": params["port"],
        "pgcloud_backup_user": params["user"],
        "pgcloud_backup_compression": "gzip",
        "pgcloud_backup_immediate_checkpoint": True,
    }
    playbooks = COLLECTION_ROOT / "playbooks"
    checked = run_playbook(playbooks / "check.yml", variables)
    assert checked.rc == 0, checked.output
    assert checked.task("Check the destination and the server")["ok"] is True

    backed_up = run_playbook(playbooks / "backup.yml", variables)
    assert backed_up.rc == 0, backed_up.output
    backup_id = backed_up.task("Take a base backup")["backup_id"]
    assert [(backup["backup_id"], backup["status"]) for backup in backup_list(storage)] == [(backup_id, "DONE")]

    unreachable = run_playbook(playbooks / "check.yml",
                               dict(variables, pgcloud_backup_destination_url="s3://pgcloud-missing-bucket/pg"))
    assert unreachable.rc != 0
    assert "localhost cannot back up" in unreachable.stdout


def test_virtualenv_install(host_root: Path, storage: StorageTarget, source_cluster: PostgresCluster) -> None:
    """The default path: a virtual environment owned by root, with the SDK, psycopg2 and zstandard.

    pip installs them from the package index (about a minute; scripts/setup.sh has put the
    same packages in pip's cache).
    """
    variables = role_vars(host_root, storage, source_cluster, pgcloud_backup_venv_create=True,
                          pgcloud_backup_venv_python=str(VENV_BIN / "python"), pgcloud_backup_system_packages=[])
    del variables["pgcloud_backup_python"]
    apply(variables)
    venv_python = host_root / "opt/pgcloud-backup-job/venv/bin/python"
    assert owner(venv_python.parent.parent) == "root"
    service = host_root / "etc/systemd/system" / ("%s.service" % JOB)
    assert str(venv_python) in unit_settings(service)["ExecStart"][0]
    assert changed(apply(variables)) == 0
    ran = run_service(service)
    assert ran.returncode == 0, ran.stderr
    assert [backup["status"] for backup in backup_list(storage)] == ["DONE"]
    apply(dict(variables, pgcloud_backup_state="absent"))
    assert job_files(host_root) == []


def test_booleans_given_as_strings_on_the_command_line(host_root: Path, storage: StorageTarget,
                                                       source_cluster: PostgresCluster) -> None:
    """`-e pgcloud_backup_venv_create=false` gives the text "false": every boolean goes through `| bool`
    (ansible-core 2.19+ refuses a conditional that is not a boolean)."""
    variables = role_vars(host_root, storage, source_cluster, pgcloud_backup_venv_create="false",
                          pgcloud_backup_systemd_activate="false", pgcloud_backup_fixed_random_delay="true",
                          pgcloud_backup_persistent="no", pgcloud_backup_immediate_checkpoint="true",
                          pgcloud_backup_aws_irsa="false")
    apply(variables)
    config = json.loads((host_root / "etc/pgcloud-backup" / JOB / "config.json").read_text())
    assert config["storage"]["aws_irsa"] is False and config["postgres"]["immediate_checkpoint"] is True
    timer = unit_settings(host_root / "etc/systemd/system" / ("%s.timer" % JOB))
    assert (timer["FixedRandomDelay"], timer["Persistent"]) == (["true"], ["false"])
    assert not (host_root / "opt/pgcloud-backup-job/venv").exists()
    assert changed(apply(variables)) == 0

    apply(dict(variables, pgcloud_backup_scheduler="cron"))
    assert (host_root / "etc/cron.d" / JOB).exists()
    apply(dict(variables, pgcloud_backup_state="absent"))
    assert job_files(host_root) == []


SAS_SIGNATURE = "pgcloudRoleSasSignature42"


@pytest.mark.parametrize("extra, words", [
    ({"pgcloud_backup_server_name": "db1\nExecStartPre=id"}, ("pgcloud_backup_server_name", "U+000A")),
    ({"pgcloud_backup_server_name": ".."}, ("pgcloud_backup_server_name", "'..'")),
    ({"pgcloud_backup_destination_url": "s3://bucket/pg\n* * * * * root id"},
     ("pgcloud_backup_destination_url", "U+000A")),
    ({"pgcloud_backup_destination_url": "s3://bucket/a/../b"}, ("pgcloud_backup_destination_url", "'..'")),
    ({"pgcloud_backup_destination_url": "https://acct.blob.core.windows.net/c/pg?sv=2024&sig=" + SAS_SIGNATURE,
      "pgcloud_backup_cloud_provider": "azure-blob-storage"}, ("pgcloud_backup_destination_url", "query")),
    ({"pgcloud_backup_endpoint_url": "http://minio_1:9000"}, ("pgcloud_backup_endpoint_url", "minio_1")),
    ({"pgcloud_backup_destination_url": "https://acct.blob.core.windows.net/c/pg",
      "pgcloud_backup_cloud_provider": "azure-blob-storage", "pgcloud_backup_tags": {"owner": "dba@example.com"}},
     ("pgcloud_backup_tags", "owner")),
    ({"pgcloud_backup_jobs": 10000}, ("pgcloud_backup_jobs", "64")),
    ({"pgcloud_backup_ping_url": "http://ping_host/check\n"}, ("pgcloud_backup_ping_url",)),
    # What the units and the cron entry hold as written: a line break starts a line of its own
    # (the other cases of check_job_config.py are in tests/unit/roles/test_check_job_config.py).
    ({"pgcloud_backup_cron_hour": "2\n* * * * * root id"}, ("pgcloud_backup_cron_hour", "U+000A")),
    ({"pgcloud_backup_schedule": "every tuesday-ish", "pgcloud_backup_scheduler": "systemd"},
     ("pgcloud_backup_schedule", "Failed to parse", "OnCalendar")),
    ({"pgcloud_backup_job_environment": {"HTTPS_PROXY": "http://proxy:3128\n* * * * * root id"}},
     ("pgcloud_backup_job_environment", "HTTPS_PROXY", "U+000A")),
], ids=["server-name-newline", "server-name-dot-dot", "url-newline", "url-dot-segments", "url-sas-query",
        "endpoint-underscore", "azure-tag-at", "jobs-too-many", "ping-url-newline", "cron-hour-newline",
        "schedule-unparsable", "environment-value-newline"])
def test_variables_the_engine_refuses_stop_the_role_before_any_write(host_root: Path, extra: Dict[str, Any],
                                                                     words: List[str]) -> None:
    variables = {"pgcloud_backup_destination_url": "s3://bucket/pg", "pgcloud_backup_server_name": "db1",
                 "pgcloud_backup_venv_create": False, "pgcloud_backup_systemd_activate": False,
                 "pgcloud_backup_install_dir": str(host_root / "opt/pgcloud-backup-job"),
                 "pgcloud_backup_config_root": str(host_root / "etc/pgcloud-backup"),
                 "pgcloud_backup_status_root": str(host_root / "var/lib/pgcloud-backup"),
                 "pgcloud_backup_unit_dir": str(host_root / "etc/systemd/system"),
                 "pgcloud_backup_cron_dir": str(host_root / "etc/cron.d"), **extra}
    result = run_playbook(PLAYBOOK, variables)
    output = result.stdout + result.stderr
    assert result.rc != 0, output
    assert all(word in output for word in words), output
    assert any(task in output for task in ("Check the job's variables", "Stop on a variable", "Stop on a schedule"))
    assert SAS_SIGNATURE not in output.replace(json.dumps(variables), "")
    assert job_files(host_root) == []
