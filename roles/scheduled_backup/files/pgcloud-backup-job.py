# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One scheduled base backup: the pgcloud.backup engine called directly, without Ansible.

Installed by the pgcloud.backup.scheduled_backup role and started by its systemd timer or
cron entry, as the PostgreSQL OS user:

    pgcloud-backup-job.py --config /etc/pgcloud-backup/<job>/config.json

The config (JSON, no secrets) holds the engine's parameters under "storage", "postgres" and
"backup" (the parameter names of the pgcloud.backup modules) and where to report the
outcome. Secrets come from the credentials file it names (KEY=VALUE lines, values optionally
JSON-quoted), readable by the backup user only, so that they never appear in a unit file, a
command line or the journal.

Progress goes to stderr (the journal under systemd, syslog through logger under cron). After
the run, whatever its outcome, the job writes a JSON status file, optionally a node-exporter
textfile with the metrics, and optionally pings a URL (healthchecks.io style: the URL on
success, the URL + "/fail" on failure).

The job holds a lock file (flock) for the whole run, with its pid and start time in it: a run
that finds the lock held skips, unless the holder has run longer than the job's max_runtime,
which is a failure (a stuck run). SIGTERM, SIGINT and SIGHUP (systemctl stop, a shutdown, the
max_runtime bound) stop the backup through the engine's failure path: the server's backup is
stopped, open uploads are aborted and FAILED is recorded.

Exit status (the role's README has the same table):
  0    the backup is DONE
  1    the backup failed, or an earlier run is stuck holding the lock
  2    the job's configuration is unusable (config or credentials file, a parameter the engine
       refuses, a missing library): nothing was written to the store
  75   skipped: another run holds the lock, within max_runtime
  128+N  stopped by signal N (143 for SIGTERM, 130 for SIGINT, 129 for SIGHUP)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

LOG = logging.getLogger("pgcloud-backup-job")

# Credentials file key -> (engine config section, parameter). Environment-style names, so
# that the file reads like the variables the AWS and libpq tools know.
CREDENTIAL_KEYS = {
    "AWS_ACCESS_KEY_ID": ("storage", "aws_access_key"),
    "AWS_SECRET_ACCESS_KEY": ("storage", "aws_secret_key"),
    "AWS_SESSION_TOKEN": ("storage", "aws_session_token"),
    "PGCLOUD_SSE_CUSTOMER_KEY": ("storage", "sse_customer_key"),
    "AZURE_STORAGE_CONNECTION_STRING": ("storage", "azure_storage_connection_string"),
    "AZURE_STORAGE_SAS_TOKEN": ("storage", "azure_storage_sas_token"),
    "AZURE_STORAGE_KEY": ("storage", "azure_storage_key"),
    "PGCLOUD_GCP_SERVICE_ACCOUNT_CONTENTS": ("storage", "gcp_service_account_contents"),
    "PGPASSWORD": ("postgres", "password"),
    "PGCLOUD_PRIMARY_CONNINFO": ("postgres", "primary_conninfo"),
}
REDACTED = "********"
METRIC_PREFIX = "pgcloud_backup"

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
# EX_TEMPFAIL: another run holds the lock; the unit counts it as a success (SuccessExitStatus).
EXIT_LOCKED = 75
# Signals that ask the job to stop: systemctl stop and shutdown (TERM), a terminal (INT, HUP).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Exceptions of the engine that mean its configuration cannot work (exit 2), by class name.
ENGINE_CONFIG_ERRORS = ("ConfigurationError", "MissingDependencyError")
# A stop signal this close to max_runtime is taken for the bound's (systemd and timeout count
# from before the interpreter started).
MAX_RUNTIME_SLACK = 5


class JobConfigError(Exception):
    """The job's own files are missing or malformed (not a backup failure)."""


