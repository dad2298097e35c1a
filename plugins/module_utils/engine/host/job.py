# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One scheduled base backup, `pgcloud-backup backup`: the engine called directly, without Ansible.

The scheduled_backup role's systemd unit or cron entry runs it as the PostgreSQL OS user:

    <install dir>/bin/pgcloud-backup --config /etc/pgcloud-backup/<job>/config.json backup

The config (JSON, no secrets; host_config.py reads it) holds the engine's parameters under
"storage", "postgres" and "backup" and where to report the outcome; secrets come from the
credentials file it names, so that they never appear in a unit file, a command line or the
journal. Progress goes to stderr (the journal, or syslog through logger under cron). After the
run, whatever its outcome, the job reads the WAL archiver's state and reports (host/report.py).

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

import fcntl
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Dict, Optional, Tuple

from ..errors import ConfigurationError, MissingDependencyError, redact_url
from ..host_config import JobConfigError, Redactor, engine_sections, read_config, read_credentials, setup_logging
from .report import build_status, iso_time, previous_status, report

LOG = logging.getLogger("pgcloud-backup")

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
# EX_TEMPFAIL: another run holds the lock; the unit counts it as a success (SuccessExitStatus).
EXIT_LOCKED = 75
# Signals that ask the job to stop: systemctl stop and shutdown (TERM), a terminal (INT, HUP).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# A stop signal this close to max_runtime is taken for the bound's (systemd and timeout count
# from before the interpreter started).
MAX_RUNTIME_SLACK = 5


class JobInterrupted(BaseException):
    """A stop signal, raised in the main thread so that the engine's failure path runs.

    A BaseException, as KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """

    def __init__(self, signum: int, detail: str = "") -> None:
        self.signum = signum
        super().__init__("stopped by %s%s" % (signal.Signals(signum).name, detail))


class StuckRunError(Exception):
    """An earlier run has held the lock for longer than max_runtime."""


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


def run_backup(config: Dict[str, Any], credentials: Dict[str, str]) -> Dict[str, Any]:
    """The engine's take_base_backup with the config's parameters and the credentials."""
    from .. import config as engine_config
    from .. import operations

    sections = engine_sections(config, credentials)
    storage = engine_config.from_params(engine_config.StorageConfig, sections["storage"])
    postgres = engine_config.from_params(engine_config.PostgresConfig, sections["postgres"])
    backup = engine_config.from_params(engine_config.BackupConfig, sections["backup"])
    return operations.take_base_backup(storage, postgres, backup)


def read_wal_health(config: Dict[str, Any], credentials: Dict[str, str]) -> Dict[str, Any]:
    """The WAL archiver's state (wal/health.py) for the status file; never raises."""
    try:
        from .. import config as engine_config
        from ..wal.health import wal_health

        postgres = engine_config.from_params(engine_config.PostgresConfig,
                                             engine_sections(config, credentials)["postgres"])
        return wal_health(postgres)
    except Exception as error:  # pylint: disable=broad-except  # monitoring must not fail the backup
        LOG.warning("could not read the WAL archiver's state: %s", error)
        return {"error": str(error) or type(error).__name__}


def exit_code_of(failure: BaseException) -> int:
    """128 + N when signal N stopped the backup, 2 when the engine refused its configuration, else 1."""
    cause: Optional[BaseException] = failure
    while cause is not None:
        if isinstance(cause, JobInterrupted):
            return 128 + cause.signum
        cause = cause.__cause__ or cause.__context__
    if isinstance(failure, (ImportError, ConfigurationError, MissingDependencyError)):
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


def after_successful_backup(config: Dict[str, Any], credentials: Dict[str, str], redact: Redactor) -> Dict[str, Any]:
    """The steps that follow a DONE backup, in order, as sections of the status file. A step's
    failure is in its section and the log; it does not turn the DONE backup into a failure."""
    from ..retention import scheduled

    return {"retention": scheduled.apply_retention(config, credentials, redact)}


def run_and_report(config: Dict[str, Any], credentials: Dict[str, str], redact: Redactor) -> int:
    status_file = (config.get("report") or {}).get("status_file")
    previous = previous_status(status_file) if status_file else {}
    storage = config["storage"]
    LOG.info("base backup of %s to %s started", storage.get("server_name"), redact_url(storage.get("destination_url")))
    started = time.time()
    result, error, code = attempt_backup(config, credentials, redact, started)
    finished = time.time()
    sections: Dict[str, Any] = {}
    if error is None:
        LOG.info("base backup %s DONE in %.1fs, %s bytes stored", (result or {}).get("backup_id"),
                 finished - started, (result or {}).get("bytes_written"))
        sections = after_successful_backup(config, credentials, redact)
    else:
        LOG.error("base backup FAILED after %.1fs: %s", finished - started, error)
    status = build_status(config, previous, started, finished, result, error, read_wal_health(config, credentials))
    status.update(sections)
    report(config, status)
    return code


def report_stuck(config: Dict[str, Any], credentials: Dict[str, str], error: StuckRunError) -> int:
    """A stuck earlier run is this run's failure: in the status file, the metrics and the ping."""
    status_file = (config.get("report") or {}).get("status_file")
    previous = previous_status(status_file) if status_file else {}
    now = time.time()
    LOG.error("%s", error)
    report(config, build_status(config, previous, now, now, None, str(error), read_wal_health(config, credentials)))
    return EXIT_FAILED


def locked_run(config: Dict[str, Any], credentials: Dict[str, str], redact: Redactor) -> int:
    """run_and_report under the job's lock file, if it has one."""
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
                return report_stuck(config, credentials, stuck)
            return EXIT_LOCKED
    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    try:
        return run_and_report(config, credentials, redact)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if lock is not None:
            release_lock(lock)


def run_job(config_file: str) -> int:
    """`pgcloud-backup backup`: one scheduled base backup of the job whose config.json is config_file."""
    try:
        config = read_config(config_file)
        credentials = read_credentials(config.get("credentials_file"))
    except JobConfigError as error:
        setup_logging(Redactor([]))
        LOG.error("%s", error)
        return EXIT_CONFIG
    redact = Redactor(list(credentials.values()) + [(config.get("report") or {}).get("ping_url") or ""])
    setup_logging(redact, config.get("log_level", "INFO"))
    return locked_run(config, credentials, redact)


def exit_now(code: int) -> None:
    """Exit with `code`; after a stop signal without waiting for the backup's threads.

    An archive builder of the interrupted backup may still wait for an upload slot that will
    never come back; the outcome is recorded, and systemd would otherwise SIGKILL the job.
    """
    if code < 128:
        sys.exit(code)  # pylint: disable=ansible-bad-function  # the host command, not a module
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
