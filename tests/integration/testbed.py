# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real parts for the integration tests: a PostgreSQL 15 cluster, moto's S3 on loopback,
the real barman-cloud tools as the judge, and ansible-playbook to run the modules.

Plain Python without pytest, so that scripts can use it too. Needs what scripts/setup.sh
installs under /opt/pgcloud-backup; runs as root and starts clusters as the postgres user.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

PREFIX = os.environ.get("PGCLOUD_PREFIX", "/opt/pgcloud-backup")
VENV_BIN = os.path.join(PREFIX, "venv", "bin")
PG_BIN = "/usr/lib/postgresql/15/bin"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tool_environment() -> Dict[str, str]:
    """What the venv's tools need: the copied interpreter's libpython and the fake credentials."""
    env = dict(os.environ, **FAKE_CREDENTIALS)
    env["LD_LIBRARY_PATH"] = os.path.join(PREFIX, "python", "lib")
    env["PATH"] = VENV_BIN + ":" + PG_BIN + ":" + env.get("PATH", "")
    return env


def shell_environment_prefix() -> str:
    """The same, as a prefix of a command that PostgreSQL runs (archive and restore commands)."""
    env = dict(FAKE_CREDENTIALS, LD_LIBRARY_PATH=os.path.join(PREFIX, "python", "lib"))
    return " ".join("%s=%s" % item for item in sorted(env.items()))


