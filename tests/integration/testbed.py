# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The integration test bed: a local S3 store, PostgreSQL 15 clusters and the reference tools.

Plain Python (no pytest), shared by the integration tests, the demo helper and the
benchmarks. Everything runs on loopback and in scratch folders under /tmp, and cleans up
after itself (servers stopped, folders removed), on failure too.

* `MotoServer`: `moto_server` on a free loopback port; buckets, keys, multipart uploads.
* `PostgresCluster`: a PostgreSQL cluster (15, or another major: `pg_bin_of`) run by the
  `postgres` OS user, with a tablespace,
  pgbench data, and WAL archived by `barman-cloud-wal-archive` to a destination that can be
  switched at any time (`archive_to`), so that WAL lands where the backup under test lands.
* `restore_and_verify`: the real `barman-cloud-restore`, WAL replayed by
  `barman-cloud-wal-restore`, PostgreSQL started on the copy, `pg_amcheck`, a data fingerprint.
* `reference_backup`, `backup_list`, `backup_show`: the barman-cloud tools themselves.
* `run_playbook`: `ansible-playbook` with the collection of this checkout, every task's
  result parsed from JSON.

Expects the machine prepared by scripts/setup.sh (the venv with barman and moto in
/opt/pgcloud-backup, PostgreSQL 15 in /usr/lib/postgresql/15/bin), and runs as root
(clusters are created and run by the `postgres` OS user) or as `postgres` itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import boto3
import botocore.config
import psycopg2

PREFIX = Path(os.environ.get("PGCLOUD_PREFIX", "/opt/pgcloud-backup"))
VENV_BIN = PREFIX / "venv" / "bin"
VENV_PYTHON = VENV_BIN / "python"
# The copied interpreter looks for libpython3.12.so at its original place (under /root, which
# the postgres user cannot read): every venv tool gets the copy's lib/ in LD_LIBRARY_PATH.
PYTHON_LIB = PREFIX / "python" / "lib"
PG_BIN = Path(os.environ.get("PGCLOUD_PG_BIN", "/usr/lib/postgresql/15/bin"))
# The longest one archive_command call of a test cluster may take (see PostgresCluster.archive_to).
ARCHIVE_CALL_SECONDS = 60
POSTGRES_USER = "postgres"
INTEGRATION_DIR = Path(__file__).resolve().parent
# The collection under test: this checkout (tests/integration/testbed.py -> ../..).
COLLECTION_ROOT = Path(os.environ.get("PGCLOUD_COLLECTION_ROOT", INTEGRATION_DIR.parents[1]))
CALLBACK_DIR = INTEGRATION_DIR / "callback_plugins"
# Sessions of the test bed itself carry this name, so that they are told apart from the
# sessions of the code under test (see PostgresCluster.client_sessions).
TESTBED_APPLICATION = "pgcloud-testbed"

# moto accepts any credentials; fixed fake ones keep the runner's real ones out of the tests.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
# Extra tables of the fingerprint: one in the default tablespace with TOASTed values, one in
# the test tablespace; and a database whose default tablespace is the test tablespace.
NOTES_TABLE = "testbed_notes"
TABLESPACE_NOTES_TABLE = "testbed_ts_notes"
TABLESPACE_DB = "testbed_tsdb"
TABLESPACE_DB_TABLE = "testbed_items"


class TestBedError(RuntimeError):
    """A step of the test bed failed; the message carries the command's output or the log."""

    __test__ = False  # not a pytest test class, despite its name


# ---------------------------------------------------------------------------------------------
# Processes, users, folders


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_postgres(command: Sequence[str]) -> List[str]:
    """Prefix a command so that it runs as the postgres OS user (initdb refuses root).

    setpriv changes user and executes the command in the same process, where runuser stays
    as its parent: the benchmark measures the process tree of each tool, without a wrapper.
    """
    if os.geteuid() == 0:
        return ["setpriv", "--reuid", POSTGRES_USER, "--regid", POSTGRES_USER, "--init-groups", "--", *command]
    if pwd.getpwuid(os.geteuid()).pw_name == POSTGRES_USER:
        return list(command)
    raise TestBedError("the test bed must run as root or as the postgres user")


def tool_env() -> Dict[str, str]:
    """The whole environment of a venv tool (barman-cloud-*, moto_server).

    Built from scratch rather than inherited, so that the runner's AWS profile or PG*
    variables never leak into a test, and so that the same env works for root and postgres.
    """
    return {
        "PATH": "%s:%s:/usr/sbin:/usr/bin:/sbin:/bin" % (VENV_BIN, PG_BIN),
        "LD_LIBRARY_PATH": str(PYTHON_LIB),
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        **FAKE_AWS_ENV,
    }


def env_command(env: Mapping[str, str], command: Sequence[str]) -> List[str]:
    """`env -i K=V ... command`: the environment survives runuser and shell quoting alike."""
    return ["env", "-i", *("%s=%s" % item for item in sorted(env.items())), *command]


