# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One base backup, from the connectivity test to the final backup.info.

The order is the reference tool's: STARTED is recorded as soon as the server's backup
starts, tablespaces and PGDATA are copied while it runs, pg_control after the walk,
backup_label after the stop, and DONE only once every archive is complete. On failure
the server's backup is stopped, open multipart uploads are aborted and FAILED is recorded.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .. import layout

from ..archive import compression
from ..catalog import Catalog
from ..config import BackupConfig, PostgresConfig, StorageConfig
from ..errors import BackupError, ConfigurationError, PostgresError, StorageError, first_line, redact, secret_values
from ..archive.walk import (PG_CONTROL, WalkEntry, external_config_files, largest_first, os_user_name,
                            tablespace_directory_prefix, walk_data_directory, walk_tablespace)
from ..archive.manifest import MANIFEST_NAME, BackupManifest, WalRange
from ..postgres.session import (BackupPoint, PostgresSession, ServerFacts, parse_lsn, switch_primary_wal,
                                wal_file_name)
from ..results import BackupResult, tablespace_results
from ..storage.base import ObjectStore
from ..storage.factory import open_store
from ..archive.tar import ArchiveGroup, TarArchive, label_header
from ..transfer.progress import ProgressCounter
from ..transfer.upload import UploadPool, chunk_size_for, freeze_long_lived_objects, release_free_heap
from ..wal.health import archiver_state_if_readable

LOG = logging.getLogger("pgcloud.backup")
# A backup from a standby polls the store for its last WAL file this often, and asks the
# primary to switch WAL at most this often (each switch may leave a mostly empty file).
WAL_POLL_INTERVAL = 1.0
WAL_SWITCH_INTERVAL = 10.0
MIB = 1 << 20
# How many of the largest files each archive builder is given before the rest of the walk.
FILES_FIRST_PER_BUILDER = 4
# How many ids a run tries to reserve, one a second, when other runs take them first.
RESERVE_ATTEMPTS = 5


class Progress:
    """Counts bytes read and logs a line every PROGRESS_INTERVAL seconds, for the journal."""

    def __init__(self, backup_id: str, pool: UploadPool, session: PostgresSession) -> None:
        self.backup_id = backup_id
        self.pool = pool
        self.session = session
        self.counter = ProgressCounter()

    @property
    def bytes_read(self) -> int:
        return self.counter.count

    def add(self, size: int) -> None:
        self.session.ensure_alive()
        if self.counter.add(size):
            LOG.info("backup %s: %.0f MiB read, %.0f MiB uploaded, %.1f MiB/s", self.backup_id,
                     self.bytes_read / MIB, self.pool.bytes_uploaded / MIB, self.counter.mib_per_second())


def _id_of_now() -> str:
    return datetime.now().strftime("%Y%m%dT%H%M%S")


def _sleep_to_next_second() -> None:
    time.sleep(1.05 - (time.time() % 1))


def new_backup_id(catalog: Catalog) -> str:
    """The local start time, as the reference tool; waits a second rather than reuse an id."""
    existing = set(catalog.backup_ids())
    while True:
        backup_id = _id_of_now()
        if backup_id not in existing:
            return backup_id
        _sleep_to_next_second()


def reserve_backup_id(catalog: Catalog, info: layout.BackupInfo) -> str:
    """A new backup id whose backup.info (info, STARTED) this run created, before pg_backup_start.

    The create is conditional, so that two runs that chose the same id in the same second (the
    module and the timer, or two hosts with one server_name) never share a folder: the one that
    loses takes the next second. The nonce makes each run's backup.info its own, for the stores
    whose conditional create is a write and a read back (ObjectStore.put_object_if_absent).
    """
    for _attempt in range(RESERVE_ATTEMPTS):
        backup_id = new_backup_id(catalog)
        data = dataclasses.replace(info, error="backup id reserved by run %s" % uuid.uuid4().hex).render()
        if catalog.store.put_object_if_absent(catalog.info_key(backup_id), data):
            return backup_id
        LOG.info("backup id %s was taken by another run in the same second; trying the next one", backup_id)
        _sleep_to_next_second()
    raise StorageError(
        "could not reserve a backup id in %s: %d ids in a row were taken by other runs; give each host "
        "its own server_name" % (catalog.store.destination.url_of(layout.BASE_FOLDER), RESERVE_ATTEMPTS))