class JobInterrupted(BaseException):
    """A stop signal, raised in the main thread so that the engine's failure path runs.

    A BaseException, as KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """

    def __init__(self, signum: int, detail: str = "") -> None:
        self.signum = signum
        super().__init__("stopped by %s%s" % (signal.Signals(signum).name, detail))


class StuckRunError(Exception):
    """An earlier run has held the lock for longer than max_runtime."""


def default_library_path() -> str:
    """<install dir>/lib, next to the <install dir>/bin this script is installed in."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")


def read_config(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as error:
        raise JobConfigError("cannot read the job config %s: %s" % (path, error)) from error
    if not isinstance(config, dict) or not isinstance(config.get("storage"), dict):
        raise JobConfigError("the job config %s has no 'storage' section" % path)
    return config


def read_credentials(path: Optional[str]) -> Dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments are skipped; a "..." value is JSON-decoded."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise JobConfigError("cannot read the credentials file %s: %s" % (path, error)) from error
    credentials = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        key = key.strip()
        if not separator or key not in CREDENTIAL_KEYS:
            # The line itself may hold a secret: name the line, never show it.
            raise JobConfigError("line %d of %s is not one of %s=..." % (number, path, "/".join(CREDENTIAL_KEYS)))
        value = value.strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError as error:
                raise JobConfigError("line %d of %s: the quoted value is not valid" % (number, path)) from error
        credentials[key] = value
    return credentials


class Redactor:
    """Replaces every secret value in a text: error messages may quote a connection string.

    `patterns` is the engine's redaction (errors.redact), once the engine can be imported: it
    also hides secrets the job was not given, a conninfo password or the password of a URL.
    """

    def __init__(self, secrets: List[str], patterns: Optional[Callable[[str], str]] = None) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted((value for value in secrets if value), key=len, reverse=True)
        self.patterns = patterns

    def __call__(self, text: Optional[str]) -> Optional[str]:
        if text is None:
            return None
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return self.patterns(text) if self.patterns else text


class RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        return True


def setup_logging(redact: Redactor, level: str) -> None:
    # No timestamp: the journal and syslog stamp every line themselves.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    # boto3 and urllib3 are chatty at INFO and add nothing an operator needs.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Write a file whole or not at all: readers (node-exporter, monitoring) never see half of it."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, staging = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(staging, mode)
        os.replace(staging, path)
    except BaseException:
        try:
            os.unlink(staging)
        except OSError:
            pass
        raise


def write_in_place(path: str, text: str) -> None:
    """Rewrite an existing file in place, for a folder the job may not create files in."""
    with open(path, "r+", encoding="utf-8") as stream:
        stream.write(text)
        stream.truncate()
        stream.flush()
        os.fsync(stream.fileno())


def write_metrics(path: str, text: str) -> None:
    """By rename where the folder lets the job create files, else in the file the role pre-created.

    The role leaves the mode of a textfile folder it did not create alone (other collectors'
    files are there), so the job may only be allowed to write its own file.
    """
    try:
        write_atomically(path, text, 0o644)
    except PermissionError:
        write_in_place(path, text)


def take_lock(path: str) -> Optional[int]:
    """The lock's descriptor, this run's pid and start time written in it; None if another run holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, json.dumps({"pid": os.getpid(), "started": time.time()}).encode())
    return descriptor


def release_lock(descriptor: int) -> None:
    # Emptied first, so that an old start time never outlives its run.
    os.ftruncate(descriptor, 0)
    os.close(descriptor)


