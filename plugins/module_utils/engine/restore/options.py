# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of a restore, checked before anything is read or written."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigurationError
from ..inputs import check_printable, unsafe_characters

RECOVERY_TARGETS = ("recovery_target_time", "recovery_target_lsn", "recovery_target_xid", "recovery_target_name",
                    "recovery_target_immediate")
RECOVERY_TARGET_ACTIONS = ("pause", "promote", "shutdown")
# backup_id: the newest backup that can reach the recovery target (restore/job.py).
AUTO_BACKUP_ID = "auto"
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
_TIMELINE = re.compile(r"^(current|latest|[1-9]\d*)$")
# A numeric offset at the end of a time: +02, +0200, +02:00 (and Z).
_OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
# PostgreSQL refuses, at start-up, a restore point name of 64 bytes or more (MAXFNAMELEN), a
# transaction id beyond 64 bits and a timeline beyond 32.
MAX_RESTORE_POINT_BYTES = 63
MAX_XID = (1 << 64) - 1
MAX_TIMELINE = (1 << 32) - 1
# Why a restore refuses control characters in its paths and names.
PATH_TEXT_REASON = ("a path with them would go, unseen, into pg_tblspc links, logs and the "
                    "result")
# The options written into postgresql.auto.conf, one quoted line each.
SETTING_OPTIONS = ("restore_command", "recovery_target_time", "recovery_target_lsn", "recovery_target_xid",
                   "recovery_target_name", "recovery_target_timeline")
# Where the scheduled_backup role puts the host command (<install dir>/bin/pgcloud-backup) and
# the jobs' config.json (<config root>/<job>/config.json), by default.
DEFAULT_INSTALL_DIR = "/opt/pgcloud-backup-job"
DEFAULT_JOB_CONFIG_ROOT = "/etc/pgcloud-backup"


@dataclass(frozen=True)
class RestoreOption:
    """One option of a restore, declared once for the module's argument spec and the host
    command's flags (cli.py): its Ansible type (str, path, int, bool, dict), default, choices."""

    name: str
    kind: str
    help: str
    default: Any = None
    choices: Tuple[str, ...] = ()
    required: bool = False
    # The flag of a dict option, given once per item as KEY=VALUE (--tablespace NAME=PATH).
    item_flag: Optional[str] = None
    item_metavar: str = "KEY=VALUE"

    def argument_spec(self) -> Dict[str, Any]:
        spec: Dict[str, Any] = {"type": self.kind}
        if self.required:
            spec["required"] = True
        if self.default is not None:
            spec["default"] = self.default
        if self.choices:
            spec["choices"] = list(self.choices)
        return spec


RESTORE_OPTIONS: Tuple[RestoreOption, ...] = (
    RestoreOption("backup_id", "str", "the backup: an id, a name, latest, oldest, or auto (the newest that can "
                  "reach the recovery target)", default="latest"),
    RestoreOption("target_directory", "path", "the data directory to restore into (absolute)", required=True),
    RestoreOption("tablespaces", "dict", "a new location of a tablespace, NAME=PATH (repeatable)",
                  item_flag="tablespace", item_metavar="NAME=PATH"),
    RestoreOption("jobs", "int", "archives fetched, decoded and extracted at the same time", default=2),
    RestoreOption("force", "bool", "replace the contents of non-empty folders", default=False),
    RestoreOption("verify", "bool", "check the copy with pg_verifybackup when the backup has a manifest",
                  default=True),
    RestoreOption("restore_command", "str", "the restore_command of the recovery (default: see the docs)"),
    RestoreOption("wal_restore_job", "str", "the job whose wal-restore the default restore_command runs"),
    RestoreOption("install_dir", "path", "where the scheduled_backup role installed bin/pgcloud-backup",
                  default=DEFAULT_INSTALL_DIR),
    RestoreOption("job_config_root", "path", "the folder of the jobs' JOB/config.json",
                  default=DEFAULT_JOB_CONFIG_ROOT),
    RestoreOption("snapshot_recovery_instance", "str", "for a snapshot backup: the instance its disks are "
                  "attached to"),
    RestoreOption("aws_region", "str", "the region of the recovery instance (default: the backup's)"),
    RestoreOption("azure_subscription_id", "str", "the subscription of the recovery VM (default: the backup's)"),
    RestoreOption("azure_resource_group", "str", "the resource group of the recovery VM (default: the backup's)"),
    RestoreOption("gcp_project", "str", "the project of the recovery instance (default: the backup's)"),
    RestoreOption("gcp_zone", "str", "the zone of the recovery instance"),
    RestoreOption("standby", "bool", "write standby.signal instead of recovery.signal", default=False),
    RestoreOption("wal_archiving", "bool", "let the copy archive WAL as its source did, with the archive "
                  "settings restored", default=True),
    RestoreOption("recovery_target_time", "str", "recover up to this time, with its UTC offset"),
    RestoreOption("recovery_target_lsn", "str", "recover up to this WAL location"),
    RestoreOption("recovery_target_xid", "str", "recover up to this transaction id"),
    RestoreOption("recovery_target_name", "str", "recover up to this restore point"),
    RestoreOption("recovery_target_immediate", "bool", "end recovery at the end of the backup", default=False),
    RestoreOption("recovery_target_timeline", "str", "current, latest or a timeline number"),
    RestoreOption("recovery_target_action", "str", "what the server does at the target",
                  choices=RECOVERY_TARGET_ACTIONS),
)


