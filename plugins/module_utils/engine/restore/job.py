# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One restore, from the backup's resolution to a data directory ready to recover.

    resolve the backup (catalog) -> check it, the targets, the folders -> archives read as one
    stream each (download), decoded and extracted (extract), `jobs` at a time -> pg_tblspc links,
    pg_wal -> pg_verifybackup when the backup has a manifest -> recovery settings (recovery)

Everything that can be refused is refused before the first folder is touched. Once writing
has begun, any failure removes what the restore wrote: the folders it created are deleted,
the ones that existed are emptied again.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import layout
from ..archive.compression import EXTENSIONS, compression_of_extension, open_decoded
from ..catalog import Catalog, check_objects
from ..config import StorageConfig
from ..errors import ConfigurationError, PgCloudError
from ..storage.base import ObjectStore
from ..storage.factory import open_store
from .download import FetchProgress, PrefetchReader
from .extract import Extracted, Folder, RestoreError, extract_stream, finish_directories
from .options import AUTO_BACKUP_ID, RestoreConfig, lsn_value, parse_target_time
from .recovery import recovery_settings, restore_command, signal_file, write_recovery
from .snapshot import check_snapshot_request, recover_snapshot_backup
from .verify import verify_copy

LOG = logging.getLogger("pgcloud.backup")
# Signal files came with PostgreSQL 12; before, recovery settings lived in recovery.conf.
FIRST_VERSION_WITH_SIGNAL_FILES = 120000


@dataclass
class Archive:
    key: str
    group: str
    size: int
    compression: Optional[str]


@dataclass
class Destination:
    """A folder the restore writes: PGDATA (`data`) or one tablespace's location."""

    group: str
    path: str
    name: Optional[str] = None
    existed: bool = False


