# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server's WAL archiving settings, set to `pgcloud-backup wal-archive %p` and taken back.

`pgcloud-backup archiving enable|disable` (cli.py), which the scheduled_backup role runs on the
database host, as the server's OS user, through the job's connection:

    enable   archive_mode on (kept at always), archive_command the given one, archive_library
             emptied: ALTER SYSTEM (postgresql.auto.conf), then pg_reload_conf(). A server that
             archives some other way is refused unless replace.
    disable  puts back what a record of enable's plan held (each setting's value, and whether it
             was in postgresql.auto.conf: else ALTER SYSTEM RESET), if archive_command is still
             the one enable set; then pg_reload_conf().

Both report the changes and whether archive_mode waits for a restart; with check, they change
nothing. The values configured (pg_file_settings, last entry of each name) decide, not the running
ones: archive_mode changed by an earlier run but not restarted yet is not set again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

from ..config import PostgresConfig
from ..errors import ConfigurationError, MissingDependencyError, PostgresError, first_line
from ..postgres.session import PSYCOPG2_IMPORT_ERROR, connection_arguments, psycopg2

SETTINGS = ("archive_mode", "archive_command", "archive_library")
# archive_command values that archive nothing.
UNSET_COMMANDS = ("", "(disabled)")
AUTO_CONF = "postgresql.auto.conf"
RELOAD_WAIT_SECONDS = 10.0
REPLACE_VARIABLE = "pgcloud_backup_wal_archiving_replace"


@dataclass(frozen=True)
class Setting:
    running: str
    configured: str
    # Whether the configured value comes from postgresql.auto.conf (ALTER SYSTEM).
    in_auto_conf: bool


def _configured(cursor: Any) -> Dict[str, Any]:
    """name -> (value, sourcefile) of the last entry in the configuration files, as the server reads them."""
    cursor.execute("SELECT name, setting, sourcefile FROM pg_file_settings WHERE name = ANY(%s) ORDER BY seqno",
                   (list(SETTINGS),))
    return {name: (value, sourcefile or "") for name, value, sourcefile in cursor.fetchall()}


def read_settings(cursor: Any) -> Dict[str, Setting]:
    """The archiving settings the server has (archive_library from PostgreSQL 15 only)."""
    cursor.execute("SELECT name, setting, boot_val FROM pg_settings WHERE name = ANY(%s)", (list(SETTINGS),))
    running = {name: (value or "", boot or "") for name, value, boot in cursor.fetchall()}
    try:
        files = _configured(cursor)
    except psycopg2.Error as error:
        raise PostgresError("cannot read pg_file_settings (%s): ALTER SYSTEM needs a superuser: connect as one "
                            "(pgcloud_backup_user)" % first_line(error)) from error
    settings = {}
    for name, (value, boot) in running.items():
        configured, sourcefile = files.get(name, (boot, ""))
        settings[name] = Setting(value, configured or "", sourcefile.endswith(AUTO_CONF))
    return settings


def foreign_archiver(settings: Dict[str, Setting], command: str) -> Optional[str]:
    """How the server archives WAL if not with command (nothing: None)."""
    library = settings.get("archive_library")
    if library is not None and library.configured:
        return "archive_library = '%s'" % library.configured
    found = settings["archive_command"].configured
    if found not in UNSET_COMMANDS and found != command:
        return "archive_command = '%s'" % found
    return None


def enable_changes(settings: Dict[str, Setting], command: str, replace: bool) -> Dict[str, str]:
    """The settings to change for the server to archive with command; refuses another archiver."""
    foreign = foreign_archiver(settings, command)
    if foreign and not replace:
        raise ConfigurationError(
            "the server already archives WAL another way (%s): it is left alone. To archive with pgcloud-backup "
            "instead, set %s: true (the role records the setting and puts it back on removal); or set "
            "pgcloud_backup_wal_archiving: false to keep it" % (foreign, REPLACE_VARIABLE), REPLACE_VARIABLE)
    changes = {}
    if settings["archive_mode"].configured not in ("on", "always"):
        changes["archive_mode"] = "on"
    if settings["archive_command"].configured != command:
        changes["archive_command"] = command
    if "archive_library" in settings and settings["archive_library"].configured:
        changes["archive_library"] = ""
    return changes