def restore_argument_spec() -> Dict[str, Dict[str, Any]]:
    """The Ansible argument spec of RESTORE_OPTIONS (the restore module adds the storage's)."""
    return {option.name: option.argument_spec() for option in RESTORE_OPTIONS}


def parse_target_time(text: str) -> datetime:
    """recovery_target_time as a datetime with its offset; it must name one, since PostgreSQL
    would read a time without one in the restored server's own time zone."""
    value = text.strip()
    problem = "it is not a time such as 2026-01-25 03:15:00+00"
    if _OFFSET.search(value):
        normal = re.sub(r"[Zz]$", "+00:00", value)
        normal = re.sub(r"([+-]\d{2})$", r"\1:00", normal)
        normal = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", normal)
        # Python before 3.11 reads fractions of exactly 3 or 6 digits only.
        normal = re.sub(r"\.(\d+)", lambda match: "." + (match.group(1) + "00000")[:6], normal)
        try:
            return datetime.fromisoformat(normal.replace("T", " ", 1))
        except ValueError:
            pass
    else:
        problem = "it has no UTC offset (such as +00 or +02:00)"
    raise ConfigurationError(
        "recovery_target_time=%r cannot be used: %s; give the time with its offset, for example "
        "'2026-01-25 03:15:00+00'" % (text, problem), "recovery_target_time")