def lock_holder(path: str) -> Tuple[float, Optional[int]]:
    """Since when, and by which pid, the lock is held: from its content, else from its mtime.

    The lock file of an older version of the role (flock(1)) is empty: its mtime is the best
    guess there is.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.loads(handle.read() or "null")
    except (OSError, ValueError):
        content = None
    if isinstance(content, dict) and isinstance(content.get("started"), (int, float)):
        return float(content["started"]), content.get("pid")
    try:
        return os.stat(path).st_mtime, None
    except OSError:
        return time.time(), None


def check_lock_holder(path: str, max_runtime: int) -> None:
    """A held lock: a skip while its holder is within max_runtime, a StuckRunError past it."""
    since, pid = lock_holder(path)
    held = time.time() - since
    holder = "pid %s" % pid if pid else "another process"
    if max_runtime and held > max_runtime:
        raise StuckRunError(
            "previous run stuck since %s (%s): it has held %s for %d s, longer than max_runtime (%d s); "
            "stop it (systemctl stop, or kill it) and find out why it hangs"
            % (iso_time(since), holder, path, held, max_runtime))
    LOG.info("skipped: an earlier run (%s) holds %s since %s", holder, path, iso_time(since))


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def previous_status(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            status = json.load(handle)
        return status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        return {}


def archiving_setup(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """What the role recorded when it set WAL archiving up (wal-archiving.json beside the status
    file): whether PostgreSQL must restart for archive_mode to take effect."""
    status_file = (config.get("report") or {}).get("status_file")
    if not status_file:
        return None
    setup = previous_status(os.path.join(os.path.dirname(status_file), "wal-archiving.json"))
    return setup or None


def build_status(config: Dict[str, Any], previous: Dict[str, Any], started: float, finished: float,
                 result: Optional[Dict[str, Any]], error: Optional[str]) -> Dict[str, Any]:
    """The status document: this run, plus the last successful run (kept across failures)."""
    success = error is None
    status = {
        "job": config.get("job_name"),
        "server_name": config["storage"].get("server_name"),
        "destination_url": redact_url(config["storage"].get("destination_url")),
        "host": socket.gethostname(),
        "result": "success" if success else "failure",
        "started_at": iso_time(started),
        "finished_at": iso_time(finished),
        "duration_seconds": round(finished - started, 3),
        "backup_id": (result or {}).get("backup_id"),
        "size_bytes": (result or {}).get("bytes_written") if success else None,
        "error": error,
        "wal_archiving_setup": archiving_setup(config),
    }
    if success:
        status["last_success"] = {key: status[key] for key in ("backup_id", "finished_at", "size_bytes",
                                                               "duration_seconds")}
        status["last_success"]["timestamp"] = finished
    else:
        status["last_success"] = previous.get("last_success")
    return status


def metrics_text(status: Dict[str, Any]) -> str:
    """The node-exporter textfile: one gauge per fact, labelled with job and server."""
    labels = '{job_name="%s",server_name="%s"}' % (
        _label(status.get("job") or ""), _label(status.get("server_name") or ""))
    last_success = status.get("last_success") or {}
    gauges = [
        ("last_success_timestamp_seconds", "Unix time of the end of the last successful base backup.",
         last_success.get("timestamp", 0)),
        ("last_status", "1 if the last scheduled base backup succeeded, 0 if it failed.",
         1 if status["result"] == "success" else 0),
        ("last_duration_seconds", "How long the last scheduled base backup ran, successful or not.",
         status["duration_seconds"]),
        ("last_size_bytes", "Bytes stored by the last successful base backup.", last_success.get("size_bytes") or 0),
        ("last_run_timestamp_seconds", "Unix time of the end of the last scheduled base backup run.",
         _timestamp(status["finished_at"])),
    ]
    lines = []
    for name, help_text, value in gauges:
        metric = "%s_%s" % (METRIC_PREFIX, name)
        lines += ["# HELP %s %s" % (metric, help_text), "# TYPE %s gauge" % metric, "%s%s %s" % (metric, labels, value)]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def redact_url(url: Optional[str]) -> Optional[str]:
    """A URL fit to echo (as the engine's errors.redact_url): no user, password or query."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = (REDACTED + "@" + parts.netloc.rsplit("@", 1)[1]) if "@" in parts.netloc else parts.netloc
    return parts._replace(netloc=netloc, query=REDACTED if parts.query else "").geturl()


def url_host(url: str) -> str:
    """The host of a URL, the one part of a ping URL that may be logged (the rest is a token)."""
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(not a URL)"


def ping(url: str, success: bool, timeout: float) -> None:
    """healthchecks.io style: GET the URL on success, URL + /fail on failure. Never raises.

    The URL is a secret (whoever has it can report for this job): only its host is logged.
    """
    target = url.rstrip("/") + ("" if success else "/fail")
    kind = "success" if success else "failure"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # nosec: the operator's own URL
            LOG.info("pinged %s (%s): HTTP %s", url_host(url), kind, response.status)
    except (urllib.error.URLError, OSError, ValueError) as error:
        LOG.warning("could not ping %s (%s): %s", url_host(url), kind, str(error).replace(url.rstrip("/"), REDACTED))


def report(config: Dict[str, Any], status: Dict[str, Any]) -> None:
    """Status file, metrics, ping: each is tried even when another one fails."""
    outputs = config.get("report") or {}
    status_file = outputs.get("status_file")
    if status_file:
        try:
            write_atomically(status_file, json.dumps(status, indent=2, sort_keys=True) + "\n", 0o640)
        except OSError as error:
            LOG.error("could not write the status file %s: %s", status_file, error)
    textfile = outputs.get("textfile")
    if textfile:
        try:
            write_metrics(textfile, metrics_text(status))
        except OSError as error:
            LOG.error("could not write the metrics file %s: %s", textfile, error)
    if outputs.get("ping_url"):
        ping(outputs["ping_url"], status["result"] == "success", float(outputs.get("ping_timeout") or 10))


def run_backup(config: Dict[str, Any], credentials: Dict[str, str]) -> Dict[str, Any]:
    """The engine's take_base_backup with the config's parameters and the credentials."""
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import config as engine_config
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import operations

    sections = {name: dict(config.get(name) or {}) for name in ("storage", "postgres", "backup")}
    for key, value in credentials.items():
        section, parameter = CREDENTIAL_KEYS[key]
        sections[section][parameter] = value
    storage = engine_config.from_params(engine_config.StorageConfig, sections["storage"])
    postgres = engine_config.from_params(engine_config.PostgresConfig, sections["postgres"])
    backup = engine_config.from_params(engine_config.BackupConfig, sections["backup"])
    return operations.take_base_backup(storage, postgres, backup)


def engine_redaction(library: str) -> Optional[Callable[[str], str]]:
    """The engine's errors.redact, or None if the engine cannot be imported (the run then fails)."""
    try:
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import redact
    except ImportError:
        LOG.warning("no pgcloud.backup engine in %s", library)
        return None
    return redact


def exit_code_of(failure: BaseException) -> int:
    """128 + N when signal N stopped the backup, 2 when the engine refused its configuration, else 1."""
    cause: Optional[BaseException] = failure
    while cause is not None:
        if isinstance(cause, JobInterrupted):
            return 128 + cause.signum
        cause = cause.__cause__ or cause.__context__
    if isinstance(failure, ImportError) or type(failure).__name__ in ENGINE_CONFIG_ERRORS:
        return EXIT_CONFIG
    return EXIT_FAILED


def handle_stop_signals(started: float, max_runtime: int) -> None:
    """Turn the first stop signal into JobInterrupted in the main thread; ignore the later ones.

    The engine's failure path (pg_backup_stop, aborting uploads, FAILED) then runs whole: a
    second signal would cut it short, and systemd's own SIGKILL follows if it hangs.
    """

    def stop(signum: int, _frame: Any) -> None:
        ignore_stop_signals()
        elapsed = time.time() - started
        # The unit's TimeoutStartSec= (cron: timeout) is max_runtime: say so, not just "SIGTERM".
        detail = " after %d s, at the job's max_runtime (%d s)" % (elapsed, max_runtime) \
            if max_runtime and elapsed >= max_runtime - MAX_RUNTIME_SLACK else " after %d s" % elapsed
        raise JobInterrupted(signum, detail)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)