class RestoreJob:
    def __init__(self, storage: StorageConfig, options: RestoreConfig) -> None:
        self.storage = storage
        self.options = options
        self.store: Optional[ObjectStore] = None

    def run(self, check_mode: bool = False) -> Dict[str, Any]:
        started = time.monotonic()
        # Local files only (the jobs' configs): refused before the store is asked anything.
        command = restore_command(self.storage, self.options)
        self.store = open_store(self.storage)
        catalog = Catalog(self.store)
        fields = choose_backup(catalog, self.options, self.storage.server_name)
        check_backup(fields, self.options)
        if fields.get("snapshots_info"):
            return recover_snapshot_backup(self.store, self.storage, self.options, fields,
                                           recovery_settings(self.options, command), check_mode)
        archives = backup_archives(catalog, fields)
        destinations = plan_destinations(fields, self.options)
        for destination in destinations:
            check_folder(destination, self.options.force)
        settings = recovery_settings(self.options, command)
        result = self._result(fields, archives, destinations, settings)
        if check_mode:
            result.update(changed=True, msg="would restore backup %s (%d archives, %s stored) into %s" % (
                fields["backup_id"], len(archives), _mib(result["bytes_downloaded"]), self.options.target_directory))
            return result
        extracted, verified = self._write(fields, archives, destinations, settings)
        result.update(changed=True, files_written=extracted.files, bytes_written=extracted.bytes,
                      verified=verified["verified"], verify_message=verified["message"],
                      elapsed_seconds=round(time.monotonic() - started, 3))
        result["msg"] = "restored backup %s into %s: %d files, %s written, %s fetched, %.1f s%s" % (
            fields["backup_id"], self.options.target_directory, extracted.files, _mib(extracted.bytes),
            _mib(result["bytes_downloaded"]), result["elapsed_seconds"],
            ", verified by pg_verifybackup" if verified["verified"] else "")
        return result

    def _result(self, fields: Dict[str, Any], archives: List[Archive], destinations: List[Destination],
                settings: Dict[str, str]) -> Dict[str, Any]:
        return {
            "backup_id": fields["backup_id"],
            "backup_name": fields.get("backup_name"),
            "begin_time": layout.describe_time(fields.get("begin_time")),
            "end_time": layout.describe_time(fields.get("end_time")),
            "target_directory": self.options.target_directory,
            "tablespaces": [{"name": item.name, "oid": int(item.group), "location": item.path}
                            for item in destinations if item.group != layout.DATA_GROUP],
            "archives": [{"key": item.key, "size": item.size} for item in archives],
            "bytes_downloaded": sum(item.size for item in archives),
            "bytes_written": 0,
            "files_written": 0,
            "written_files": [],
            "verified": None,
            "verify_message": None,
            "recovery_settings": settings,
            "signal_file": signal_file(self.options),
            "elapsed_seconds": 0.0,
        }

    def _write(self, fields: Dict[str, Any], archives: List[Archive], destinations: List[Destination],
               settings: Dict[str, str]) -> Tuple[Extracted, Dict[str, Any]]:
        folders: Dict[str, Folder] = {}
        try:
            for destination in destinations:
                prepare_folder(destination)
                folders[destination.group] = Folder(destination.path)
            extracted = self._extract_all(archives, folders, FetchProgress(fields["backup_id"],
                                                                           sum(item.size for item in archives)))
            for folder in folders.values():
                finish_directories(folder)
            pgdata = self.options.target_directory
            link_tablespaces(pgdata, destinations, fields)
            _make_wal_folder(pgdata)
            verified = verify_copy(pgdata, fields.get("version"), self.options.verify)
            write_recovery(pgdata, self.options, settings, fields["backup_id"])
        except BaseException as error:
            problems = [problem for destination in destinations for problem in remove_written(destination)]
            if problems:
                LOG.error("could not remove what the failed restore wrote: %s", "; ".join(problems))
            if isinstance(error, (PgCloudError, KeyboardInterrupt, SystemExit)):
                raise
            raise RestoreError("restore of backup %s failed: %s: %s; what it wrote has been removed"
                               % (fields["backup_id"], type(error).__name__, error)) from error
        return extracted, verified

    def _extract_all(self, archives: List[Archive], folders: Dict[str, Folder], progress: FetchProgress) -> Extracted:
        workers = max(1, min(self.storage.jobs, len(archives)))
        stop = threading.Event()
        total = Extracted()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pgcloud-get") as downloads, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pgcloud-extract") as extractors:
            futures = [extractors.submit(self._restore_archive, archive, folders[archive.group], downloads, stop,
                                         progress) for archive in archives]
            try:
                for future in futures:
                    counts = future.result()
                    total.files += counts.files
                    total.bytes += counts.bytes
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
        return total

    def _restore_archive(self, archive: Archive, folder: Folder, downloads: ThreadPoolExecutor,
                         stop: threading.Event, progress: FetchProgress) -> Extracted:
        if self.store is None:
            raise RuntimeError("the restore's store is opened before its archives are read")
        reader = PrefetchReader(self.store, archive.key, archive.size, downloads)

        def read(size: int) -> bytes:
            if stop.is_set():
                raise RestoreError("stopped: another archive of the restore failed")
            piece = reader.read(size)
            progress.add(len(piece))
            return piece

        try:
            decoded = open_decoded(archive.compression, read)
            counts = extract_stream(decoded.read, folder, archive.key)
            # A tar stream may end before its object does (padding): the rest is read so
            # that the object's size is checked.
            while reader.read(1 << 20):
                pass
        finally:
            reader.close()
        LOG.info("restored %s: %d files, %s", archive.key, counts.files, _mib(counts.bytes))
        return counts


def _mib(size: int) -> str:
    return "%.1f MiB" % (size / (1 << 20))


# --- checks, before anything is written ------------------------------------------------------


def choose_backup(catalog: Catalog, options: RestoreConfig, server_name: str) -> Dict[str, Any]:
    """The backup backup_id names. `auto`, as barman-cloud-restore's, is the newest backup from
    which recovery can reach the target: ended at or before recovery_target_time or _lsn, on
    recovery_target_timeline when that is a number; unlike barman's, only DONE backups count,
    and "newest" is by end rather than by id."""
    if options.backup_id != AUTO_BACKUP_ID:
        return catalog.resolve(options.backup_id)
    done = [fields for fields in catalog.all() if fields.get("status") == layout.DONE]
    candidates, bound = done, ""
    timeline = options.recovery_target_timeline
    if timeline is not None and str(timeline).isdigit():
        candidates = [fields for fields in candidates if _timeline(fields) == int(timeline)]
        bound = " on timeline %s" % timeline
    ends = _backup_ends(options)
    if ends is not None:
        option, target, end_of = ends
        candidates = sorted((fields for fields in candidates if end_of(fields) is not None and end_of(fields) <= target),
                            key=end_of)
        bound += " that ended at or before %s %s" % (option, getattr(options, option))
    if not candidates:
        raise ConfigurationError(
            "backup_id=auto: server %s has no DONE backup%s (%d DONE in all); the archive cannot recover to that "
            "target: give a later one, or a backup_id" % (server_name, bound, len(done)), "backup_id")
    chosen = candidates[-1]
    LOG.info("backup_id=auto chose backup %s (ended %s)", chosen["backup_id"],
             layout.describe_time(chosen.get("end_time")))
    return chosen


