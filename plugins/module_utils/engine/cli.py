# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`pgcloud-backup`, the command on the database host, over the engine.

    archive_command = '/opt/pgcloud-backup-job/bin/pgcloud-backup wal-archive %p'
    restore_command = '/opt/pgcloud-backup-job/bin/pgcloud-backup wal-restore %f %p'

It reads the job's files that the scheduled_backup role writes (host_config.py): `--job NAME`
(config.json and credentials.env under /etc/pgcloud-backup/NAME), or `--config FILE`. It logs
to stderr (PostgreSQL's log), with every secret redacted.

Exit status, as PostgreSQL reads it:
  wal-archive  0 the file is safe in the store; 1 it is not (PostgreSQL retries);
               2 the job's configuration or the file's name is unusable (retried too).
  wal-restore  0 the file is in place; 1 the store does not have it (end of WAL);
               255 (or --store-error-exit-code) the store failed or the configuration is
               unusable: above 125, PostgreSQL aborts recovery instead of taking it for the
               end of WAL and ending recovery early.

The fast path of each (a file stored or prefetched by an earlier call) imports no SDK.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any, Dict, List, Optional

from . import layout
from .errors import PgCloudError
from .host_config import JobConfigError, Redactor, config_path, engine_sections, read_config, read_credentials
from .wal.settings import WalSettings, wal_settings
from .wal.spool import ArchiveState, RestoreSpool, fast_path, target_id, wait_for_worker, worker_running

LOG = logging.getLogger("pgcloud-backup")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_FOUND = 1
EXIT_CONFIG = 2
EXIT_STORE_ERROR = 255
WORKER_START_SECONDS = 60.0


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        return True


def setup_logging(redact: Redactor, level: Any = "INFO") -> None:
    # No timestamp: PostgreSQL's log and the journal stamp every line themselves.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s pgcloud-backup: %(message)s"))
    handler.addFilter(_RedactingFilter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "azure", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pgcloud-backup", description="pgcloud.backup on the database host.")
    source = top.add_mutually_exclusive_group()
    source.add_argument("--job", help="the job whose /etc/pgcloud-backup/JOB/config.json to read (default: pgcloud-backup)")
    source.add_argument("--config", help="the job's config.json, wherever it is")
    commands = top.add_subparsers(dest="command", required=True)
    archive = commands.add_parser("wal-archive", help="store one WAL file (archive_command ... wal-archive %%p)")
    archive.add_argument("path", help="the WAL file, as PostgreSQL's %%p gives it")
    # The archive worker in the foreground; wal-archive forks it instead (see start_worker).
    worker = commands.add_parser("wal-archive-worker")
    worker.add_argument("path")
    restore = commands.add_parser("wal-restore", help="fetch one WAL file (restore_command ... wal-restore %%f %%p)")
    restore.add_argument("name", help="the WAL file's name (%%f)")
    restore.add_argument("destination", help="where to write it (%%p)")
    restore.add_argument("--store-error-exit-code", type=int, default=EXIT_STORE_ERROR,
                         help="exit status when the store fails (default %(default)s: above 125, PostgreSQL "
                              "aborts recovery rather than end it early)")
    return top


def open_store(config: Dict[str, Any], credentials: Dict[str, str], settings: WalSettings) -> Any:
    """The job's store, its SDK imported only now (the fast paths never get here)."""
    from .config import StorageConfig, from_params
    from .storage.factory import open_store as open_provider_store

    storage = engine_sections(config, credentials)["storage"]
    # One connection per file of a batch.
    storage["jobs"] = max(int(storage.get("jobs") or 1), settings.archive_parallel, settings.restore_prefetch)
    return open_provider_store(from_params(StorageConfig, storage))


def _prepare(config: Dict[str, Any]) -> Dict[str, str]:
    credentials = read_credentials(config.get("credentials_file"))
    setup_logging(Redactor(list(credentials.values())), config.get("log_level", "INFO"))
    return credentials


def start_worker(path: str, config: Dict[str, Any], state: ArchiveState) -> None:
    """Start the archive worker of this destination (wal/worker.py), unless one runs: a fork of
    this call, which has the engine loaded already (a new interpreter would load it again)."""
    status_folder = os.path.join(os.path.dirname(os.path.abspath(path)), "archive_status")
    if worker_running(state) or not os.path.isdir(status_folder):
        return
    sys.stderr.flush()
    worker = os.fork()
    if worker == 0:
        _run_forked_worker(os.path.abspath(path), config)
    # Until it holds its lock (or has left): the caller then waits for its file's marker.
    started = time.monotonic()
    while not worker_running(state) and time.monotonic() - started < WORKER_START_SECONDS:
        if os.waitpid(worker, os.WNOHANG)[0] == worker:
            return
        time.sleep(0.01)


def _run_forked_worker(path: str, config: Dict[str, Any]) -> None:
    """The forked worker's life; it never returns into the call's code.

    Its own session: PostgreSQL waits for the call only, and a signal to the call's process group
    (a shutdown) does not stop an upload half way; the worker leaves when idle. It keeps stderr
    (PostgreSQL's log) and nothing else of the call's files.
    """
    code = EXIT_FAILED
    try:
        try:
            os.setsid()
            _keep_stderr_only()
            code = wal_archive_worker(path, config)
        except BaseException as error:  # pylint: disable=broad-except  # the fork must end here, whatever happens
            LOG.warning("the archive worker stopped: %s", error)
        sys.stderr.flush()
    finally:
        os._exit(code)  # pylint: disable=protected-access  # no cleanup of the call's (the parent's) state


def _keep_stderr_only() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    try:
        inherited = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        inherited = [null]
    for fd in inherited:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass


def archive_here(state: ArchiveState, path: str, config: Dict[str, Any], settings: WalSettings) -> None:
    """Store path in this process, claimed; its marker tells the worker it is done."""
    from .wal.archive import store_wal
    from .wal.spool import file_identity

    name = os.path.basename(path)
    claimed = state.claim(name)
    try:
        identity = file_identity(path)
        store = open_store(config, _prepare(config), settings)
        LOG.info("%s %s", name, store_wal(store, path, settings.compression))
        # For the worker, which then leaves it alone; it prunes the marker once the file is done.
        state.record(path, identity)
    finally:
        if claimed:
            state.release(name)


def wal_archive(path: str, config: Dict[str, Any]) -> int:
    try:
        layout.parse_wal_name(os.path.basename(path))
        settings = wal_settings(config)
    except (ValueError, PgCloudError) as error:
        LOG.error("wal-archive %s: %s", path, error)
        return EXIT_CONFIG
    state = ArchiveState(settings.spool_dir, target_id(config["storage"]))
    if state.take(path):
        return EXIT_OK
    if settings.archive_parallel > 1:
        start_worker(path, config, state)
    if wait_for_worker(state, path):
        LOG.debug("%s archived by the archive worker", os.path.basename(path))
        return EXIT_OK
    try:
        archive_here(state, path, config, settings)
    except (PgCloudError, OSError) as error:
        LOG.error("%s is not archived: %s", os.path.basename(path), error)
        return EXIT_FAILED
    return EXIT_OK


def wal_archive_worker(path: str, config: Dict[str, Any]) -> int:
    from .wal.worker import run_worker

    try:
        settings = wal_settings(config)
        state = ArchiveState(settings.spool_dir, target_id(config["storage"]))
        credentials = _prepare(config)
        run_worker(lambda: open_store(config, credentials, settings), path, settings.compression,
                   settings.archive_parallel, state)
    except (PgCloudError, OSError) as error:
        LOG.warning("the archive worker stopped: %s", error)
        return EXIT_FAILED
    return EXIT_OK


def wal_restore(name: str, destination: str, config: Dict[str, Any], error_code: int) -> int:
    try:
        layout.parse_wal_name(name)
        settings = wal_settings(config)
    except (ValueError, PgCloudError) as error:
        LOG.error("wal-restore %s: %s", name, error)
        return error_code
    spool = RestoreSpool(settings.spool_dir, target_id(config["storage"]))
    if spool.deliver(name, destination):
        LOG.debug("%s restored from the spool", name)
        return EXIT_OK
    from .wal.restore import restore_wal

    try:
        credentials = _prepare(config)
        store = open_store(config, credentials, settings)
        found = restore_wal(store, name, destination, settings.restore_prefetch, spool)
    except (PgCloudError, OSError) as error:
        LOG.error("%s is not restored: %s", name, error)
        return error_code
    if not found:
        LOG.info("%s is not in the archive", name)
        return EXIT_NOT_FOUND
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if fast_path(argv):
        return EXIT_OK
    arguments = parser().parse_args(argv)
    setup_logging(Redactor([]))
    store_error = getattr(arguments, "store_error_exit_code", EXIT_STORE_ERROR)
    config_file = config_path(arguments.job, arguments.config)
    try:
        config = read_config(config_file)
    except JobConfigError as error:
        LOG.error("%s", error)
        return store_error if arguments.command == "wal-restore" else EXIT_CONFIG
    try:
        if arguments.command == "wal-archive":
            return wal_archive(arguments.path, config)
        if arguments.command == "wal-archive-worker":
            return wal_archive_worker(arguments.path, config)
        return wal_restore(arguments.name, arguments.destination, config, store_error)
    except Exception as error:  # pylint: disable=broad-except  # PostgreSQL needs an exit status, not a traceback
        LOG.exception("unexpected error: %s", error)
        return store_error if arguments.command == "wal-restore" else EXIT_FAILED
