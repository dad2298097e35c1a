# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`pgcloud-backup`, the command on the database host, over the engine.

    ExecStart=<venv python> /opt/pgcloud-backup-job/bin/pgcloud-backup --config /etc/pgcloud-backup/NAME/config.json backup

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
  delete       0 done (its result, as backup_delete's, printed as JSON); 1 the store failed;
               2 a parameter is refused (no policy, a bad one, an unknown backup).
  restore      0 restored (its result as JSON on stdout); 1 the restore failed; 2 an option
               or the job's configuration is unusable (see restore/command.py).
  backup       as the scheduled job (host/job.py): 0 DONE, 1 failed, 2 configuration, 75 skipped
               (another run holds the lock), 128+N stopped by signal N.
  check        0 every check passed; 1 one failed (the findings on stdout, as text or --json);
               2 the job's configuration is unusable.

The fast path of each (a file stored or prefetched by an earlier call) imports no SDK.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any, Dict, List, Optional

from . import layout
from .errors import PgCloudError
from .host_config import (JobConfigError, Redactor, config_path, engine_sections, read_config, read_credentials,
                          setup_logging)
from .wal.settings import WalSettings, wal_settings
from .wal.spool import ArchiveState, RestoreSpool, fast_path, target_id, wait_for_worker, worker_running

LOG = logging.getLogger("pgcloud-backup")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_FOUND = 1
EXIT_CONFIG = 2
EXIT_STORE_ERROR = 255
WORKER_START_SECONDS = 60.0


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
    delete = commands.add_parser("delete", help="apply the job's retention policy (or delete one backup); "
                                                "prints what was deleted as JSON")
    which = delete.add_mutually_exclusive_group()
    which.add_argument("--backup-id", help="delete this backup (id, name, latest, oldest, last-failed) instead")
    which.add_argument("--retention-policy", help="apply this policy instead of the job's")
    delete.add_argument("--minimum-redundancy", type=int, help="instead of the job's minimum_redundancy")
    delete.add_argument("--dry-run", action="store_true", help="delete nothing, abort nothing: print what would go")
    from .restore.command import add_restore_parser

    add_restore_parser(commands)
    commands.add_parser("backup", help="take one base backup as the scheduled job does (lock, status file, "
                                       "metrics, ping; exit status as in the role's README)")
    check = commands.add_parser("check", help="check the store, the server and that WAL reaches the store")
    check.add_argument("--wal", action=argparse.BooleanOptionalAction, default=None,
                       help="check WAL archiving (default: where archive_mode is on)")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    setup = commands.add_parser("archiving", help="set the server's archive_mode and archive_command (JSON on stdout)")
    setup.add_argument("action", choices=("enable", "disable"))
    setup.add_argument("--archive-command", help="enable: the archive_command to set")
    setup.add_argument("--replace", action="store_true", help="enable: replace another archive_command")
    setup.add_argument("--record", help="disable: the JSON record of what enable found, to put back")
    setup.add_argument("--check", action="store_true", help="report what would change, change nothing")
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


def delete(arguments: argparse.Namespace, config: Dict[str, Any]) -> int:
    """`delete`: backup_delete's result as JSON on stdout; 2 for a refused parameter, 1 for a failure."""
    import json

    from .errors import ConfigurationError
    from .retention.scheduled import run_retention

    try:
        result = run_retention(config, _prepare(config), arguments.backup_id, arguments.retention_policy,
                               arguments.minimum_redundancy, check_mode=arguments.dry_run)
    except ConfigurationError as error:
        LOG.error("delete: %s", error)
        return EXIT_CONFIG
    except PgCloudError as error:
        LOG.error("delete failed: %s", error)
        return EXIT_FAILED
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return EXIT_OK


def library_root() -> str:
    """The folder that holds ansible_collections/ (this file is .../pgcloud/backup/plugins/module_utils/engine/cli.py)."""
    root = os.path.abspath(__file__)
    for _level in range(7):
        root = os.path.dirname(root)
    return root


def host_restore(arguments: argparse.Namespace, config: Dict[str, Any], config_file: str) -> int:
    """`restore`: the job's store and credentials, the restore's options from the flags."""
    from .restore.command import run_restore

    credentials = _prepare(config)
    storage = engine_sections(config, credentials)["storage"]
    install_dir = os.path.dirname(library_root())
    return run_restore(arguments, config_file, storage, install_dir, Redactor(list(credentials.values())))


def check(config: Dict[str, Any], wal: Optional[bool], as_json: bool) -> int:
    """`pgcloud-backup check`: the check module's findings on stdout; 0 when all pass, 1 if not."""
    from .config import PostgresConfig, StorageConfig, from_params
    from .host.checks import check_text
    from .operations import check_destination

    credentials = _prepare(config)
    sections = engine_sections(config, credentials)
    try:
        report = check_destination(from_params(StorageConfig, sections["storage"]),
                                   from_params(PostgresConfig, sections["postgres"]), wal)
    except PgCloudError as error:
        LOG.error("%s", error)
        return EXIT_CONFIG
    redact = Redactor(list(credentials.values()))
    sys.stdout.write("%s\n" % redact(json.dumps(report, indent=2, sort_keys=True) if as_json else check_text(report)))
    return EXIT_OK if report["ok"] else EXIT_FAILED


def exit_now(code: int) -> None:
    """sys.exit(code); after a stop signal, without waiting for threads (see host/job.py)."""
    from .host.job import exit_now as exit_job

    exit_job(code)


def archiving(arguments: argparse.Namespace, config: Dict[str, Any]) -> int:
    """`archiving enable|disable`: the outcome as one JSON document on stdout (wal/archiving.py)."""
    import json

    from .config import PostgresConfig, from_params
    from .errors import redact
    from .wal import archiving as server_archiving

    credentials: Dict[str, str] = {}
    try:
        credentials = _prepare(config)
        postgres = from_params(PostgresConfig, engine_sections(config, credentials)["postgres"])
        if arguments.action == "enable":
            if not arguments.archive_command:
                raise JobConfigError("archiving enable needs --archive-command")
            result = server_archiving.enable(postgres, arguments.archive_command, arguments.replace, arguments.check)
        else:
            with open(arguments.record or "", encoding="utf-8") as handle:
                record = json.load(handle)
            result = server_archiving.disable(postgres, record, arguments.check)
    except (PgCloudError, OSError, ValueError) as error:
        # A foreign archive_command quoted in the message may hold a password or a URL's user information.
        message = redact(str(error), credentials.values())
        LOG.error("archiving %s: %s", arguments.action, message)
        sys.stdout.write(json.dumps({"failed": True, "msg": message}) + "\n")
        return EXIT_FAILED
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if fast_path(argv):
        return EXIT_OK
    arguments = parser().parse_args(argv)
    setup_logging(Redactor([]))
    store_error = getattr(arguments, "store_error_exit_code", EXIT_STORE_ERROR)
    config_file = config_path(arguments.job, arguments.config)
    if arguments.command == "backup":
        from .host.job import run_job

        # It reports every outcome itself (status file, metrics, exit status).
        return run_job(config_file)
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
        if arguments.command == "delete":
            return delete(arguments, config)
        if arguments.command == "restore":
            return host_restore(arguments, config, config_file)
        if arguments.command == "check":
            return check(config, arguments.wal, arguments.json)
        if arguments.command == "archiving":
            return archiving(arguments, config)
        return wal_restore(arguments.name, arguments.destination, config, store_error)
    except Exception as error:  # pylint: disable=broad-except  # PostgreSQL needs an exit status, not a traceback
        LOG.exception("unexpected error: %s", error)
        return store_error if arguments.command == "wal-restore" else EXIT_FAILED