def _backup_ends(options: RestoreConfig) -> Optional[Tuple[str, Any, Callable[[Dict[str, Any]], Any]]]:
    """For a time or LSN target: its option, its value, and how to read a backup's end to compare."""
    if options.recovery_target_time is not None:
        return ("recovery_target_time", parse_target_time(options.recovery_target_time),
                lambda fields: None if fields.get("end_time") is None else _aware(fields["end_time"]))
    if options.recovery_target_lsn is not None:
        return ("recovery_target_lsn", lsn_value(options.recovery_target_lsn),
                lambda fields: lsn_value(str(fields["end_xlog"])) if fields.get("end_xlog") else None)
    return None


def _aware(moment: Any) -> Any:
    """A backup.info time without an offset is the local time of the host that wrote it."""
    return moment.astimezone() if moment.tzinfo is None else moment


def _timeline(fields: Dict[str, Any]) -> Optional[int]:
    try:
        return int(fields.get("timeline") or 0) or None
    except (TypeError, ValueError):
        return None


def check_backup(fields: Dict[str, Any], options: RestoreConfig) -> None:
    backup_id = fields["backup_id"]
    if fields.get("status") != layout.DONE:
        raise ConfigurationError(
            "backup %s is %s, not DONE: it cannot be restored; choose a DONE backup (pgcloud.backup.backup_info "
            "lists them)" % (backup_id, fields.get("status")), "backup_id")
    check_snapshot_request(fields, options)
    version = fields.get("version") or 0
    if version and version < FIRST_VERSION_WITH_SIGNAL_FILES:
        raise ConfigurationError("backup %s is of PostgreSQL %s, which has no recovery signal files; this module "
                                 "restores PostgreSQL 12 and later" % (backup_id, version), "backup_id")
    check_target_after_backup(fields, options)


def check_target_after_backup(fields: Dict[str, Any], options: RestoreConfig) -> None:
    """A recovery target before the backup's end can never be reached: PostgreSQL would replay
    past it and stop with an error, after the whole restore."""
    end_time = fields.get("end_time")
    if options.recovery_target_time is not None and end_time is not None:
        target = parse_target_time(options.recovery_target_time)
        end_time = _aware(end_time)
        if target < end_time:
            raise ConfigurationError(
                "recovery_target_time %s is before the end of backup %s (%s): restore an older backup (backup_id "
                "auto picks the newest that ended before it), or give a later time"
                % (options.recovery_target_time, fields["backup_id"], end_time.isoformat()),
                "recovery_target_time")
    end_lsn = fields.get("end_xlog")
    if options.recovery_target_lsn is not None and end_lsn:
        if lsn_value(options.recovery_target_lsn) < lsn_value(str(end_lsn)):
            raise ConfigurationError(
                "recovery_target_lsn %s is before the end of backup %s (%s): restore an older backup (backup_id "
                "auto picks the newest that ended before it), or give a later LSN"
                % (options.recovery_target_lsn, fields["backup_id"], end_lsn), "recovery_target_lsn")


def backup_archives(catalog: Catalog, fields: Dict[str, Any]) -> List[Archive]:
    """The archives of the backup, largest first (the workers take them in this order), after
    checking from the listing that none is missing."""
    objects = catalog.objects(fields["backup_id"])
    check = check_objects(catalog, fields, objects)
    if check["missing"]:
        raise RestoreError("backup %s cannot be restored, objects of it are missing from the store: %s"
                           % (fields["backup_id"], "; ".join(check["missing"])))
    for item in check["mismatched"]:
        # A truncated archive fails its extraction; the others may be harmless (another tool's sizes).
        LOG.warning("backup %s: %s: %s", fields["backup_id"], item["key"], item["reason"])
    groups = {layout.DATA_GROUP} | {str(oid) for _name, oid, _location in fields.get("tablespaces") or []}
    archives = []
    for item in objects:
        match = layout.ARCHIVE_NAME.match(item["key"].rsplit("/", 1)[-1])
        if match and match.group("group") in groups and match.group("extension") in EXTENSIONS.values():
            compression = compression_of_extension(match.group("extension"))
            archives.append(Archive(item["key"], match.group("group"), item["size"], compression))
    for compression in {archive.compression for archive in archives}:
        open_decoded(compression, lambda size: b"")  # MissingDependencyError now rather than mid-restore
    return sorted(archives, key=lambda archive: -archive.size)