def ignore_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def attempt_backup(config: Dict[str, Any], credentials: Dict[str, str], redact: Redactor,
                   started: float) -> Tuple[Optional[Dict[str, Any]], Optional[str], int]:
    """(result, redacted error or None, exit status) of one backup, stop signals handled."""
    handle_stop_signals(started, int(config.get("max_runtime") or 0))
    try:
        try:
            result = run_backup(config, credentials)
        finally:
            # The outcome is reported whole, whatever arrives now.
            ignore_stop_signals()
    except (Exception, JobInterrupted) as failure:  # pylint: disable=broad-except  # every failure is reported
        # A backup that got as far as pg_backup_start has an id (recorded FAILED in the store).
        return ({"backup_id": getattr(failure, "backup_id", None)}, redact(str(failure) or type(failure).__name__),
                exit_code_of(failure))
    return result, None, EXIT_DONE


def run_and_report(config: Dict[str, Any], credentials: Dict[str, str], redact: Redactor) -> int:
    status_file = (config.get("report") or {}).get("status_file")
    previous = previous_status(status_file) if status_file else {}
    storage = config["storage"]
    LOG.info("base backup of %s to %s started", storage.get("server_name"), redact_url(storage.get("destination_url")))
    started = time.time()
    result, error, code = attempt_backup(config, credentials, redact, started)
    finished = time.time()
    status = build_status(config, previous, started, finished, result, error)
    if error is None:
        LOG.info("base backup %s DONE in %.1fs, %s bytes stored", status["backup_id"], status["duration_seconds"],
                 status["size_bytes"])
    else:
        LOG.error("base backup FAILED after %.1fs: %s", status["duration_seconds"], error)
    report(config, status)
    return code


