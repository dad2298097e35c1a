# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL session that runs a non-exclusive base backup.

The backup belongs to the session: whatever happens, `close()` ends it, by stopping it if
it is still running and then by closing the connection, which makes the server end it too.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

from ..config import PostgresConfig
from ..errors import MissingDependencyError, PostgresError

try:
    import psycopg2
    import psycopg2.extensions
except ImportError as error:  # pragma: no cover - depends on the host
    psycopg2 = None
    PSYCOPG2_IMPORT_ERROR: Optional[ImportError] = error
else:
    PSYCOPG2_IMPORT_ERROR = None

LOG = logging.getLogger("pgcloud.backup")
MIN_SERVER_VERSION = 130000
# The newest major the collection is tested against (tests/integration/test_versions.py); a
# newer one may move or add files that a backup must copy or leave out.
NEWEST_TESTED_MAJOR = 18
APPLICATION_NAME = "pgcloud_backup"


def parse_lsn(text: str) -> int:
    high, low = text.split("/", 1)
    return (int(high, 16) << 32) + int(low, 16)


def wal_file_name(timeline: int, lsn: int, segment_size: int) -> str:
    segment = lsn // segment_size
    per_log = 0x100000000 // segment_size
    return "%08X%08X%08X" % (timeline, segment // per_log, segment % per_log)


@dataclass
class ServerFacts:
    version: int
    # None when the role may not read it (neither a superuser nor in pg_read_all_settings)
    data_directory: Optional[str]
    wal_segment_size: int
    systemid: str
    config_file: Optional[str]
    hba_file: Optional[str]
    ident_file: Optional[str]
    included_files: List[str]
    tablespaces: List[Tuple[str, int, str]]
    data_checksums: Optional[str]
    summarize_wal: Optional[str]
    in_recovery: bool
    backup_privileges: bool
    archive_mode: Optional[str]
    cluster_size: Optional[int] = None
    role: str = ""
    # Before PostgreSQL 15: where the statistics collector keeps its temporary files, whose
    # contents a backup leaves out (absolute, or relative to PGDATA).
    stats_temp_directory: Optional[str] = None
    # What the operator should know before relying on a backup of this server.
    warnings: List[str] = field(default_factory=list)

    def pgdata(self) -> str:
        """data_directory, or an error saying how to let the role read it."""
        if self.data_directory is None:
            # Without it the backup would not know which folder to copy.
            raise PostgresError(
                "the PostgreSQL role %r may not read the data_directory setting: connect as a superuser or "
                "GRANT pg_read_all_settings TO %s" % (self.role, self.role)
            )
        return self.data_directory


@dataclass
class BackupPoint:
    """Where the server's backup started or stopped."""

    lsn: str
    timeline: int
    timestamp: datetime
    label_file: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def untested_version_warning(server_version: int) -> Optional[str]:
    """The warning for a server newer than NEWEST_TESTED_MAJOR, None for a tested one."""
    major = server_version // 10000
    if major <= NEWEST_TESTED_MAJOR:
        return None
    return ("PostgreSQL %d is newer than the newest major pgcloud.backup is tested with (%d): its backups are "
            "untested; restore one (barman-cloud-restore, then start the server and check the data) before "
            "relying on them, and look for a pgcloud.backup release that supports %d"
            % (major, NEWEST_TESTED_MAJOR, major))


def connection_arguments(config: PostgresConfig) -> Dict[str, Any]:
    """psycopg2.connect arguments: dbname may be a whole conninfo string, as for the reference tool."""
    arguments: Dict[str, Any] = {}
    dbname = config.dbname
    if dbname == "" or "=" in dbname:
        arguments["dsn"] = dbname
    else:
        arguments["dbname"] = dbname
    for name in ("host", "port", "user", "password"):
        value = getattr(config, name)
        if value not in (None, ""):
            arguments[name] = value
    if "application_name" not in (arguments.get("dsn") or ""):
        arguments["application_name"] = APPLICATION_NAME
    return arguments


def switch_primary_wal(conninfo: str) -> str:
    """Close the primary's current WAL file, so that it is archived; returns that file's name.

    A standby can neither switch WAL nor (unless archive_mode=always) archive it: the file
    that holds the end of a backup taken there reaches the archive once the primary closes it.
    """
    _require_psycopg2()
    try:
        connection = psycopg2.connect(conninfo, application_name=APPLICATION_NAME)
    except psycopg2.Error as error:
        raise PostgresError("cannot connect to the primary with primary_conninfo: %s" % _first_line(error))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            if cursor.fetchone()[0]:
                raise PostgresError("primary_conninfo leads to a server in recovery: give the primary's conninfo")
            cursor.execute("SELECT pg_walfile_name(pg_switch_wal())")
            return str(cursor.fetchone()[0])
    except psycopg2.Error as error:
        raise PostgresError("the primary refused pg_switch_wal: %s; the role of primary_conninfo must be a "
                            "superuser or have EXECUTE on pg_switch_wal()" % _first_line(error))
    finally:
        connection.close()


def _require_psycopg2() -> None:
    if psycopg2 is None:
        raise MissingDependencyError("psycopg2", "connecting to PostgreSQL", PSYCOPG2_IMPORT_ERROR)


def _first_line(error: Exception) -> str:
    return (getattr(error, "pgerror", None) or str(error)).strip().splitlines()[0]


class PostgresSession:
    """One connection to the server, with a lock because the keepalive thread shares it."""

    def __init__(self, config: PostgresConfig) -> None:
        _require_psycopg2()
        self.config = config
        self._lock = threading.Lock()
        self._backup_running = False
        self._keepalive_stop = threading.Event()
        self._keepalive: Optional[threading.Thread] = None
        self.lost: Optional[str] = None
        try:
            self.connection = psycopg2.connect(**connection_arguments(config))
        except psycopg2.Error as error:
            raise PostgresError(
                "cannot connect to PostgreSQL: %s; check host, port, user, password and dbname"
                % str(error).strip().splitlines()[0]
            )
        self.connection.autocommit = True
        self.version: int = self.connection.server_version

    def query(self, sql: str, parameters: Tuple = ()) -> List[Tuple]:
        with self._lock:
            try:
                with self.connection.cursor() as cursor:
                    cursor.execute(sql, parameters)
                    return cursor.fetchall() if cursor.description else []
            except psycopg2.Error as error:
                if self.connection.closed:
                    raise PostgresError(self._lost_message(_first_line(error)))
                raise PostgresError("PostgreSQL refused %s: %s" % (sql.split("(")[0].strip(), _first_line(error)))

    def _lost_message(self, cause: str) -> str:
        # Terminated, restarted or cut off: whichever query saw it, the user needs the same advice.
        ended = "; the server has ended the backup, so this one cannot complete" if self._backup_running else ""
        return "the PostgreSQL session was lost (%s)%s; check the server's log for why" % (cause, ended)

    def value(self, sql: str, parameters: Tuple = ()) -> Any:
        rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def optional_value(self, sql: str) -> Any:
        """A fact that needs privileges the role may lack: None rather than an error."""
        try:
            return self.value(sql)
        except PostgresError as error:
            LOG.debug("%s", error)
            return None

    def facts(self) -> ServerFacts:
        if self.version < MIN_SERVER_VERSION:
            raise PostgresError(
                "PostgreSQL %s is not supported: pgcloud.backup needs PostgreSQL 13 or newer" % self.version
            )
        settings = dict(self.query(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('data_directory', 'wal_segment_size', 'config_file', 'hba_file', 'ident_file', "
            "'data_checksums', 'summarize_wal', 'archive_mode', 'stats_temp_directory')"
        ))
        config_file = settings.get("config_file")
        included = [row[0] for row in self.query(
            "SELECT DISTINCT sourcefile FROM pg_settings WHERE sourcefile IS NOT NULL AND sourcefile <> %s",
            (config_file or "",),
        )]
        tablespaces = [(name, int(oid), location) for name, oid, location in self.query(
            "SELECT spcname, oid, pg_tablespace_location(oid) FROM pg_tablespace "
            "WHERE pg_tablespace_location(oid) <> '' ORDER BY oid"
        )]
        privileged = bool(self.value(
            "SELECT rolsuper OR has_function_privilege(current_user, %s, 'EXECUTE') "
            "FROM pg_roles WHERE rolname = current_user", (self._start_function_signature(),),
        ))
        return ServerFacts(
            version=self.version,
            data_directory=settings.get("data_directory"),
            wal_segment_size=int(settings["wal_segment_size"]),
            systemid=str(self.value("SELECT system_identifier FROM pg_control_system()")),
            config_file=config_file,
            hba_file=settings.get("hba_file"),
            ident_file=settings.get("ident_file"),
            included_files=included,
            tablespaces=tablespaces,
            data_checksums=settings.get("data_checksums"),
            summarize_wal=settings.get("summarize_wal") if self.version >= 170000 else None,
            in_recovery=bool(self.value("SELECT pg_is_in_recovery()")),
            backup_privileges=privileged,
            archive_mode=settings.get("archive_mode"),
            cluster_size=self.optional_value("SELECT sum(pg_tablespace_size(oid))::bigint FROM pg_tablespace"),
            role=str(self.value("SELECT current_user")),
            stats_temp_directory=settings.get("stats_temp_directory"),
            warnings=[warning for warning in (untested_version_warning(self.version),) if warning],
        )

    def _start_function_signature(self) -> str:
        if self.version >= 150000:
            return "pg_backup_start(text, boolean)"
        return "pg_start_backup(text, boolean, boolean)"

    def start_backup(self, label: str, fast: bool) -> BackupPoint:
        # A long copy must not be cut by the role's or the server's idle or statement limits.
        self.query("SET statement_timeout TO 0")
        if self.version >= 140000:
            self.query("SET idle_session_timeout TO 0")
        function = "pg_backup_start(%s, %s)" if self.version >= 150000 else "pg_start_backup(%s, %s, false)"
        lsn, timeline, timestamp = self.query(
            "SELECT lsn::text, (SELECT timeline_id FROM pg_control_checkpoint()), now() FROM "
            + function + " AS lsn", (label, fast),
        )[0]
        self._backup_running = True
        return BackupPoint(lsn, int(timeline), timestamp)

    def stop_backup(self, wait_for_archive: bool = True) -> BackupPoint:
        function = "pg_backup_stop(%s)" if self.version >= 150000 else "pg_stop_backup(false, %s)"
        try:
            lsn, label_file, timeline, timestamp = self.query(
                "SELECT stop.lsn::text, stop.labelfile, "
                "(SELECT CASE WHEN pg_is_in_recovery() THEN min_recovery_end_timeline ELSE timeline_id END "
                "FROM pg_control_checkpoint(), pg_control_recovery()), now() FROM " + function + " AS stop",
                (wait_for_archive,),
            )[0]
        finally:
            self._backup_running = False
        return BackupPoint(lsn, int(timeline), timestamp, label_file)

    def create_restore_point(self, name: str) -> None:
        try:
            self.query("SELECT pg_create_restore_point(%s)", (name,))
        except PostgresError as error:
            LOG.debug("no restore point: %s", error)

    def start_keepalive(self, interval: int) -> None:
        """Query the server every `interval` seconds so that idle timeouts on the way keep the session."""
        if interval <= 0:
            return

        def loop() -> None:
            while not self._keepalive_stop.wait(interval):
                try:
                    self.query("SELECT 1")
                except PostgresError as error:
                    self.lost = str(error) if self.connection.closed else self._lost_message(str(error))
                    return

        self._keepalive = threading.Thread(target=loop, name="pgcloud-keepalive", daemon=True)
        self._keepalive.start()

    def ensure_alive(self) -> None:
        """Raise if the keepalive found the session gone: the server has ended the backup then."""
        if self.lost:
            raise PostgresError(self.lost)

    def stop_keepalive(self) -> None:
        self._keepalive_stop.set()
        if self._keepalive is not None:
            self._keepalive.join()
            self._keepalive = None

    def close(self) -> None:
        """End the backup if it still runs, then the session; never raises."""
        self.stop_keepalive()
        if self._backup_running:
            try:
                self.stop_backup(wait_for_archive=False)
                LOG.info("stopped the server's backup mode after the failure")
            except Exception as error:  # the connection may be gone: closing it ends the backup too
                LOG.warning("could not stop the backup (%s); closing the session ends it", error)
        try:
            self.connection.close()
        except Exception:  # already closed
            pass

    # --- WAL archiving and the backups of one server --------------------------------------------

    def archive_settings(self) -> Dict[str, Optional[str]]:
        """archive_mode, archive_command and archive_library (15+) as far as the role may read them:
        a setting missing from the result is one the role cannot see (archive_command needs
        superuser or pg_read_all_settings)."""
        return dict(self.query(
            "SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command', 'archive_library')"
        ))

    def archiver_status(self) -> "ArchiverStatus":
        row = self.query("SELECT last_archived_wal, last_failed_wal, last_failed_time, failed_count "
                         "FROM pg_stat_archiver")[0]
        return ArchiverStatus(row[0], row[1], row[2], int(row[3] or 0))

    def try_lock_server(self, name: str) -> bool:
        """Take this session's advisory lock of name (a server_name's folder of backups), which
        serialises the backups into it from one PostgreSQL server; False if another session holds
        it. The server releases it when the session ends."""
        return bool(self.value("SELECT pg_try_advisory_lock(%s)", (advisory_key(name),)))

    def lock_holder(self, name: str) -> Optional[str]:
        """Who holds the advisory lock of name: 'pid N (application_name, connected since TIME)'."""
        key = advisory_key(name) & 0xFFFFFFFFFFFFFFFF
        rows = self.query(
            "SELECT l.pid, a.application_name, a.backend_start FROM pg_locks l "
            "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1", (key >> 32, key & 0xFFFFFFFF))
        if not rows:
            return None
        pid, application, since = rows[0]
        return "pid %s (%s, connected since %s)" % (pid, application or "no application_name", since)


@dataclass
class ArchiverStatus:
    """What pg_stat_archiver says of the server's WAL archiving."""

    last_archived_wal: Optional[str]
    last_failed_wal: Optional[str]
    last_failed_time: Optional[datetime]
    failed_count: int = 0

    def has_archived(self, wal_name: str) -> bool:
        """Whether the archiver is past wal_name: it archives in order and retries a failed file
        until it succeeds. The first 24 characters, because a .backup or .partial file carries its
        segment's name first."""
        last = self.last_archived_wal
        return last is not None and last[:24] >= wal_name

    def last_failure(self) -> str:
        """What pg_stat_archiver says went wrong, for the message of a backup whose WAL is not archived."""
        archived = "the last WAL file archived is %s" % (self.last_archived_wal or "none")
        if self.last_failed_wal is None:
            return "no archiving failure is recorded in pg_stat_archiver (the archiver is behind: %s)" % archived
        return "the archiver last failed to archive %s at %s (%d failures; %s)" % (
            self.last_failed_wal, self.last_failed_time, self.failed_count, archived)


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory lock key of a name, the same in every run and on every host."""
    digest = hashlib.sha256(("pgcloud.backup " + name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