def check_wal_archiving(settings: Dict[str, Optional[str]], facts: ServerFacts, required: bool) -> None:
    """Refuse, before anything is written, a backup of a primary that archives no WAL.

    A standby's backup waits for its last WAL file in the store instead (archiving there is
    the primary's). A setting the role may not read is not held against the server: the
    bounded wait for the archiver after the stop still fails a backup whose WAL is not archived.
    """
    if not required or facts.in_recovery:
        return
    fix = ("set archive_mode = on and an archive_command (such as barman-cloud-wal-archive, or this "
           "collection's pgcloud-backup wal-archive) on the server, or set require_wal_archiving: false if "
           "WAL reaches your restores another way")
    mode = settings.get("archive_mode")
    if mode == "off":
        raise ConfigurationError(
            "WAL archiving is off on this server (archive_mode=off): a base backup cannot be restored "
            "without its WAL; " + fix, "require_wal_archiving")
    if "archive_command" in settings and not settings.get("archive_command") and not settings.get("archive_library"):
        raise ConfigurationError(
            "archive_mode is %s but neither archive_command nor archive_library is set, so the server "
            "archives no WAL and a base backup could not be restored; %s" % (mode, fix), "require_wal_archiving")


def wait_for_wal(end_wal: str, timeout: int, archived: Callable[[], bool],
                 while_waiting: Callable[[float], None] = lambda now: None) -> bool:
    """Poll archived() every WAL_POLL_INTERVAL until it is true (True) or timeout seconds pass
    (False); while_waiting(now) runs between polls (a standby's switch of WAL on its primary)."""
    LOG.info("waiting up to %d s for WAL file %s to be archived", timeout, end_wal)
    deadline = time.monotonic() + timeout
    while not archived():
        now = time.monotonic()
        if now > deadline:
            return False
        while_waiting(now)
        time.sleep(WAL_POLL_INTERVAL)
    return True


def end_wal_name(stop: BackupPoint, facts: ServerFacts) -> str:
    """The WAL file that holds the backup's last record: the end LSN is the first byte after it,
    which matters when the end falls on a segment boundary."""
    return wal_file_name(stop.timeline, parse_lsn(stop.lsn) - 1, facts.wal_segment_size)


def check_readable(facts: ServerFacts) -> None:
    """The role may run backups and read where PGDATA is, and the OS user can read PGDATA and the tablespaces."""
    check_backup_privileges(facts)
    for name, _oid, location in facts.tablespaces:
        if not os.path.isdir(location):
            raise PostgresError(
                "tablespace %s is at %s, which is not a directory on this host: restore or remount that "
                "directory, or drop the tablespace; a backup without it could not be restored" % (name, location)
            )
    for path in [facts.pgdata()] + [tablespace[2] for tablespace in facts.tablespaces]:
        if not os.access(path, os.R_OK | os.X_OK):
            raise PostgresError(
                "cannot read %s as OS user %s: run the backup as the PostgreSQL OS user "
                "(become_user: postgres) or a user with read access to PGDATA and the tablespaces"
                % (path, os_user_name())
            )


def check_backup_privileges(facts: ServerFacts) -> None:
    if not facts.backup_privileges:
        raise PostgresError(
            "the PostgreSQL role %r may not run backups: connect as a superuser or GRANT EXECUTE on "
            "pg_backup_start and pg_backup_stop to it (pg_start_backup/pg_stop_backup before 15)" % facts.role
        )
    facts.pgdata()  # raises when the role may not read data_directory