def report_stuck(config: Dict[str, Any], error: StuckRunError) -> int:
    """A stuck earlier run is this run's failure: in the status file, the metrics and the ping."""
    status_file = (config.get("report") or {}).get("status_file")
    previous = previous_status(status_file) if status_file else {}
    now = time.time()
    LOG.error("%s", error)
    report(config, build_status(config, previous, now, now, None, str(error)))
    return EXIT_FAILED


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Take one scheduled base backup with the pgcloud.backup engine.")
    parser.add_argument("--config", required=True, help="the job's JSON config")
    parser.add_argument("--library", default=default_library_path(),
                        help="the folder that holds ansible_collections/pgcloud/backup (default: %(default)s)")
    arguments = parser.parse_args(argv)
    try:
        config = read_config(arguments.config)
        credentials = read_credentials(config.get("credentials_file"))
    except JobConfigError as error:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        LOG.error("%s", error)
        return EXIT_CONFIG
    redact = Redactor(list(credentials.values()) + [(config.get("report") or {}).get("ping_url") or ""])
    setup_logging(redact, config.get("log_level", "INFO"))
    sys.path.insert(0, arguments.library)
    redact.patterns = engine_redaction(arguments.library)
    lock_file = config.get("lock_file")
    lock = None
    if lock_file:
        try:
            lock = take_lock(lock_file)
        except OSError as error:
            LOG.error("cannot open the lock file %s: %s", lock_file, error)
            return EXIT_CONFIG
        if lock is None:
            try:
                check_lock_holder(lock_file, int(config.get("max_runtime") or 0))
            except StuckRunError as stuck:
                return report_stuck(config, stuck)
            return EXIT_LOCKED
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        return run_and_report(config, credentials, redact)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if lock is not None:
            release_lock(lock)


def exit_now(code: int) -> None:
    """Exit with `code`; after a stop signal without waiting for the backup's threads.

    An archive builder of the interrupted backup may still wait for an upload slot that will
    never come back; the outcome is recorded, and systemd would otherwise SIGKILL the job.
    """
    if code < 128:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