def lsn_value(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class RestoreConfig:
    """What to restore, where, and how PostgreSQL recovers it."""

    target_directory: str
    backup_id: str = "latest"
    tablespaces: Dict[str, str] = field(default_factory=dict)
    force: bool = False
    verify: bool = True
    standby: bool = False
    wal_archiving: bool = True
    restore_command: Optional[str] = None
    wal_restore_job: Optional[str] = None
    install_dir: str = DEFAULT_INSTALL_DIR
    job_config_root: str = DEFAULT_JOB_CONFIG_ROOT
    snapshot_recovery_instance: Optional[str] = None
    aws_region: Optional[str] = None
    azure_subscription_id: Optional[str] = None
    azure_resource_group: Optional[str] = None
    gcp_project: Optional[str] = None
    gcp_zone: Optional[str] = None
    recovery_target_time: Optional[str] = None
    recovery_target_lsn: Optional[str] = None
    recovery_target_xid: Optional[str] = None
    recovery_target_name: Optional[str] = None
    recovery_target_immediate: bool = False
    recovery_target_timeline: Optional[str] = None
    recovery_target_action: Optional[str] = None

    def __post_init__(self) -> None:
        self.target_directory = _absolute(self.target_directory, "target_directory")
        for name in self.tablespaces or {}:
            check_printable(str(name), "tablespaces", "the tablespace name %r" % name, PATH_TEXT_REASON)
        self.tablespaces = {str(name): _absolute(location, "tablespaces") for name, location
                            in (self.tablespaces or {}).items()}
        if not str(self.backup_id or "").strip():
            raise ConfigurationError("backup_id must name a backup: an id, a name, latest, oldest or auto", "backup_id")
        check_printable(str(self.backup_id), "backup_id", reason="no backup id or name holds them")
        self._check_settings_text()
        if self.restore_command is not None and not self.restore_command.strip():
            raise ConfigurationError("restore_command must not be empty: leave it unset for the default",
                                     "restore_command")
        self.install_dir = _absolute(self.install_dir, "install_dir")
        self.job_config_root = _absolute(self.job_config_root, "job_config_root")
        if self.wal_restore_job is not None and not re.match(r"^[A-Za-z0-9_-]+$", self.wal_restore_job):
            raise ConfigurationError("wal_restore_job=%r is not a job name (letters, digits, _ and -, as "
                                     "pgcloud_backup_job_name)" % self.wal_restore_job, "wal_restore_job")
        self._check_targets()

    def _check_settings_text(self) -> None:
        """A line break would end the setting's line in postgresql.auto.conf, and PostgreSQL
        would refuse to start after the whole restore: refused now, as any control character."""
        for name in SETTING_OPTIONS:
            value = getattr(self, name)
            unsafe = unsafe_characters(str(value)) if value is not None else []
            if unsafe:
                raise ConfigurationError(
                    "%s holds control or invisible characters (%s), which cannot be written to "
                    "postgresql.auto.conf: remove them" % (name, ", ".join(unsafe)), name)

    def _check_targets(self) -> None:
        chosen = self.recovery_targets()
        if len(chosen) > 1:
            raise ConfigurationError("give at most one recovery target; %s were given" % ", ".join(sorted(chosen)),
                                     sorted(chosen)[0])
        if self.recovery_target_time is not None:
            parse_target_time(self.recovery_target_time)
        if self.recovery_target_lsn is not None and not _LSN.match(self.recovery_target_lsn):
            raise ConfigurationError("recovery_target_lsn=%r is not an LSN such as 0/16B3748"
                                     % self.recovery_target_lsn, "recovery_target_lsn")
        if self.recovery_target_xid is not None and not _number_within(str(self.recovery_target_xid), MAX_XID):
            raise ConfigurationError("recovery_target_xid=%r is not a transaction id (a number of at most %d)"
                                     % (self.recovery_target_xid, MAX_XID), "recovery_target_xid")
        self._check_target_name()
        timeline = str(self.recovery_target_timeline)
        if self.recovery_target_timeline is not None and not (
                _TIMELINE.match(timeline) and (not timeline.isdigit() or _number_within(timeline, MAX_TIMELINE))):
            raise ConfigurationError("recovery_target_timeline=%r is not current, latest or a timeline number "
                                     "(at most %d)" % (self.recovery_target_timeline, MAX_TIMELINE),
                                     "recovery_target_timeline")
        if self.recovery_target_action is not None:
            if self.recovery_target_action not in RECOVERY_TARGET_ACTIONS:
                raise ConfigurationError("recovery_target_action=%r is not one of %s" % (
                    self.recovery_target_action, ", ".join(RECOVERY_TARGET_ACTIONS)), "recovery_target_action")
            if not chosen:
                raise ConfigurationError("recovery_target_action applies only with a recovery target: give one "
                                         "(such as recovery_target_time) or remove it", "recovery_target_action")

    def _check_target_name(self) -> None:
        name = self.recovery_target_name
        if name is None:
            return
        if not name:
            raise ConfigurationError("recovery_target_name must not be empty", "recovery_target_name")
        if len(name.encode("utf-8")) > MAX_RESTORE_POINT_BYTES:
            raise ConfigurationError(
                "recovery_target_name is %d bytes long; PostgreSQL names restore points of at most %d bytes, so "
                "no restore point has this name: give the name pg_create_restore_point was called with"
                % (len(name.encode("utf-8")), MAX_RESTORE_POINT_BYTES), "recovery_target_name")

    def recovery_targets(self) -> List[str]:
        """The names of the recovery targets given."""
        return [name for name in RECOVERY_TARGETS if getattr(self, name) not in (None, False, "")]


def _number_within(text: str, largest: int) -> bool:
    """ASCII digits only (str.isdigit takes other scripts' digits too), at most largest."""
    return re.match(r"^[0-9]+$", text) is not None and int(text) <= largest


def _absolute(path: Any, option: str) -> str:
    text = str(path or "")
    check_printable(text, option, "%s %r" % (option, text), PATH_TEXT_REASON)
    if not os.path.isabs(text):
        raise ConfigurationError("%s: %r is not an absolute path; give the full path of the folder" % (option, text),
                                 option)
    return os.path.normpath(text)