class BackupJob:
    """What every kind of backup shares: the store and its catalog, the named-backup lookup, the
    server's backup from start to stop, backup.info STARTED then DONE, and FAILED on any error.

    A kind of backup fills in the hooks: `_validate`, `_prepare` (checks against the server's
    facts), `_while_started` (what happens while the server's backup runs), `_after_stop`
    (what needs the backup_label), `_abort` (clean-up on failure) and the result builders.
    """

    def __init__(self, storage: StorageConfig, postgres: PostgresConfig, backup_name: Optional[str],
                 store: Optional[ObjectStore] = None, require_wal_archiving: bool = True) -> None:
        self.storage = storage
        self.postgres = postgres
        self.backup_name = backup_name
        self.require_wal_archiving = require_wal_archiving
        self.store = store or open_store(storage)
        self.catalog = Catalog(self.store)
        # pg_stat_archiver once the backup's WAL is archived, for the result.
        self.wal_archiver: Optional[Dict[str, Any]] = None

    def run(self, check_mode: bool = False) -> BackupResult:
        self.store.check()
        self._validate()
        if self.backup_name:
            existing = self.catalog.find_done_by_name(self.backup_name)
            if existing is not None:
                return self._existing_result(existing)
        session = PostgresSession(self.postgres)
        try:
            facts = session.facts()
            for warning in facts.warnings:
                LOG.warning("%s", warning)
            check_wal_archiving(session.archive_settings(), facts, self.require_wal_archiving)
            self._prepare(facts)
            if check_mode:
                return self._plan_result(facts)
            self._lock_server(session)
            if self.backup_name:
                # Again under the lock: a run that held it may have taken this name meanwhile.
                existing = self.catalog.find_done_by_name(self.backup_name)
                if existing is not None:
                    return self._existing_result(existing)
            return self._take(session, facts)
        finally:
            session.close()

    def _lock_server(self, session: PostgresSession) -> None:
        """One backup into a server_name's folder at a time from this PostgreSQL server, for the
        session's life (the server releases the lock when the session ends)."""
        folder = self.store.destination.url_of(layout.BASE_FOLDER)
        if not session.try_lock_server(folder):
            raise PostgresError(
                "another backup of server_name %r is running on this PostgreSQL server, into %s (%s): wait for "
                "it to end; backups of one server_name run one at a time"
                % (self.storage.server_name, folder, session.lock_holder(folder) or "its session has just ended"))

    def _take(self, session: PostgresSession, facts: ServerFacts) -> BackupResult:
        started = time.monotonic()
        info = self._initial_info(facts)
        backup_id = reserve_backup_id(self.catalog, info)
        self._before_start()
        try:
            LOG.info("starting backup %s of %s", backup_id, facts.data_directory)
            start = session.start_backup("Barman backup cloud %s" % backup_id, self.postgres.immediate_checkpoint)
            self._record_start(info, start, facts)
            self._put_info(backup_id, info)
            copy_started = time.monotonic()
            self._while_started(backup_id, session, facts, info)
            session.ensure_alive()
            LOG.info("stopping backup %s", backup_id)
            # The server's own wait for archiving has no bound (statement_timeout is 0): the end
            # is awaited here, within wal_archive_timeout, in the store (standby) or in
            # pg_stat_archiver (primary), once the server has left backup mode.
            stop = session.stop_backup(wait_for_archive=False)
            if not facts.in_recovery:
                session.create_restore_point("barman_%s" % backup_id)
            self._after_stop(backup_id, stop, facts)
            copy_time = time.monotonic() - copy_started
            if facts.in_recovery:
                self._await_end_wal(stop, facts)
            else:
                self._await_archiver(session, stop, facts)
            self.wal_archiver = archiver_state_if_readable(session)
            self._record_stop(info, stop, facts)
            self._verify_stored(backup_id)
            info.copy_stats = self._copy_stats(copy_time, time.monotonic() - started)
            self._check_name_still_free(backup_id)
            info.status, info.backup_name, info.size = layout.DONE, self.backup_name, self._stored_size()
            self._put_info(backup_id, info)
            self._read_back_info(backup_id, info)
        except BaseException as error:
            self._fail(backup_id, info, session, error)
            raise BackupError("backup %s failed: %s" % (backup_id, redact(first_line(error), secret_values(
                self.storage, self.postgres))), backup_id) from error
        return self._done_result(backup_id, info, time.monotonic() - started)

    def _await_end_wal(self, stop: BackupPoint, facts: ServerFacts) -> None:
        """Wait until the WAL file that holds the end of a standby's backup is in the store.

        Until then the backup cannot be restored. With primary_conninfo the primary is asked
        to close its current WAL file now and then; without it, archive_timeout on the primary
        (or its traffic) must complete the file within wal_archive_timeout.
        """
        timeout = self.postgres.wal_archive_timeout
        if timeout == 0:
            LOG.warning("backup from a standby: not waiting for its last WAL file (wal_archive_timeout=0)")
            return
        end_wal = end_wal_name(stop, facts)
        next_switch = [0.0]

        def switch_on_primary(now: float) -> None:
            if self.postgres.primary_conninfo and now >= next_switch[0]:
                LOG.info("switched WAL on the primary: %s", switch_primary_wal(self.postgres.primary_conninfo))
                next_switch[0] = now + WAL_SWITCH_INTERVAL

        if not wait_for_wal(end_wal, timeout, lambda: self.catalog.wal_archived(end_wal), switch_on_primary):
            raise BackupError(
                "WAL file %s, which holds the end of this backup from a standby, did not reach %s within "
                "wal_archive_timeout (%d s): set primary_conninfo so that the backup can make the primary "
                "complete it, or archive_timeout on the primary, and check that WAL is archived there"
                % (end_wal, self.store.destination.url_of(layout.WAL_FOLDER), timeout))

    def _await_archiver(self, session: PostgresSession, stop: BackupPoint, facts: ServerFacts) -> None:
        """Wait until the primary's archiver has archived the WAL file that holds the end of the backup.

        pg_backup_stop switched to a new WAL file, so that file is complete and queued; an
        archive_command that keeps failing leaves it queued, and the backup FAILED.
        """
        timeout = self.postgres.wal_archive_timeout
        if facts.archive_mode == "off":
            LOG.warning("archive_mode is off (require_wal_archiving: false): this backup can be restored only "
                        "with WAL that reaches the restore another way")
            return
        if timeout == 0:
            LOG.warning("not waiting for the last WAL file of the backup to be archived (wal_archive_timeout=0)")
            return
        end_wal = end_wal_name(stop, facts)
        if not wait_for_wal(end_wal, timeout, lambda: session.archiver_status().has_archived(end_wal)):
            raise BackupError(
                "WAL file %s, which holds the end of this backup, was not archived within wal_archive_timeout "
                "(%d s): %s; check archive_command and the server's log, or raise wal_archive_timeout"
                % (end_wal, timeout, session.archiver_status().last_failure()))

    def _verify_stored(self, backup_id: str) -> None:
        """List the backup's folder and compare it with what was written, names and sizes, before DONE:
        a store that acknowledged an object it does not hold whole fails the backup."""
        folder = self.catalog.folder_key(backup_id) + "/"
        listed = {item.key: item.size for item in self.store.list_objects(folder)}
        written = self._written_objects()
        problems = []
        for key, size in sorted(written.items()):
            if key not in listed:
                problems.append("%s is missing" % key)
            elif listed[key] != size:
                problems.append("%s holds %d bytes where %d were written" % (key, listed[key], size))
        # An object this run did not write would be restored with the backup: another run's.
        for key in sorted(set(listed) - set(written) - {self.catalog.info_key(backup_id)}):
            problems.append("%s was not written by this backup" % key)
        if problems:
            raise BackupError(
                "the store does not hold what it acknowledged: %s; the backup could not be restored, check "
                "the store (or the proxy in front of it) and run the backup again" % "; ".join(problems))
        LOG.info("backup %s: the store lists the %d objects written, with their sizes", backup_id, len(written))

    def _check_name_still_free(self, backup_id: str) -> None:
        """backup_name must name one DONE backup, or restoring by name fails: a run elsewhere (another
        host with this server_name) may have taken it while this one ran."""
        if not self.backup_name:
            return
        taken = self.catalog.find_done_by_name(self.backup_name)
        if taken is not None and taken["backup_id"] != backup_id:
            raise BackupError(
                "backup_name %r was taken by backup %s while this backup ran (another run of server_name %r): "
                "a name must belong to one backup; run again with another backup_name"
                % (self.backup_name, taken["backup_id"], self.storage.server_name))

    def _read_back_info(self, backup_id: str, info: layout.BackupInfo) -> None:
        """The DONE backup.info as the store returns it, before the run reports DONE."""
        if self.store.get_object(self.catalog.info_key(backup_id)) != info.render():
            raise BackupError("the store does not return the backup.info it acknowledged for backup %s; "
                              "check the store and run the backup again" % backup_id)

    # --- hooks of the kinds of backup ---------------------------------------------------------

    def _validate(self) -> None:
        """Raise ConfigurationError for what this kind of backup cannot do."""

    def _prepare(self, facts: ServerFacts) -> None:
        """Checks against the server, before anything is written."""
        raise NotImplementedError

    def _before_start(self) -> None:
        """Set up what the backup needs (before the try block whose failure path uses it)."""

    def _while_started(self, backup_id: str, session: PostgresSession, facts: ServerFacts,
                       info: layout.BackupInfo) -> None:
        raise NotImplementedError

    def _after_stop(self, backup_id: str, stop: BackupPoint, facts: ServerFacts) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        """Release what the backup holds after a failure; never raises."""

    def _copy_stats(self, copy_time: float, total_time: float) -> Dict[str, Any]:
        raise NotImplementedError

    def _stored_size(self) -> Optional[int]:
        """The bytes of the objects the backup stored besides backup.info, for backup.info's size."""
        return None

    def _written_objects(self) -> Dict[str, int]:
        """key -> size of every object the backup wrote besides backup.info, checked before DONE."""
        return {}

    def _server_name(self) -> str:
        return "cloud"

    def _plan(self, facts: ServerFacts) -> Tuple[Dict[str, Any], str]:
        """What check mode reports this kind of backup would do, and its message."""
        raise NotImplementedError

    def _details(self, info: Optional[Dict[str, Any]], taken: bool) -> Dict[str, Any]:
        """The kind's own result fields: of the backup this run `taken`, of one found by its name
        (`info`, its backup.info), or of the plan (no info)."""
        raise NotImplementedError

    def _done_message(self, result: BackupResult) -> str:
        raise NotImplementedError

    # --- shared steps -------------------------------------------------------------------------

    def _put_info(self, backup_id: str, info: layout.BackupInfo) -> None:
        self.store.put_object(self.catalog.info_key(backup_id), info.render())

    def _fail(self, backup_id: str, info: layout.BackupInfo, session: PostgresSession, error: BaseException) -> None:
        # The error may quote a secret; backup.info stays in the bucket for whoever lists backups.
        cause = redact(first_line(error), secret_values(self.storage, self.postgres))
        LOG.error("backup %s failed: %s", backup_id, cause)
        session.close()
        self._abort()
        info.status = layout.FAILED
        info.error = "failure uploading data (%s)" % cause
        if self.backup_name:
            info.error += " while taking backup_name %s" % self.backup_name
        try:
            self._put_info(backup_id, info)
        except Exception as put_error:  # the store may be what failed
            LOG.error("could not record backup %s as FAILED: %s", backup_id, put_error)

    def _initial_info(self, facts: ServerFacts) -> layout.BackupInfo:
        # The name is recorded with DONE only: the restore tools refuse a name that several
        # backups carry, and a retried named backup must not collide with its failed attempts.
        return layout.BackupInfo(
            cluster_size=facts.cluster_size,
            config_file=facts.config_file,
            data_checksums=facts.data_checksums,
            hba_file=facts.hba_file,
            ident_file=facts.ident_file,
            included_files=facts.included_files or None,
            pgdata=facts.data_directory,
            server_name=self._server_name(),
            status=layout.STARTED,
            summarize_wal=facts.summarize_wal,
            systemid=facts.systemid,
            tablespaces=list(facts.tablespaces) or None,
            version=facts.version,
            xlog_segment_size=facts.wal_segment_size,
        )

    @staticmethod
    def _record_start(info: layout.BackupInfo, start: BackupPoint, facts: ServerFacts) -> None:
        lsn = parse_lsn(start.lsn)
        info.begin_xlog, info.begin_time, info.timeline = start.lsn, start.timestamp, start.timeline
        info.begin_wal = wal_file_name(start.timeline, lsn, facts.wal_segment_size)
        info.begin_offset = lsn % facts.wal_segment_size

    @staticmethod
    def _record_stop(info: layout.BackupInfo, stop: BackupPoint, facts: ServerFacts) -> None:
        lsn = parse_lsn(stop.lsn)
        info.end_xlog, info.end_time, info.backup_label = stop.lsn, stop.timestamp, stop.label_file
        info.end_wal = wal_file_name(stop.timeline, lsn, facts.wal_segment_size)
        info.end_offset = lsn % facts.wal_segment_size

    def _destination(self, backup_id: Optional[str] = None) -> str:
        parts = layout.backup_folder(backup_id) if backup_id else (layout.BASE_FOLDER,)
        return self.store.destination.url_of(*parts) + "/"

    def _plan_result(self, facts: ServerFacts) -> BackupResult:
        plan, msg = self._plan(facts)
        return BackupResult(changed=True, msg="check mode: " + msg, destination=self._destination(),
                            backup_name=self.backup_name, tablespaces=tablespace_results(facts.tablespaces),
                            plan=plan, details=self._details(None, taken=False))

    def _existing_result(self, fields: Dict[str, Any]) -> BackupResult:
        msg = "backup %s named %r is already DONE; nothing to do" % (fields["backup_id"], fields.get("backup_name"))
        result = BackupResult.of_backup(fields, fields["backup_id"], self._destination(fields["backup_id"]), msg,
                                        changed=False)
        result.details = self._details(fields, taken=False)
        return result

    def _done_result(self, backup_id: str, info: layout.BackupInfo, elapsed: float) -> BackupResult:
        result = BackupResult.of_backup(info.fields(), backup_id, self._destination(backup_id), "", elapsed=elapsed)
        result.keys = self._written_keys(backup_id)
        result.details = dict(self._details(info.fields(), taken=True), wal_archiver=self.wal_archiver)
        result.msg = self._done_message(result)
        return result

    def _written_keys(self, backup_id: str) -> List[str]:
        raise NotImplementedError