def run(command: Sequence[str], *, env: Optional[Mapping[str, str]] = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command to completion, capturing its output; on failure raise with that output."""
    try:
        result = subprocess.run(list(command), env=dict(env) if env is not None else None, capture_output=True,
                                text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise TestBedError("timed out after %ss: %s\n%s\n%s" % (
            timeout, shlex.join(command), error.stdout or "", error.stderr or "")) from error
    if check and result.returncode != 0:
        raise TestBedError("exit %d: %s\n--- stdout\n%s\n--- stderr\n%s" % (
            result.returncode, shlex.join(command), result.stdout, result.stderr))
    return result


def scratch_dir(prefix: str) -> Path:
    """A new folder under /tmp owned by postgres (it writes clusters and sockets there).

    /tmp rather than a pytest tmp_path: on this machine those live under /root (mode 700),
    which the postgres user cannot reach.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    chown_postgres(path)
    path.chmod(0o755)  # root and postgres both walk in; PGDATA has its own 0700
    return path


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(POSTGRES_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def postgres_dir(path: Path, mode: int = 0o700) -> Path:
    """Create a new folder owned by postgres (a tablespace location, a restore target)."""
    path.mkdir(parents=True)
    chown_postgres(path)
    path.chmod(mode)
    return path


def remove_tree(path: Optional[Path]) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no %s)" % path


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll predicate() until it returns something truthy; raise TestBedError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestBedError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# S3 store


@dataclass(frozen=True)
class StorageTarget:
    """Where a backup (and the WAL archived with it) goes: a bucket, a prefix, a server name.

    `endpoint_url` is the store's: moto's S3 endpoint, Azurite's account URL
    (http://127.0.0.1:PORT/devstoreaccount1) or the GCS emulator's. `tool_env` holds what the
    reference tools need to find and authenticate to it (they take no option for that).
    """

    endpoint_url: str
    bucket: str
    prefix: str
    server_name: str
    cloud_provider: str = "aws-s3"
    tool_env: Tuple[Tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        path = "/".join(part for part in (self.bucket, self.prefix) if part)
        if self.cloud_provider == "azure-blob-storage":
            return "%s/%s" % (self.endpoint_url.rstrip("/"), path)
        return ("gs://" if self.cloud_provider == "google-cloud-storage" else "s3://") + path

    @property
    def server_prefix(self) -> str:
        """The key prefix of everything of this server: <prefix>/<server>/."""
        return "/".join(part for part in (self.prefix, self.server_name) if part) + "/"

    def backup_prefix(self, backup_id: str) -> str:
        return "%sbase/%s/" % (self.server_prefix, backup_id)

    def tool_arguments(self) -> List[str]:
        """The options of every barman-cloud tool for this store."""
        arguments = ["--cloud-provider", self.cloud_provider]
        if self.cloud_provider == "aws-s3":
            arguments += ["--endpoint-url", self.endpoint_url]
        return arguments

    def module_params(self) -> Dict[str, str]:
        """The storage parameters of the pgcloud.backup modules for this target."""
        params = {"destination_url": self.url, "server_name": self.server_name, "cloud_provider": self.cloud_provider}
        if self.cloud_provider == "aws-s3":
            params["endpoint_url"] = self.endpoint_url
        if self.cloud_provider == "azure-blob-storage":
            params["azure_storage_connection_string"] = dict(self.tool_env)["AZURE_STORAGE_CONNECTION_STRING"]
        return params

    def module_env(self) -> Dict[str, str]:
        """What the modules need in their environment: only the GCS SDK's emulator address,
        which it takes from there alone."""
        return {name: value for name, value in self.tool_env if name == "STORAGE_EMULATOR_HOST"}

    def with_server(self, server_name: str) -> "StorageTarget":
        return replace(self, server_name=server_name)

    def with_bucket(self, bucket: str) -> "StorageTarget":
        return replace(self, bucket=bucket)


class ChildServer:
    """A local store server on a loopback port, run as a child process of the tests.

    Subclasses give the command and the URL that answers once the server is up; the server
    runs in a process group of its own, so that stop() ends it and anything it started.
    """

    name = "server"

    def __init__(self, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.log_dir = Path(tempfile.mkdtemp(prefix="pgcloud-%s-" % self.name, dir="/tmp"))
        self.log_file = self.log_dir / ("%s.log" % self.name)
        self._process: Optional[subprocess.Popen] = None

    @property
    def endpoint_url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def command(self) -> List[str]:
        raise NotImplementedError

    def health_url(self) -> str:
        return self.endpoint_url + "/"

    def start(self, timeout: float = 60) -> "ChildServer":
        if self._process is not None:
            return self
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(self.command(), env=tool_env(), stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True, cwd=str(self.log_dir))
        try:
            wait_for(self._answers, timeout, what="%s on port %d" % (self.name, self.port))
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise TestBedError("%s exited with %s:\n%s" % (self.name, self._process.returncode, tail(self.log_file)))
        try:
            with urllib.request.urlopen(self.health_url(), timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # an answer, if not a happy one
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)

    def close(self) -> None:
        """Stop the server and remove its log folder."""
        self.stop()
        remove_tree(self.log_dir)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def memory_bytes(self) -> int:
        """Resident memory of the server process, to decide when to restart it."""
        if self._process is not None:
            with contextlib.suppress(OSError):
                for line in Path("/proc/%d/status" % self._process.pid).read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        return 0


class MotoServer(ChildServer):
    """`moto_server` (S3) on a loopback port, as a child process.

    moto keeps everything in memory, and its memory grows with every backup even after a
    reset: `restart()` starts a fresh one on the same port (same endpoint_url) and re-creates
    the buckets created through this object, empty.
    """

    name = "moto"

    def __init__(self, port: Optional[int] = None) -> None:
        super().__init__(port)
        self.buckets: List[str] = []

    def command(self) -> List[str]:
        return [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def restart(self) -> None:
        """A fresh moto (memory released) on the same port, with this object's buckets, empty."""
        self.stop()
        self.start()
        for bucket in self.buckets:
            self.client().create_bucket(Bucket=bucket)

    def client(self) -> Any:
        """A boto3 S3 client for this server, with the fake credentials."""
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=FAKE_AWS_ENV["AWS_DEFAULT_REGION"],
                            aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                            config=botocore.config.Config(retries={"max_attempts": 3}))

    def create_bucket(self, name: Optional[str] = None) -> str:
        """Create a bucket (with a unique name when none is given); return its name."""
        name = name or "pgcloud-test-%s" % uuid.uuid4().hex[:12]
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Abort its uploads, delete its objects, then the bucket (frees moto's memory)."""
        client = self.client()
        for upload in self.multipart_uploads(name):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        keys = self.list_keys(name)
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=name, Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]]})
        client.delete_bucket(Bucket=name)
        if name in self.buckets:
            self.buckets.remove(name)

    def list_objects(self, bucket: str, prefix: str = "") -> Dict[str, int]:
        """Every object under prefix, with its size."""
        sizes: Dict[str, int] = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            sizes.update((item["Key"], int(item["Size"])) for item in page.get("Contents", []))
        return sizes

    def list_keys(self, bucket: str, prefix: str = "") -> List[str]:
        """Every object key under prefix, sorted."""
        return sorted(self.list_objects(bucket, prefix))

    def get_object(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def multipart_uploads(self, bucket: str, prefix: str = "") -> List[Dict[str, Any]]:
        """Multipart uploads started and neither completed nor aborted (each with Key, UploadId)."""
        return list(self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", []))

    def target(self, bucket: str, prefix: str, server_name: str) -> StorageTarget:
        return StorageTarget(self.endpoint_url, bucket, prefix, server_name)

    def open_uploads(self, bucket: str) -> List[str]:
        """Keys of the uploads in parts neither completed nor aborted (the same for every store)."""
        return sorted(upload["Key"] for upload in self.multipart_uploads(bucket))


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def fingerprint_tables(connection: Any, tables: Sequence[str]) -> Dict[str, Tuple[int, str]]:
    """(row count, md5 of all rows in a fixed order) of each table.

    Rows are ordered by their text form in the "C" collation, so the digest depends neither
    on the physical row order (which differs after vacuum or WAL replay) nor on the locale.
    """
    result = {}
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\")),"
                           " '') FROM %s AS t" % table)
            count, digest = cursor.fetchone()
            result[table] = (int(count), digest)
    return result


def data_fingerprint(connect: Callable[[str], Any]) -> Dict[str, Any]:
    """What a faithful restore must reproduce: the tablespace names, and the row count and
    digest of the pgbench tables, of the extra tables and of the tablespace database's table."""
    fingerprint: Dict[str, Any] = {}
    with contextlib.closing(connect("postgres")) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT spcname FROM pg_tablespace ORDER BY 1")
            fingerprint["tablespaces"] = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TABLESPACE_DB,))
            has_tablespace_db = cursor.fetchone() is not None
        fingerprint["postgres"] = fingerprint_tables(connection, PGBENCH_TABLES + (NOTES_TABLE, TABLESPACE_NOTES_TABLE))
    if has_tablespace_db:
        with contextlib.closing(connect(TABLESPACE_DB)) as connection:
            fingerprint[TABLESPACE_DB] = fingerprint_tables(connection, (TABLESPACE_DB_TABLE,))
    return fingerprint