def disable_changes(settings: Dict[str, Setting], record: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """The settings to put back (None: ALTER SYSTEM RESET), if archive_command is still the recorded one."""
    if settings["archive_command"].configured != record.get("archive_command"):
        return {}
    changes: Dict[str, Optional[str]] = {}
    for name, previous in sorted((record.get("previous") or {}).items()):
        if name not in settings:
            continue
        current = settings[name]
        if previous.get("in_auto_conf"):
            if current.configured != previous.get("value") or not current.in_auto_conf:
                changes[name] = str(previous.get("value") or "")
        elif current.in_auto_conf:
            changes[name] = None
    return changes


def record_of(settings: Dict[str, Setting], command: str) -> Dict[str, Any]:
    """What enable found, for disable to put back: each setting's value and where it came from."""
    return {"archive_command": command,
            "previous": {name: {"value": setting.configured, "in_auto_conf": setting.in_auto_conf}
                         for name, setting in sorted(settings.items())}}


def apply_changes(cursor: Any, changes: Dict[str, Optional[str]]) -> None:
    """ALTER SYSTEM each change (outside a transaction), then have the server reload its files."""
    for name, value in sorted(changes.items()):
        if name not in SETTINGS:
            raise ValueError(name)
        try:
            if value is None:
                cursor.execute("ALTER SYSTEM RESET %s" % name)
            else:
                cursor.execute("ALTER SYSTEM SET %s = %%s" % name, (value,))
        except psycopg2.Error as error:
            raise PostgresError("ALTER SYSTEM SET %s failed: %s; it needs a superuser (or, from PostgreSQL 15, "
                                "GRANT ALTER SYSTEM ON PARAMETER %s): connect as one (pgcloud_backup_user)"
                                % (name, first_line(error), name)) from error
    cursor.execute("SELECT pg_reload_conf()")


def wait_for_reload(cursor: Any, expected: str) -> None:
    """Until the server runs with the archive_command of postgresql.auto.conf: a setting on its
    command line (or an include read later) would win over ALTER SYSTEM."""
    deadline = time.monotonic() + RELOAD_WAIT_SECONDS
    while True:
        cursor.execute("SELECT setting, source, coalesce(sourcefile, '') FROM pg_settings WHERE name = 'archive_command'")
        value, source, sourcefile = cursor.fetchone()
        # While archive_mode is off (until the restart) the server shows "(disabled)" for any command.
        if (value or "") == expected or (value == "(disabled)" and sourcefile.endswith(AUTO_CONF)):
            return
        if time.monotonic() > deadline:
            raise PostgresError("archive_command is still %r after the reload, set by %s %s, which ALTER SYSTEM does "
                                "not override: remove it there" % (value, source, sourcefile))
        time.sleep(0.1)


def outcome(settings: Dict[str, Setting], changes: Dict[str, Optional[str]], mode_after: str) -> Dict[str, Any]:
    return {"changed": bool(changes),
            "changes": changes,
            "previous": {name: setting.configured for name, setting in settings.items()},
            "archive_mode_running": settings["archive_mode"].running,
            # archive_mode takes effect at the server's start only.
            "restart_required": mode_after != settings["archive_mode"].running}


def _connect(config: PostgresConfig) -> Any:
    if psycopg2 is None:
        raise MissingDependencyError("psycopg2", "setting WAL archiving up", PSYCOPG2_IMPORT_ERROR)
    try:
        connection = psycopg2.connect(**connection_arguments(config))
    except psycopg2.Error as error:
        raise PostgresError("cannot connect to PostgreSQL: %s" % first_line(error)) from error
    # ALTER SYSTEM cannot run in a transaction block.
    connection.autocommit = True
    return connection


def _session(config: PostgresConfig, work: Any) -> Dict[str, Any]:
    connection = _connect(config)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            if cursor.fetchone()[0]:
                raise PostgresError("the server is a standby: set archiving up on the primary (archive_mode = "
                                    "always on a standby is left to its operator)")
            return work(cursor)
    finally:
        connection.close()


def enable(config: PostgresConfig, command: str, replace: bool = False, check: bool = False) -> Dict[str, Any]:
    """Set archive_mode and archive_command for command; the result also holds the record for disable."""
    def work(cursor: Any) -> Dict[str, Any]:
        settings = read_settings(cursor)
        changes = enable_changes(settings, command, replace)
        if changes and not check:
            apply_changes(cursor, dict(changes))
            wait_for_reload(cursor, command)
        result = outcome(settings, dict(changes), changes.get("archive_mode", settings["archive_mode"].configured))
        result["record"] = record_of(settings, command)
        return result
    return _session(config, work)


def disable(config: PostgresConfig, record: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    """Put back the settings the record holds, if archive_command is still the one enable set."""
    def work(cursor: Any) -> Dict[str, Any]:
        settings = read_settings(cursor)
        changes = disable_changes(settings, record)
        if changes and not check:
            apply_changes(cursor, changes)
        previous_mode = ((record.get("previous") or {}).get("archive_mode") or {}).get("value")
        mode_after = previous_mode if "archive_mode" in changes else settings["archive_mode"].configured
        result = outcome(settings, changes, mode_after or "off")
        result["left_alone"] = settings["archive_command"].configured != record.get("archive_command")
        return result
    return _session(config, work)