class BaseBackupJob(BackupJob):
    """A base backup: tablespaces and PGDATA as tar archives, backup_label and backup_manifest
    in the last one."""

    # Set by _before_start (the pool, the manifest) and _while_started (the archive backup_label
    # goes into, and where the WAL the backup needs starts).
    pool: UploadPool
    manifest: BackupManifest
    final: TarArchive
    wal_start: Tuple[int, str]

    def __init__(self, storage: StorageConfig, postgres: PostgresConfig, backup: BackupConfig,
                 store: Optional[ObjectStore] = None) -> None:
        super().__init__(storage, postgres, backup.backup_name, store, backup.require_wal_archiving)
        self.backup = backup
        self.max_archive_size = min(backup.max_archive_size, self.store.max_archive_size)
        if backup.max_archive_size > self.store.max_archive_size:
            LOG.warning("max_archive_size is capped at %d bytes, the provider's limit", self.store.max_archive_size)
        self.chunk_size = chunk_size_for(self.store, backup.max_archive_size, storage.min_chunk_size)
        self.builders = max(1, min(storage.jobs, os.cpu_count() or 1))
        self.groups: List[ArchiveGroup] = []

    def _validate(self) -> None:
        compression.require(self.backup.compression)

    def _prepare(self, facts: ServerFacts) -> None:
        check_readable(facts)

    def _before_start(self) -> None:
        release_free_heap()
        freeze_long_lived_objects()
        self.pool = UploadPool(self.store, self.storage.jobs, self.chunk_size, self.storage.max_bandwidth)
        self.manifest = BackupManifest(self.backup.manifest_checksum)
        self.groups = []

    def _while_started(self, backup_id: str, session: PostgresSession, facts: ServerFacts,
                       info: layout.BackupInfo) -> None:
        if info.timeline is None or info.begin_xlog is None:
            raise RuntimeError("the backup's start is recorded before the copy starts")
        self.wal_start = (info.timeline, info.begin_xlog)
        session.start_keepalive(self.postgres.keepalive_interval)
        progress = Progress(backup_id, self.pool, session)
        self.final = self._copy(backup_id, facts, self.pool, self.groups, progress)
        session.stop_keepalive()

    def _after_stop(self, backup_id: str, stop: BackupPoint, facts: ServerFacts) -> None:
        pgdata = os.stat(facts.pgdata())
        if stop.label_file is None:
            raise PostgresError("the server's backup stop returned no backup_label")
        self.final.add_bytes("backup_label", stop.label_file.encode("utf-8"), label_header(pgdata))
        # One WAL range, on the timeline the backup started on: what a restore replays first.
        wal_range = WalRange(self.wal_start[0], self.wal_start[1], stop.lsn)
        self.final.add_bytes(MANIFEST_NAME, self.manifest.render(wal_range), label_header(pgdata), listed=False)
        self.groups[-1].finish(self.final)
        self.pool.close()

    def _abort(self) -> None:
        self.pool.abort()

    def _copy(self, backup_id: str, facts: ServerFacts, pool: UploadPool, groups: List[ArchiveGroup],
              progress: Progress) -> TarArchive:
        """Archive tablespaces, then PGDATA; returns the open last archive that backup_label goes into."""
        folder = self.catalog.folder_key(backup_id)
        data_directory = facts.pgdata()
        for name, oid, location in facts.tablespaces:
            LOG.info("archiving tablespace %s (%d) at %s", name, oid, location)
            group = self._group(pool, folder, str(oid), "pg_tblspc/%d/" % oid)
            group.build(self._ordered(functools.partial(_tablespace_entries, name, location, facts.version)),
                        self.builders, progress.add)
            groups.append(group)
        LOG.info("archiving PGDATA %s", data_directory)
        data = self._group(pool, folder, layout.DATA_GROUP)
        groups.append(data)
        tablespace_locations = [tablespace[2] for tablespace in facts.tablespaces]
        # The archive that ends the walk stays open for pg_control, then backup_label and the
        # manifest: with one builder, PGDATA is one object, as in the reference tool's backups.
        final = data.build(self._ordered(functools.partial(walk_data_directory, data_directory,
                                                           tablespace_locations, [facts.stats_temp_directory])),
                           self.builders, progress.add, keep_last_open=True) or data.new_archive()
        control = os.path.join(data_directory, PG_CONTROL)
        if not final.add(WalkEntry(control, PG_CONTROL)):
            raise PostgresError("%s is missing: is %s a PostgreSQL data directory?" % (control, data_directory))
        for entry in external_config_files(data_directory, (facts.config_file, facts.hba_file, facts.ident_file)):
            final.add(entry)
        pgdata = os.path.realpath(data_directory) + os.sep
        for path in facts.included_files:
            if not os.path.realpath(path).startswith(pgdata):
                LOG.warning("configuration file %s is included by the server's configuration but lies outside "
                            "PGDATA, so it is not in the backup", path)
        return final

    def _ordered(self, walk: Callable[[], Iterator[WalkEntry]]) -> Iterator[WalkEntry]:
        """The walk, with the largest files first when several builders share it."""
        if self.builders == 1:
            return walk()
        return largest_first(walk, FILES_FIRST_PER_BUILDER * self.builders)

    def _stored_size(self) -> Optional[int]:
        # backup_info's check of a backup's objects compares the listed sizes with this.
        return sum(group.stored_bytes() for group in self.groups)

    def _written_objects(self) -> Dict[str, int]:
        return {item.key: item.size for group in self.groups for item in group.written}

    def _group(self, pool: UploadPool, folder: str, base: str, manifest_prefix: str = "") -> ArchiveGroup:
        """The archives of `base` (data or a tablespace's oid), whose files are restored under manifest_prefix."""
        return ArchiveGroup(pool, folder, base, self.backup.compression, self.max_archive_size, self.manifest,
                            manifest_prefix)

    def _copy_stats(self, copy_time: float, total_time: float) -> Dict[str, Any]:
        return {
            "total_time": round(total_time, 6),
            "number_of_workers": self.storage.jobs,
            "analysis_time": 0,
            "copy_time": round(copy_time, 6),
        }

    def _plan(self, facts: ServerFacts) -> Tuple[Dict[str, Any], str]:
        plan = {
            "data_directory": facts.data_directory,
            "tablespaces": tablespace_results(facts.tablespaces),
            "compression": self.backup.compression,
            "jobs": self.storage.jobs,
            "chunk_size": self.chunk_size,
            "max_archive_size": self.max_archive_size,
            "cluster_size": facts.cluster_size,
        }
        return plan, "would back up %s (%s) to %s" % (
            facts.data_directory, _size_text(facts.cluster_size), self.store.destination.url_of(layout.BASE_FOLDER))

    def _details(self, info: Optional[Dict[str, Any]], taken: bool) -> Dict[str, Any]:
        return {
            "bytes_read": sum(group.bytes_read for group in self.groups) if taken else 0,
            "bytes_written": sum(group.stored_bytes() for group in self.groups) if taken else 0,
            # A backup found by its name reports none: this run compressed nothing.
            "compression": self.backup.compression if taken or info is None else None,
        }

    def _written_keys(self, backup_id: str) -> List[str]:
        return sorted(key for group in self.groups for key in group.keys()) + [self.catalog.info_key(backup_id)]

    def _done_message(self, result: BackupResult) -> str:
        return "backup %s DONE: %.1f MiB read, %.1f MiB stored in %d objects, %.1f s" % (
            result.backup_id, result.details["bytes_read"] / MIB, result.details["bytes_written"] / MIB,
            len(result.keys), result.elapsed_seconds)


def _tablespace_entries(name: str, location: str, server_version: int) -> Iterator[WalkEntry]:
    """The tablespace's files; an error if its version directory is gone, rather than an empty archive."""
    entries = walk_tablespace(location, server_version)
    first = next(entries, None)
    if first is None:
        raise PostgresError(
            "tablespace %s at %s holds no %s directory: the directory was removed or replaced while the "
            "server uses it; restore it before taking a backup" % (name, location, tablespace_directory_prefix(server_version)))
    yield first
    yield from entries


def _size_text(size: Optional[int]) -> str:
    return "size unknown" if size is None else "%.1f MiB" % (size / MIB)