def connector(host: str, port: int) -> Callable[[str], Any]:
    """connect(dbname) for a server: autocommit psycopg2 sessions named after the test bed."""

    def connect(dbname: str = "postgres") -> Any:
        connection = psycopg2.connect(host=host, port=port, user=POSTGRES_USER, dbname=dbname, connect_timeout=10,
                                      application_name=TESTBED_APPLICATION)
        connection.autocommit = True
        return connection

    return connect


@dataclass
class PgbenchRun:
    """What a background pgbench did: pgbench_history rows before and after it ran."""

    history_before: int
    history_after: int = -1
    log_file: Optional[Path] = None

    @property
    def transactions(self) -> int:
        """Transactions committed while it ran (each one adds a pgbench_history row)."""
        return self.history_after - self.history_before


def archive_script(cluster_name: str, function_file: Path) -> str:
    """The archive_command of a test cluster: archive_wal, as the function file defines it at each call."""
    return ("#!/bin/sh\n"
            "# archive_command of the %s test cluster (written by tests/integration/testbed.py)\n"
            "set -e\n"
            ". %s\n"
            'archive_wal "$1"\n' % (cluster_name, function_file))


def archive_function(tool: Sequence[str]) -> str:
    """The shell function archive_wal: `tool FILE`, with an exit status above 125 logged and
    reported as 1. PostgreSQL takes such a status (137: a call killed after its timeout) for
    a signal: its archiver exits without counting a failure in pg_stat_archiver and starts
    again only later, so that a backup waiting for its WAL could only say that the archiver
    is behind."""
    return ('archive_wal() {\n'
            '    status=0\n'
            '    %s "$1" || status=$?\n'
            '    if [ "$status" -gt 125 ]; then\n'
            '        echo "archive_command: the archive call exited with status $status, reported as 1" >&2\n'
            '        return 1\n'
            '    fi\n'
            '    return "$status"\n'
            '}\n' % shlex.join(tool))