def run(command: List[str], user: Optional[str] = None, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    if user:
        command = ["runuser", "-u", user, "--"] + command
    environment = kwargs.pop("env", tool_environment())
    result = subprocess.run(command, env=environment, capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s\n%s"
                             % (" ".join(command), result.returncode, result.stdout, result.stderr))
    return result


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class MotoServer:
    """moto's S3 (and EC2) over HTTP on loopback."""

    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.endpoint_url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(workdir, "moto-%d.log" % self.port)
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "MotoServer":
        log = open(self.log_path, "w")
        self.process = subprocess.Popen([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=log, stderr=subprocess.STDOUT, env=tool_environment())
        wait_until(self._answers, 60, "moto on port %d" % self.port)
        return self

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> List[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def open_multipart_uploads(self, bucket: str) -> List[str]:
        return [upload["Key"] for upload in self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", ())]


class PostgresCluster:
    """A PostgreSQL 15 cluster owned by the postgres OS user, on a unix socket in its work dir."""

    def __init__(self, workdir: str, name: str = "source") -> None:
        self.workdir = workdir
        self.pgdata = os.path.join(workdir, name)
        self.port = free_port()
        self.log_path = os.path.join(workdir, name + ".log")

    @property
    def connection(self) -> Dict[str, Any]:
        return {"host": self.workdir, "port": self.port, "user": "postgres"}

    def initdb(self) -> "PostgresCluster":
        run([os.path.join(PG_BIN, "initdb"), "-D", self.pgdata, "-A", "trust", "--data-checksums", "-U", "postgres"],
            user="postgres")
        return self

    def configure(self, **settings: Any) -> None:
        base = {"port": self.port, "listen_addresses": "", "unix_socket_directories": self.workdir,
                "fsync": "off", "full_page_writes": "on", "checkpoint_timeout": "30min"}
        base.update(settings)
        lines = ["%s = '%s'" % (key, str(value).replace("'", "''")) for key, value in base.items()]
        path = os.path.join(self.pgdata, "postgresql.auto.conf")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        shutil.chown(path, "postgres", "postgres")

    def archive_to(self, moto: MotoServer, url: str, server_name: str) -> None:
        command = "%s %s/barman-cloud-wal-archive --endpoint-url %s %s %s %%p" % (
            shell_environment_prefix(), VENV_BIN, moto.endpoint_url, url, server_name)
        self.configure(archive_mode="on", archive_timeout="0", archive_command=command)

    def start(self) -> None:
        run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.pgdata, "-l", self.log_path, "-w", "-t", "120", "start"],
            user="postgres")

    def stop(self, mode: str = "fast") -> None:
        if os.path.exists(os.path.join(self.pgdata, "postmaster.pid")):
            run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.pgdata, "-m", mode, "-w", "stop"], user="postgres",
                check=False)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        result = run([os.path.join(PG_BIN, "psql"), "-h", self.workdir, "-p", str(self.port), "-U", "postgres",
                      "-d", dbname, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
        return result.stdout.strip()

    def create_tablespace(self, name: str) -> str:
        location = os.path.join(self.workdir, "tablespace-" + name)
        os.makedirs(location, exist_ok=True)
        shutil.chown(location, "postgres", "postgres")
        self.psql("CREATE TABLESPACE %s LOCATION '%s'" % (name, location))
        return location

    def load_data(self, scale: int, tablespace: str) -> None:
        """pgbench tables (accounts in the tablespace) and a table of text in the tablespace."""
        run([os.path.join(PG_BIN, "pgbench"), "-h", self.workdir, "-p", str(self.port), "-U", "postgres", "-i", "-q",
             "-s", str(scale), "postgres"])
        self.psql("ALTER TABLE pgbench_accounts SET TABLESPACE %s" % tablespace)
        self.psql("CREATE TABLE notes TABLESPACE %s AS SELECT g AS id, md5(g::text) || repeat('x', g %% 100) AS note "
                  "FROM generate_series(1, 100000) g" % tablespace)
        self.psql("CREATE INDEX notes_note ON notes (note)")

    @contextlib.contextmanager
    def pgbench_running(self, clients: int = 2) -> Iterator[subprocess.Popen]:
        """pgbench writing until the block ends."""
        process = subprocess.Popen(
            [os.path.join(PG_BIN, "pgbench"), "-h", self.workdir, "-p", str(self.port), "-U", "postgres",
             "-c", str(clients), "-T", "600", "postgres"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=tool_environment())
        try:
            time.sleep(1)
            assert process.poll() is None, "pgbench stopped early: %s" % process.stderr.read()
            yield process
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    def fingerprint(self) -> Dict[str, str]:
        """Counts and checksums a restore must reproduce exactly."""
        queries = {
            "accounts": "SELECT count(*) || ':' || sum(abalance) FROM pgbench_accounts",
            "branches": "SELECT md5(string_agg(bid || ':' || bbalance, ',' ORDER BY bid)) FROM pgbench_branches",
            "tellers": "SELECT md5(string_agg(tid || ':' || tbalance, ',' ORDER BY tid)) FROM pgbench_tellers",
            "history": "SELECT count(*) || ':' || coalesce(sum(delta), 0) FROM pgbench_history",
            "notes": "SELECT md5(string_agg(note, ',' ORDER BY id)) FROM notes",
        }
        return {name: self.psql(sql) for name, sql in queries.items()}

    def switch_wal_and_wait_archived(self, timeout: float = 60) -> None:
        """Close the current WAL segment and wait until archive_command has shipped it."""
        self.psql("CHECKPOINT")
        segment = self.psql("SELECT pg_walfile_name(pg_switch_wal())")
        wait_until(lambda: self.psql("SELECT coalesce(last_archived_wal >= '%s', false) FROM pg_stat_archiver"
                                     % segment) == "t", timeout, "WAL segment %s to be archived" % segment)

    def backup_sessions(self) -> int:
        """Sessions of the backup engine still connected."""
        return int(self.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgcloud_backup'"))


def barman(tool: str, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([os.path.join(VENV_BIN, tool)] + list(arguments), check=check)


def barman_json(tool: str, moto: MotoServer, url: str, server: str, *extra: str) -> Any:
    result = barman(tool, "--endpoint-url", moto.endpoint_url, "--format", "json", url, server, *extra)
    return json.loads(result.stdout)


def restore_and_fingerprint(moto: MotoServer, url: str, server: str, backup: str, workdir: str,
                            tablespaces: Dict[str, str]) -> Dict[str, Any]:
    """Restore with the real barman-cloud-restore, replay the archived WAL, start, check and fingerprint."""
    scratch = tempfile.mkdtemp(prefix="restore-", dir=workdir)
    shutil.chown(scratch, "postgres", "postgres")
    target = PostgresCluster(scratch, "pgdata")
    relocations = []
    for name in tablespaces:
        location = os.path.join(scratch, "tablespace-" + name)
        relocations += ["--tablespace", "%s:%s" % (name, location)]
    barman("barman-cloud-restore", "--endpoint-url", moto.endpoint_url, *relocations, url, server, backup,
           target.pgdata)
    run(["chown", "-R", "postgres:postgres", scratch])
    os.chmod(target.pgdata, 0o700)
    restore_command = "%s %s/barman-cloud-wal-restore --endpoint-url %s %s %s %%f %%p" % (
        shell_environment_prefix(), VENV_BIN, moto.endpoint_url, url, server)
    target.configure(archive_mode="off", restore_command=restore_command)
    open(os.path.join(target.pgdata, "recovery.signal"), "w").close()
    try:
        target.start()
        wait_until(lambda: target.psql("SELECT pg_is_in_recovery()") == "f", 180, "the restored server to promote")
        amcheck = run([os.path.join(PG_BIN, "pg_amcheck"), "-h", scratch, "-p", str(target.port), "-U", "postgres",
                       "--all", "--heapallindexed", "--install-missing"], check=False)
        links = {name: os.readlink(os.path.join(target.pgdata, "pg_tblspc", oid))
                 for name, oid in (line.split("|") for line in target.psql(
                     "SELECT spcname, oid FROM pg_tablespace WHERE pg_tablespace_location(oid) <> ''").splitlines())}
        return {"fingerprint": target.fingerprint(), "amcheck_rc": amcheck.returncode,
                "amcheck_output": amcheck.stdout + amcheck.stderr, "tablespace_links": links,
                "relocated": {name: os.path.join(scratch, "tablespace-" + name) for name in tablespaces}}
    finally:
        target.stop("immediate")
        shutil.rmtree(scratch, ignore_errors=True)


def run_playbook(playbook: str, extravars: Dict[str, Any], check_mode: bool = False) -> Dict[str, Any]:
    """Run one of tests/integration/playbooks; it writes the registered module result to a file."""
    with tempfile.TemporaryDirectory() as scratch:
        result_path = os.path.join(scratch, "result.json")
        variables = dict(extravars, result_file=result_path)
        command = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                   os.path.join(REPO, "tests", "integration", "playbooks", playbook),
                   "-e", json.dumps(variables), "-e", "ansible_python_interpreter=%s/python" % VENV_BIN]
        if check_mode:
            command.append("--check")
        env = tool_environment()
        env["ANSIBLE_COLLECTIONS_PATH"] = os.path.join(PREFIX, "collections")
        env["ANSIBLE_NOCOLOR"] = "1"
        completed = run(command, env=env, check=False)
        text = open(result_path).read() if os.path.exists(result_path) else ""
        if not text:
            raise AssertionError("ansible-playbook wrote no result (%d):\n%s\n%s"
                                 % (completed.returncode, completed.stdout, completed.stderr))
        result = json.loads(text)
        result["_playbook_output"] = completed.stdout
        return result