def plan_destinations(fields: Dict[str, Any], options: RestoreConfig) -> List[Destination]:
    recorded = {name: (oid, location) for name, oid, location in fields.get("tablespaces") or []}
    unknown = sorted(set(options.tablespaces) - set(recorded))
    if unknown:
        raise ConfigurationError("tablespaces names %s, which backup %s does not hold (it holds: %s)" % (
            ", ".join(unknown), fields["backup_id"], ", ".join(sorted(recorded)) or "none"), "tablespaces")
    destinations = [Destination(layout.DATA_GROUP, options.target_directory)]
    for name, (oid, location) in recorded.items():
        destinations.append(Destination(str(oid), os.path.normpath(options.tablespaces.get(name, location)), name))
    paths = [os.path.realpath(item.path) for item in destinations]
    for index, path in enumerate(paths):
        for other in paths[index + 1:]:
            if path == other or other.startswith(path + os.sep) or path.startswith(other + os.sep):
                raise ConfigurationError(
                    "the restore's folders %s and %s overlap: give each tablespace a location of its own, outside "
                    "target_directory, in tablespaces" % (path, other), "tablespaces")
    return destinations


def check_folder(destination: Destination, force: bool) -> None:
    option = "target_directory" if destination.group == layout.DATA_GROUP else "tablespaces"
    what = "target_directory" if destination.name is None else "the location of tablespace %s" % destination.name
    path = destination.path
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise ConfigurationError("%s %s exists and is not a folder" % (what, path), option)
        if os.listdir(path):
            if not force:
                raise ConfigurationError("%s %s is not empty: restore into an empty or new folder, or set force to "
                                         "replace its contents" % (what, path), option)
            _check_no_server(path, what, option)
        _check_writable(path, what, option)
        return
    parent = os.path.dirname(path)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    _check_writable(parent, what, option)


def _check_writable(path: str, what: str, option: str) -> None:
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError("%s: %s is not a folder this user (uid %d) may write; run as the owner of the "
                                 "folder (normally postgres) or choose another" % (what, path, os.geteuid()), option)


def _check_no_server(path: str, what: str, option: str) -> None:
    try:
        with open(os.path.join(path, "postmaster.pid"), encoding="utf-8") as handle:
            pid = int(handle.readline().strip() or 0)
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise ConfigurationError("%s %s belongs to a running PostgreSQL server (pid %d): stop it first" % (
        what, path, pid), option)


# --- writing ---------------------------------------------------------------------------------


def prepare_folder(destination: Destination) -> None:
    """Create the folder, or empty it (force), with PostgreSQL's mode."""
    destination.existed = os.path.isdir(destination.path)
    if destination.existed:
        _remove_contents(destination.path)
    else:
        os.makedirs(destination.path, mode=0o700)
    os.chmod(destination.path, 0o700)


def _remove_contents(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def remove_written(destination: Destination) -> List[str]:
    """Undo prepare_folder and what followed; returns what could not be removed."""
    try:
        if destination.existed:
            if os.path.isdir(destination.path):
                _remove_contents(destination.path)
        elif os.path.lexists(destination.path):
            shutil.rmtree(destination.path)
    except OSError as error:
        return ["%s: %s" % (destination.path, error)]
    return []


def link_tablespaces(pgdata: str, destinations: List[Destination], fields: Dict[str, Any]) -> None:
    """pg_tblspc/<oid> -> each tablespace's location, as PostgreSQL finds its tablespaces."""
    tablespaces = [item for item in destinations if item.group != layout.DATA_GROUP]
    if not tablespaces:
        return
    folder = os.path.join(pgdata, "pg_tblspc")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for item in tablespaces:
        link = os.path.join(folder, item.group)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(item.path, link)


def _make_wal_folder(pgdata: str) -> None:
    """pg_wal is never in a backup's archives' contents; recovery fills it from the archive."""
    os.makedirs(os.path.join(pgdata, "pg_wal"), mode=0o700, exist_ok=True)