class PostgresCluster:
    """A PostgreSQL cluster (15 unless pg_bin says otherwise) in a scratch folder under /tmp,
    run by the postgres OS user.

    Listens on 127.0.0.1 and on a unix socket in its folder, on a free port. With an
    `archive_target`, archive_mode is on and every WAL file goes through
    `barman-cloud-wal-archive` to that target; `archive_to()` switches the target (the tests
    point it at their own bucket so that the WAL lands next to the backup they take).
    """

    def __init__(self, name: str = "source", *, tablespace: Optional[str] = "testbed_space",
                 archive_target: Optional[StorageTarget] = None, port: Optional[int] = None,
                 pg_bin: Path = PG_BIN) -> None:
        self.name = name
        # The server's binaries (initdb, pg_ctl): another major's with pg_bin_of(major).
        self.pg_bin = pg_bin
        self.port = port or free_port()
        self.tablespace = tablespace
        self.root = scratch_dir("pgcloud-tests-%s-" % name)
        self.pgdata = self.root / "pgdata"
        self.socket_dir = self.root
        self.tablespace_dir = self.root / "tablespace" if tablespace else None
        self.log_file = self.root / "postgres.log"
        self.archive_target = archive_target
        self._archive_env = self.root / "archive-target.env"
        self._archive_script = self.root / "archive-wal.sh"

    # -- life cycle

    def create(self) -> "PostgresCluster":
        """initdb, settings, start, tablespace; the whole folder is removed if a step fails."""
        try:
            run(as_postgres([str(self.pg_bin / "initdb"), "-D", str(self.pgdata), "-A", "trust", "-U", POSTGRES_USER,
                             "--data-checksums", "-E", "UTF8", "--locale", "C.UTF-8"]))
            if self.archive_target is not None:
                self._write_archive_script()
                self.archive_to(self.archive_target)
            self._append_settings(self._settings())
            self.start()
            if self.tablespace:
                postgres_dir(self.tablespace_dir)
                self.execute("CREATE TABLESPACE %s LOCATION '%s'" % (self.tablespace, self.tablespace_dir))
        except BaseException:
            self.destroy()
            raise
        return self

    def _settings(self) -> Dict[str, str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "'%s'" % self.socket_dir,
            # The source never crashes in a test, and pgbench -i is much faster without fsync.
            "fsync": "off",
            "synchronous_commit": "off",
            "max_connections": "50",
            "log_line_prefix": "'%m [%p] %q%a '",
        }
        if self.archive_target is not None:
            settings.update({"archive_mode": "on", "archive_command": "'%s %%p'" % self._archive_script})
        return settings

    def _append_settings(self, settings: Mapping[str, str]) -> None:
        with open(self.pgdata / "postgresql.conf", "a") as config:
            config.write("\n# pgcloud.backup test bed\n")
            config.writelines("%s = %s\n" % item for item in settings.items())

    def _write_archive_script(self) -> None:
        """archive_command: barman-cloud-wal-archive to the target named in archive-target.env.

        A script that reads the target at each call, rather than the command inline, so that
        the target can change between tests without a reload (whose pick-up by the archiver
        cannot be observed). It runs as postgres: hence the explicit environment, with the
        copied interpreter's LD_LIBRARY_PATH and the venv in /opt rather than under /root.
        """
        self._archive_script.write_text(archive_script(self.name, self._archive_env))
        self._archive_script.chmod(0o755)

    def archive_to(self, target: StorageTarget) -> None:
        """Send every WAL file completed from now on to target (the switch is atomic).

        A call is stopped after ARCHIVE_CALL_SECONDS: the reference tool sets no timeout of its
        own, and one call stuck on an emulator would hold the archiver, and every test after it
        that waits for WAL, until the emulator gave up; stopped, it fails and is retried (see
        archive_function).
        """
        staging = self._archive_env.with_suffix(".tmp")
        tool = [shutil.which("timeout") or "/usr/bin/timeout", "--kill-after=5", str(ARCHIVE_CALL_SECONDS),
                *barman_cloud_command("wal-archive", target, target.url, target.server_name)]
        staging.write_text(archive_function(tool))
        staging.chmod(0o644)
        staging.replace(self._archive_env)
        self.archive_target = target

    def start(self) -> None:
        try:
            run(as_postgres([str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file), "-w",
                             "-t", "120", "start"]), timeout=180)
        except TestBedError as error:
            raise TestBedError("%s\n--- %s\n%s" % (error, self.log_file, tail(self.log_file))) from None

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            run(as_postgres([str(self.pg_bin / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "120", "stop"]),
                check=False, timeout=180)

    def destroy(self) -> None:
        """Stop the server (immediately: nothing to keep) and remove every file of the cluster."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        remove_tree(self.root)

    def __enter__(self) -> "PostgresCluster":
        return self.create()

    def __exit__(self, *exc_info: Any) -> None:
        self.destroy()

    # -- SQL

    @property
    def connection_params(self) -> Dict[str, Any]:
        """host/port/user as the modules (and libpq) take them: host is the socket folder."""
        return {"host": str(self.socket_dir), "port": self.port, "user": POSTGRES_USER}

    def connect(self, dbname: str = "postgres") -> Any:
        return connector(str(self.socket_dir), self.port)(dbname)

    def psql(self, sql: str, params: Optional[Sequence[Any]] = None, dbname: str = "postgres") -> List[tuple]:
        """Run one statement (autocommit); return its rows, [] when it returns none."""
        with contextlib.closing(self.connect(dbname)) as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description is not None else []

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        self.psql(sql, dbname=dbname)

    def scalar(self, sql: str, params: Optional[Sequence[Any]] = None, dbname: str = "postgres") -> Any:
        rows = self.psql(sql, params, dbname)
        return rows[0][0] if rows else None

    def client_sessions(self) -> List[Dict[str, Any]]:
        """Client sessions other than the test bed's own: a backup session left behind shows here."""
        rows = self.psql("SELECT pid, application_name, state, query FROM pg_stat_activity "
                         "WHERE backend_type = 'client backend' AND application_name <> %s", (TESTBED_APPLICATION,))
        return [dict(zip(("pid", "application_name", "state", "query"), row)) for row in rows]

    def sessions_left(self, timeout: float = 10) -> List[Dict[str, Any]]:
        """The client sessions still there after up to `timeout` seconds: a backup's session ends
        when the module's process exits, and the server takes a moment to notice."""
        deadline = time.monotonic() + timeout
        while self.client_sessions() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.client_sessions()

    def tablespace_oids(self) -> Dict[str, int]:
        return {name: int(oid) for name, oid in self.psql(
            "SELECT spcname, oid FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")}

    # -- data

    def pgbench(self, *arguments: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return run([str(PG_BIN / "pgbench"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", POSTGRES_USER,
                    *arguments, "postgres"], timeout=timeout)

    def load_data(self, scale: int) -> None:
        """pgbench tables at scale (their indexes and history in the tablespace), extra tables."""
        arguments = ["-i", "-q", "-s", str(scale)]
        if self.tablespace:
            arguments.append("--index-tablespace=%s" % self.tablespace)
        self.pgbench(*arguments)
        in_tablespace = " TABLESPACE %s" % self.tablespace if self.tablespace else ""
        if self.tablespace:
            # pgbench inserts history rows: with the table in the tablespace, a running pgbench
            # changes files there during a backup.
            self.execute("ALTER TABLE pgbench_history SET TABLESPACE %s" % self.tablespace)
        # Every 200th note carries 32 kB of text, so that TOAST tables are covered too.
        self.execute("CREATE TABLE %s (id int PRIMARY KEY, note text NOT NULL, big text);"
                     "INSERT INTO %s SELECT g, md5(g::text), CASE WHEN g %% 200 = 0 THEN "
                     "(SELECT string_agg(md5((g * 1000 + i)::text), '') FROM generate_series(1, 1000) i) END "
                     "FROM generate_series(1, 20000) g" % (NOTES_TABLE, NOTES_TABLE))
        self.execute("CREATE TABLE %s (id int PRIMARY KEY, note text NOT NULL)%s;"
                     "INSERT INTO %s SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 50000) g"
                     % (TABLESPACE_NOTES_TABLE, in_tablespace, TABLESPACE_NOTES_TABLE))
        if self.tablespace:
            self.execute("CREATE DATABASE %s TABLESPACE %s" % (TABLESPACE_DB, self.tablespace))
            self.execute("CREATE TABLE %s (id int PRIMARY KEY, label text);"
                         "INSERT INTO %s SELECT g, 'item ' || g FROM generate_series(1, 10000) g"
                         % (TABLESPACE_DB_TABLE, TABLESPACE_DB_TABLE), dbname=TABLESPACE_DB)
        self.execute("CHECKPOINT")

    @contextlib.contextmanager
    def pgbench_running(self, clients: int = 2, rate: int = 200) -> Iterator[PgbenchRun]:
        """pgbench writing in the background for the duration of the block.

        Rate-limited (transactions per second) so that it writes throughout a backup without
        taking the machine's two cores from the backup. The block starts once pgbench has
        committed; on exit, raises if pgbench stopped early or committed nothing.
        """
        record = PgbenchRun(history_before=int(self.scalar("SELECT count(*) FROM pgbench_history")),
                            log_file=self.root / ("pgbench-%s.log" % uuid.uuid4().hex[:8]))
        with open(record.log_file, "wb") as log:
            process = subprocess.Popen(
                [str(PG_BIN / "pgbench"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", POSTGRES_USER,
                 "-n", "-c", str(clients), "-j", "1", "-R", str(rate), "-T", "3600", "postgres"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        early_exit: Optional[int] = None
        try:
            wait_for(lambda: process.poll() is not None
                     or self.scalar("SELECT count(*) FROM pgbench_history") > record.history_before,
                     timeout=30, what="pgbench to commit")
            if process.poll() is not None:
                raise TestBedError("pgbench exited early:\n%s" % tail(record.log_file))
            yield record
        finally:
            early_exit = process.poll()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        record.history_after = int(self.scalar("SELECT count(*) FROM pgbench_history"))
        if early_exit is not None:
            raise TestBedError("pgbench stopped during the block (exit %s):\n%s" % (early_exit, tail(record.log_file)))
        if record.transactions <= 0:
            raise TestBedError("pgbench committed nothing:\n%s" % tail(record.log_file))

    def fingerprint(self) -> Dict[str, Any]:
        """See data_fingerprint."""
        return data_fingerprint(self.connect)

    def switch_wal_and_wait(self, timeout: float = 120) -> str:
        """Close the current WAL file and wait until it is archived; return its name.

        Everything committed before this call is then in the archive, so a restore that
        replays all archived WAL must reach the data as it is now.
        """
        segment = self.scalar("SELECT pg_walfile_name(pg_switch_wal())")

        def archived() -> bool:
            last = self.scalar("SELECT last_archived_wal FROM pg_stat_archiver")
            # A .backup history file name starts with its segment's name, hence [:24].
            return last is not None and last[:24] >= segment

        try:
            wait_for(archived, timeout, interval=0.3, what="WAL file %s to be archived" % segment)
        except TestBedError as error:
            failed = self.psql("SELECT last_failed_wal, last_failed_time FROM pg_stat_archiver")
            raise TestBedError("%s (last failure: %s)\n--- %s\n%s" % (
                error, failed, self.log_file, tail(self.log_file))) from None
        return segment


# ---------------------------------------------------------------------------------------------
# barman-cloud tools


def barman_cloud_command(tool: str, target: StorageTarget, *arguments: str) -> List[str]:
    """barman-cloud-<tool> for target, with its whole environment (see tool_env)."""
    return env_command({**tool_env(), **dict(target.tool_env)},
                       [str(VENV_BIN / ("barman-cloud-" + tool)), *target.tool_arguments(), *arguments])


def barman_cloud(tool: str, target: StorageTarget, *arguments: str, check: bool = True,
                 timeout: float = 900) -> subprocess.CompletedProcess:
    """Run barman-cloud-<tool> from the venv as the postgres user, as in production."""
    return run(as_postgres(barman_cloud_command(tool, target, *arguments)), check=check, timeout=timeout)


def backup_list(target: StorageTarget) -> List[Dict[str, Any]]:
    """`barman-cloud-backup-list --format json`: the backups as the reference tools see them."""
    result = barman_cloud("backup-list", target, "--format", "json", target.url, target.server_name)
    return list(json.loads(result.stdout)["backups_list"])


def backup_show(target: StorageTarget, backup: str) -> Dict[str, Any]:
    """`barman-cloud-backup-show --format json` of a backup id or name."""
    result = barman_cloud("backup-show", target, "--format", "json", target.url, target.server_name, backup)
    shown = json.loads(result.stdout)
    if "backup_id" not in shown and len(shown) == 1:
        # Some versions key the document by the server name ("cloud" for cloud backups).
        shown = next(iter(shown.values()))
    return dict(shown)


REFERENCE_COMPRESSION_FLAGS = {None: [], "none": [], "gzip": ["--gzip"], "bzip2": ["--bzip2"],
                               "snappy": ["--snappy"], "lz4": ["--lz4"], "zstd": ["--zstd"]}


def reference_backup(target: StorageTarget, cluster: PostgresCluster, *, compression: Optional[str] = None,
                     name: Optional[str] = None, extra_arguments: Sequence[str] = ()) -> str:
    """Take a backup with the reference `barman-cloud-backup` (as postgres); return its id."""
    before = {backup["backup_id"] for backup in backup_list(target)}
    arguments = ["-h", str(cluster.socket_dir), "-p", str(cluster.port), "-U", POSTGRES_USER,
                 "--immediate-checkpoint", *REFERENCE_COMPRESSION_FLAGS[compression], *extra_arguments]
    if name:
        arguments += ["-n", name]
    barman_cloud("backup", target, *arguments, target.url, target.server_name)
    new = sorted({backup["backup_id"] for backup in backup_list(target)} - before)
    if len(new) != 1:
        raise TestBedError("expected one new backup in %s, found %s" % (target.url, new))
    return new[0]


# ---------------------------------------------------------------------------------------------
# Restore


@dataclass
class RestoreResult:
    """What a restore produced: the data fingerprint, pg_amcheck's verdict, the tablespaces."""

    fingerprint: Dict[str, Any]
    amcheck_returncode: int
    amcheck_output: str
    # tablespace oid -> where pg_tblspc/<oid> points, as barman-cloud-restore left it
    tablespace_links: Dict[int, str] = field(default_factory=dict)
    # tablespace name -> the fresh folder given to --tablespace NAME:LOCATION
    relocations: Dict[str, str] = field(default_factory=dict)
    # tablespace name -> pg_tablespace_location() on the restored server
    tablespace_locations: Dict[str, str] = field(default_factory=dict)
    restore_output: str = ""

    @property
    def amcheck_passed(self) -> bool:
        return self.amcheck_returncode == 0


def restore_and_verify(target: StorageTarget, backup_id: str, *, tablespaces: Sequence[str] = (),
                       timeout: float = 300, keep: bool = False, pg_bin: Path = PG_BIN,
                       before_start: Optional[Callable[[Path], None]] = None) -> RestoreResult:
    """Restore a backup with the real tools, start PostgreSQL on it, check it, fingerprint it.

    1. `barman-cloud-restore` (as postgres) into a fresh folder, each tablespace named in
       `tablespaces` relocated to a fresh folder with `--tablespace NAME:LOCATION`;
    2. recovery.signal and a restore_command running `barman-cloud-wal-restore` from the same
       target, with no recovery target: recovery replays every archived WAL file, then
       promotes (`before_start(pgdata)` runs first, on the files as restored). So after `switch_wal_and_wait()` on the source, the restored data must equal
       the source's at that call (a recovery target of 'immediate' would only prove the
       backup consistent, not that it holds the data);
    3. PostgreSQL (of `pg_bin`) on another port until recovery ends, `pg_amcheck` (see
       amcheck_command), and the fingerprint. The restored server is always stopped, and its folder removed
       unless keep.
    """
    root = scratch_dir("pgcloud-tests-restore-")
    pgdata = root / "pgdata"
    log_file = root / "postgres.log"
    port = free_port()
    try:
        postgres_dir(pgdata)
        relocations = {name: postgres_dir(root / ("tablespace-%s" % name)) for name in tablespaces}
        arguments: List[str] = []
        for name, location in relocations.items():
            arguments += ["--tablespace", "%s:%s" % (name, location)]
        restored = barman_cloud("restore", target, *arguments, target.url, target.server_name, backup_id, str(pgdata))
        tblspc = pgdata / "pg_tblspc"
        links = {int(link.name): os.readlink(link) for link in tblspc.iterdir() if link.is_symlink()} \
            if tblspc.is_dir() else {}
        if before_start is not None:
            before_start(pgdata)
        write_recovery_settings(pgdata, target, port=port, socket_dir=root)
        try:
            run(as_postgres([str(pg_bin / "pg_ctl"), "-D", str(pgdata), "-l", str(log_file), "-w",
                             "-t", str(int(timeout)), "start"]), timeout=timeout + 30)
        except TestBedError as error:
            raise TestBedError("the restored server did not start: %s\n--- %s\n%s" % (
                error, log_file, tail(log_file, 60))) from None
        connect = connector(str(root), port)

        def promoted() -> bool:
            with contextlib.closing(connect("postgres")) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT pg_is_in_recovery()")
                return not cursor.fetchone()[0]

        try:
            wait_for(promoted, timeout, interval=0.5, what="the recovery of the restored server to end")
        except TestBedError as error:
            raise TestBedError("%s\n--- %s\n%s" % (error, log_file, tail(log_file, 60))) from None
        amcheck = run(amcheck_command(root, port, server_major(pgdata)), check=False, timeout=timeout)
        with contextlib.closing(connect("postgres")) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT spcname, pg_tablespace_location(oid) FROM pg_tablespace "
                           "WHERE spcname NOT IN ('pg_default', 'pg_global')")
            locations = dict(cursor.fetchall())
        return RestoreResult(fingerprint=data_fingerprint(connect), amcheck_returncode=amcheck.returncode,
                             amcheck_output=amcheck.stdout + amcheck.stderr, tablespace_links=links,
                             relocations={name: str(path) for name, path in relocations.items()},
                             tablespace_locations=locations, restore_output=restored.stdout + restored.stderr)
    finally:
        if (pgdata / "postmaster.pid").exists():
            run(as_postgres([str(pg_bin / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"]),
                check=False, timeout=120)
        if not keep:
            remove_tree(root)


def write_recovery_settings(pgdata: Path, target: StorageTarget, *, port: int, socket_dir: Path) -> None:
    """Settings of a restored copy: its own port and socket, WAL from the target, no archiving.

    Appended to postgresql.auto.conf, which PostgreSQL reads after postgresql.conf: the
    restored postgresql.conf is the source's (its port, its archive_command) and stays as it
    is. archive_mode is off so that the promoted copy never writes into the source's archive.
    """
    restore = barman_cloud_command("wal-restore", target, target.url, target.server_name, "%f", "%p")
    settings = {
        "port": str(port),
        "listen_addresses": "''",
        "unix_socket_directories": "'%s'" % socket_dir,
        "archive_mode": "off",
        "restore_command": "'%s'" % shlex.join(restore).replace("'", "''"),
        "recovery_target_timeline": "'latest'",
    }
    auto_conf = pgdata / "postgresql.auto.conf"
    with open(auto_conf, "a") as config:
        config.write("\n# restored by the pgcloud.backup test bed\n")
        config.writelines("%s = %s\n" % item for item in settings.items())
    signal_file = pgdata / "recovery.signal"
    signal_file.touch()
    for path in (auto_conf, signal_file):
        chown_postgres(path)


# ---------------------------------------------------------------------------------------------
# ansible-playbook


@dataclass
class TaskResult:
    """One task's result on one host: what the module returned, plus Ansible's own keys."""

    name: str
    action: str
    status: str  # ok, changed, failed, skipped or unreachable
    result: Dict[str, Any]


@dataclass
class PlaybookResult:
    """An ansible-playbook run: exit status, output, and each task's result in order."""

    rc: int
    stdout: str
    stderr: str
    tasks: List[TaskResult]
    stats: Dict[str, Any]

    def task(self, name: str) -> Dict[str, Any]:
        """The result of the last task of that name; KeyError (with the output) if none ran."""
        for task in reversed(self.tasks):
            if task.name == name:
                return task.result
        raise KeyError("no task %r ran; tasks: %s\n%s" % (name, [task.name for task in self.tasks], self.output))

    def ran(self, name: str) -> bool:
        return any(task.name == name for task in self.tasks)

    @property
    def output(self) -> str:
        """What ansible-playbook printed, for assertion messages."""
        return "--- ansible-playbook stdout\n%s\n--- stderr\n%s" % (self.stdout[-6000:], self.stderr[-3000:])


def run_playbook(playbook: Path, extravars: Optional[Mapping[str, Any]] = None, *, check: bool = False,
                 timeout: float = 900, env: Optional[Mapping[str, str]] = None, verbosity: int = 0) -> PlaybookResult:
    """Run a playbook against localhost (connection local) with the collection of this checkout.

    The collection is linked into a scratch collections path, so that the run tests this
    checkout whatever setup.sh linked last; modules run with the venv's python; every task
    result is captured by the test bed's `pgcloud_results` callback into a JSON file
    (ansible-core ships no JSON callback: that one is in ansible.posix), and the normal output
    stays on stdout for failure messages. A failing play is returned, not raised.
    """
    work = Path(tempfile.mkdtemp(prefix="pgcloud-playbook-", dir="/tmp"))
    try:
        collection = work / "collections" / "ansible_collections" / "pgcloud" / "backup"
        collection.parent.mkdir(parents=True)
        collection.symlink_to(COLLECTION_ROOT)
        vars_file = work / "extravars.json"
        vars_file.write_text(json.dumps({"ansible_python_interpreter": str(VENV_PYTHON), **(extravars or {})}))
        results_file = work / "results.json"
        run_env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ANSIBLE_", "PG"))}
        run_env.update(FAKE_AWS_ENV)
        run_env.update({
            "PATH": "%s:%s" % (VENV_BIN, os.environ.get("PATH", "/usr/bin:/bin")),
            "LD_LIBRARY_PATH": str(PYTHON_LIB),
            "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            "ANSIBLE_CALLBACKS_ENABLED": "pgcloud_results",
            "PGCLOUD_RESULTS_FILE": str(results_file),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            **(env or {}),
        })
        command = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", "@%s" % vars_file,
                   str(playbook)]
        if check:
            command.append("--check")
        if verbosity:
            command.append("-" + "v" * verbosity)
        process = run(command, env=run_env, check=False, timeout=timeout)
        try:
            document = json.loads(results_file.read_text())
        except (OSError, ValueError) as error:
            raise TestBedError("ansible-playbook wrote no results (%s), exit %d:\n%s\n%s" % (
                error, process.returncode, process.stdout[-4000:], process.stderr[-4000:])) from None
        tasks = [TaskResult(item["name"], item["action"], item["status"], item["result"]) for item in document["tasks"]]
        return PlaybookResult(process.returncode, process.stdout, process.stderr, tasks, document.get("stats", {}))
    finally:
        remove_tree(work)


# ---------------------------------------------------------------------------------------------
# The host's syslog


class SyslogCapture:
    """Everything written to /dev/log while it is open: what modules send to the host's log.

    AnsibleModule logs each run's parameters (no_log ones masked) and our engine's progress
    there, so a secret that reaches the host's log would show up here. The test machine has
    no syslog daemon; /dev/log is bound for the duration and removed afterwards. A lock
    file serialises captures of several pytest-xdist workers.
    """

    PATH = Path("/dev/log")
    LOCK = Path("/tmp/pgcloud-testbed-syslog.lock")

    def __init__(self) -> None:
        self.messages: List[str] = []
        self._lock: Optional[Any] = None
        self._socket: Optional[socket.socket] = None
        self._reader: Optional[threading.Thread] = None

    def __enter__(self) -> "SyslogCapture":
        self._lock = open(self.LOCK, "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        if self.PATH.exists():
            self._release()
            raise TestBedError("%s exists (a syslog daemon runs here): the test needs to listen there itself; "
                               "run it on a machine without syslog, as CI" % self.PATH)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.PATH))
        self.PATH.chmod(0o666)
        self._socket.settimeout(0.2)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        while self._socket is not None:
            try:
                self.messages.append(self._socket.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                continue
            except OSError:
                return

    def __exit__(self, *exc_info: Any) -> None:
        sock, self._socket = self._socket, None
        if self._reader is not None:
            self._reader.join(timeout=5)
        if sock is not None:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.PATH.unlink()
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


# ---------------------------------------------------------------------------------------------
# A module run on its own


@dataclass
class ModuleRun:
    """One module run as Ansible runs it on a host: its exit status, its JSON result, its output."""

    rc: int
    result: Dict[str, Any]
    stdout: str
    stderr: str


@contextlib.contextmanager
def started_module(name: str, args: Mapping[str, Any], *, env: Optional[Mapping[str, str]] = None,
                   user: Optional[str] = None) -> Iterator[subprocess.Popen]:
    """plugins/modules/<name>.py of the collection under test, started with `args` outside ansible-playbook.

    AnsibleModule reads {"ANSIBLE_MODULE_ARGS": ...} from the file named on its command line,
    which is how a module is run by hand; the module code and module_utils are those of the
    collection, not a copy. With user="postgres" the module runs as that OS user, from a copy
    of the plugins that it can read (the checkout may be where postgres cannot). The process
    is killed on leaving the block if it still runs.
    """
    work = Path(tempfile.mkdtemp(prefix="pgcloud-module-", dir="/tmp"))
    process: Optional[subprocess.Popen] = None
    try:
        collection = work / "collections" / "ansible_collections" / "pgcloud" / "backup"
        collection.parent.mkdir(parents=True)
        if user is None:
            collection.symlink_to(COLLECTION_ROOT)
        else:
            shutil.copytree(COLLECTION_ROOT / "plugins", collection / "plugins",
                            ignore=shutil.ignore_patterns("__pycache__"))
        args_file = work / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"_ansible_tmpdir": str(work), **args}}))
        run_env = dict(tool_env(), PYTHONPATH=str(work / "collections"), **(env or {}))
        command = [str(VENV_PYTHON), str(collection / "plugins" / "modules" / ("%s.py" % name)), str(args_file)]
        if user is not None:
            run(["chown", "-R", user, str(work)])
            command = ["runuser", "-u", user, "--", *env_command(run_env, command)]
        process = subprocess.Popen(command, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        yield process
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()
        remove_tree(work)


def module_result(name: str, process: subprocess.Popen, timeout: float = 300) -> ModuleRun:
    """Wait for a started module and read its JSON result."""
    stdout, stderr = process.communicate(timeout=timeout)
    try:
        result = json.loads(stdout)
    except ValueError:
        raise TestBedError("module %s printed no JSON result (exit %d):\n%s\n%s" % (
            name, process.returncode, stdout[-4000:], stderr[-4000:])) from None
    return ModuleRun(process.returncode, result, stdout, stderr)


def run_module(name: str, args: Mapping[str, Any], *, env: Optional[Mapping[str, str]] = None,
               timeout: float = 300, user: Optional[str] = None) -> ModuleRun:
    """Run a module on its own (see started_module): about half a second a run, against
    several for a playbook, which is what a table of many cases needs."""
    with started_module(name, args, env=env, user=user) as process:
        return module_result(name, process, timeout)


def backup_module_args(cluster: "PostgresCluster", target: StorageTarget, **params: Any) -> Dict[str, Any]:
    """base_backup's parameters for a backup of `cluster` to `target`; an immediate checkpoint,
    since a spread one can take minutes after a test that wrote much."""
    return dict(target.module_params(), immediate_checkpoint=True, **cluster.connection_params, **params)


BACKUP_ID_PATTERN = re.compile(r"^\d{8}T\d{6}$")


def backup_files(keys: Sequence[str], target: StorageTarget, backup_id: str) -> List[str]:
    """The file names (after <server>/base/<id>/) of one backup among object keys."""
    prefix = target.backup_prefix(backup_id)
    return sorted(key[len(prefix):] for key in keys if key.startswith(prefix))


# ---------------------------------------------------------------------------------------------
# Other PostgreSQL majors (the version tests)

# Where scripts/setup.sh installs the server binaries of the majors other than Debian's 15.
OTHER_MAJORS_DIR = PREFIX / "pg"
DEFAULT_MAJOR = 15
# amcheck's heap check (verify_heapam, which pg_amcheck calls) came with PostgreSQL 14.
FIRST_MAJOR_WITH_HEAP_CHECK = 14


def pg_bin_of(major: int) -> Path:
    """The server binaries of a PostgreSQL major: Debian's for 15, scripts/setup.sh's for the others.

    The client tools (pgbench, pg_amcheck, pg_basebackup, pg_verifybackup) stay PG_BIN's:
    the other majors' builds ship none.
    """
    if major == DEFAULT_MAJOR:
        return PG_BIN
    path = OTHER_MAJORS_DIR / str(major) / "bin"
    if not (path / "postgres").is_file():
        raise TestBedError("no PostgreSQL %d server binaries in %s: run scripts/setup.sh" % (major, path))
    return path


def server_major(pgdata: Path) -> int:
    """The major version of a data directory, from its PG_VERSION file."""
    return int((pgdata / "PG_VERSION").read_text().strip())


def amcheck_command(socket_dir: Path, port: int, major: int) -> List[str]:
    """pg_amcheck (Debian's 15, which checks servers of any major) on every database.

    Before 14 the server's amcheck has no heap check: there every B-tree index is checked
    with --heapallindexed, which reads the table of each index to find every row in it.
    """
    command = [str(PG_BIN / "pg_amcheck"), "-h", str(socket_dir), "-p", str(port), "-U", POSTGRES_USER,
               "--all", "--heapallindexed", "--install-missing"]
    if major < FIRST_MAJOR_WITH_HEAP_CHECK:
        command += ["--index", "*.*.*"]
    return command


def verify_backup(pgdata: Path) -> subprocess.CompletedProcess:
    """pg_verifybackup (Debian's 15, which reads the manifests of every major) on a restored copy
    not yet started: every file the backup's backup_manifest lists, with its size and checksum.

    --no-parse-wal: the copy holds no WAL yet (recovery fetches it later).
    """
    return run([str(PG_BIN / "pg_verifybackup"), "--no-parse-wal", str(pgdata)], check=False)


# ---------------------------------------------------------------------------------------------
# A streaming standby


class StandbyCluster(PostgresCluster):
    """A streaming standby of `primary`, cloned with `pg_basebackup -R` (so of 15, the major of
    the client tools), its tablespace mapped into its own folder.

    Its postgresql.conf is the primary's with the port and socket folder overridden; it
    archives nothing (archive_mode=on does not archive during recovery).
    """

    def __init__(self, primary: PostgresCluster, name: str = "standby") -> None:
        super().__init__(name, tablespace=primary.tablespace, pg_bin=primary.pg_bin)
        self.primary = primary

    def create(self) -> "StandbyCluster":
        try:
            command = [str(PG_BIN / "pg_basebackup"), "-h", str(self.primary.socket_dir), "-p", str(self.primary.port),
                       "-U", POSTGRES_USER, "-D", str(self.pgdata), "-R", "-X", "stream", "-c", "fast"]
            if self.primary.tablespace_dir is not None:
                command += ["-T", "%s=%s" % (self.primary.tablespace_dir, self.tablespace_dir)]
            run(as_postgres(command))
            self._append_settings({"port": str(self.port), "unix_socket_directories": "'%s'" % self.socket_dir})
            self.start()
            wait_for(self.streaming, 60, what="the standby %s to stream from its primary" % self.name)
        except BaseException:
            self.destroy()
            raise
        return self

    def streaming(self) -> bool:
        return bool(self.scalar("SELECT pg_is_in_recovery() AND EXISTS "
                                "(SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"))

    def wait_replayed(self, timeout: float = 60) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        target = self.primary.scalar("SELECT pg_current_wal_lsn()::text")
        wait_for(lambda: self.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)), timeout,
                 what="the standby %s to replay up to %s" % (self.name, target))


# ---------------------------------------------------------------------------------------------
# Other controllers and managed-host Pythons; playbooks over an inventory (SSH fleets)

# ansible-core 2.16, the oldest meta/runtime.yml declares, in its own venv (scripts/setup.sh).
OLDEST_ANSIBLE_BIN = PREFIX / "venv-2.16" / "bin"
# Managed-host Pythons, copied from pyenv with their own RUNPATH (they start for any user
# without LD_LIBRARY_PATH), each with a venv holding the modules' requirements.
HOST_PYTHON_VERSIONS = ("3.9", "3.13")


def host_python(version: str) -> Path:
    """The interpreter of the managed-host venv of that Python version (scripts/setup.sh)."""
    path = PREFIX / ("venv-host-%s" % version) / "bin" / "python"
    if not path.exists():
        raise TestBedError("no %s: run scripts/setup.sh" % path)
    return path


def run_inventory_playbook(playbook: Path, inventory: Mapping[str, Any], extravars: Optional[Mapping[str, Any]] = None,
                           *, ansible_bin: Path = VENV_BIN, env: Optional[Mapping[str, str]] = None,
                           timeout: float = 900) -> PlaybookResult:
    """Run a playbook with ansible-playbook of `ansible_bin` against an inventory (a dict, as
    YAML inventories hold it), with the collection of this checkout and the results callback
    of run_playbook. Unlike run_playbook, nothing is set per host: the inventory says how to
    reach each host and with which Python."""
    work = Path(tempfile.mkdtemp(prefix="pgcloud-playbook-", dir="/tmp"))
    try:
        collection = work / "collections" / "ansible_collections" / "pgcloud" / "backup"
        collection.parent.mkdir(parents=True)
        collection.symlink_to(COLLECTION_ROOT)
        inventory_file = work / "inventory.yml"
        inventory_file.write_text(json.dumps(inventory))  # JSON is YAML
        vars_file = work / "extravars.json"
        vars_file.write_text(json.dumps(dict(extravars or {})))
        results_file = work / "results.json"
        run_env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "ANSIBLE_", "PG"))}
        run_env.update({
            "PATH": "%s:%s" % (ansible_bin, os.environ.get("PATH", "/usr/bin:/bin")),
            "LD_LIBRARY_PATH": str(PYTHON_LIB),
            "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            "ANSIBLE_CALLBACKS_ENABLED": "pgcloud_results",
            "PGCLOUD_RESULTS_FILE": str(results_file),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            **(env or {}),
        })
        command = [str(ansible_bin / "ansible-playbook"), "-i", str(inventory_file), "-e", "@%s" % vars_file,
                   str(playbook)]
        process = run(command, env=run_env, check=False, timeout=timeout)
        try:
            document = json.loads(results_file.read_text())
        except (OSError, ValueError) as error:
            raise TestBedError("ansible-playbook wrote no results (%s), exit %d:\n%s\n%s" % (
                error, process.returncode, process.stdout[-4000:], process.stderr[-4000:])) from None
        tasks = [TaskResult(item["name"], item["action"], item["status"], item["result"]) for item in document["tasks"]]
        return PlaybookResult(process.returncode, process.stdout, process.stderr, tasks, document.get("stats", {}))
    finally:
        remove_tree(work)


SSHD = Path("/usr/sbin/sshd")
# What a host without ACL support answers (a file system mounted without them): Ansible then
# cannot share its temporary files with the become user, unless it pipelines.
FAILING_SETFACL = "#!/bin/sh\necho \"setfacl: $*: Operation not supported\" >&2\nexit 1\n"


class SshFleet:
    """OpenSSH's server on a loopback port, and an unprivileged login user with passwordless
    sudo, as a fleet's hosts usually are: `inventory()` names several hosts, all this machine.

    With acl=False, a setfacl that fails comes first on the login user's PATH (sshd's SetEnv),
    as on a host whose file system has no ACLs. The user, its sudoers entry and the server are
    removed on exit.
    """

    def __init__(self, acl: bool = True) -> None:
        self.acl = acl
        self.user = "pgcloud-ssh-%s" % uuid.uuid4().hex[:8]
        self.port = free_port()
        self.work = Path(tempfile.mkdtemp(prefix="pgcloud-sshd-", dir="/tmp"))
        self.key = self.work / "id_ed25519"
        self.sudoers = Path("/etc/sudoers.d") / self.user
        self.log_file = self.work / "sshd.log"
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "SshFleet":
        try:
            self._create_user()
            self._start_server()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _create_user(self) -> None:
        run(["useradd", "--create-home", "--shell", "/bin/sh", self.user])
        # No password, but not locked: sshd refuses keys of a locked account ("!").
        run(["usermod", "-p", "*", self.user])
        self.sudoers.write_text("%s ALL=(ALL:ALL) NOPASSWD: ALL\n" % self.user)
        self.sudoers.chmod(0o440)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)])
        home = Path(pwd.getpwnam(self.user).pw_dir)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        run(["chown", "-R", "%s:" % self.user, str(ssh_dir)])

    def _start_server(self) -> None:
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.work / "host_key")])
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        settings = ["Port %d" % self.port, "ListenAddress 127.0.0.1", "HostKey %s" % (self.work / "host_key"),
                    "PidFile %s" % (self.work / "sshd.pid"), "AllowUsers %s" % self.user,
                    "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
                    # Ansible copies its files by SFTP (scp too is SFTP nowadays).
                    "Subsystem sftp /usr/lib/openssh/sftp-server"]
        if not self.acl:
            bin_dir = self.work / "no-acl-bin"
            bin_dir.mkdir()
            (bin_dir / "setfacl").write_text(FAILING_SETFACL)
            (bin_dir / "setfacl").chmod(0o755)
            self.work.chmod(0o755)
            settings.append("SetEnv PATH=%s:/usr/local/bin:/usr/bin:/bin" % bin_dir)
        config = self.work / "sshd_config"
        config.write_text("\n".join(settings) + "\n")
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_for(self._answers, 30, what="sshd on port %d" % self.port)

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise TestBedError("sshd exited %s:\n%s" % (self.process.returncode, tail(self.log_file)))
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")
        return False

    def host_vars(self, python: Path) -> Dict[str, Any]:
        """How Ansible reaches a host of the fleet, and the host's Python."""
        return {
            "ansible_connection": "ssh",
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": str(python),
        }

    @property
    def control_dir(self) -> Path:
        return self.work / "cp"

    def ansible_env(self) -> Dict[str, str]:
        """Ansible's SSH settings for the fleet: one connection per host and run, reused by its
        tasks (ControlPersist), in a folder of the fleet's own, closed by close()."""
        return {"ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir)}

    def close(self) -> None:
        # The SSH masters Ansible left open, before the user they log in as is removed.
        if self.control_dir.is_dir():
            for socket_path in self.control_dir.iterdir():
                run(["ssh", "-S", str(socket_path), "-O", "exit", "fleet"], check=False, timeout=30)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The user's sessions end a moment after their masters; userdel refuses a user who
        # still runs a process (exit 8). Its home goes with it.
        with contextlib.suppress(TestBedError):
            wait_for(lambda: run(["userdel", "--remove", self.user], check=False).returncode in (0, 6), 20,
                     interval=0.5, what="userdel %s" % self.user)
        with contextlib.suppress(FileNotFoundError):
            self.sudoers.unlink()
        remove_tree(self.work)
