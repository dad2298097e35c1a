# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of a restore, checked before anything is read or written."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional

from ..errors import ConfigurationError

RECOVERY_TARGETS = ("recovery_target_time", "recovery_target_lsn", "recovery_target_xid", "recovery_target_name",
                    "recovery_target_immediate")
RECOVERY_TARGET_ACTIONS = ("pause", "promote", "shutdown")
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
_TIMELINE = re.compile(r"^(current|latest|[1-9]\d*)$")
# A numeric offset at the end of a time: +02, +0200, +02:00 (and Z).
_OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")


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
    restore_command: Optional[str] = None
    recovery_target_time: Optional[str] = None
    recovery_target_lsn: Optional[str] = None
    recovery_target_xid: Optional[str] = None
    recovery_target_name: Optional[str] = None
    recovery_target_immediate: bool = False
    recovery_target_timeline: Optional[str] = None
    recovery_target_action: Optional[str] = None

    def __post_init__(self) -> None:
        self.target_directory = _absolute(self.target_directory, "target_directory")
        self.tablespaces = {str(name): _absolute(location, "tablespaces") for name, location
                            in (self.tablespaces or {}).items()}
        if not str(self.backup_id or "").strip():
            raise ConfigurationError("backup_id must name a backup: an id, a name, latest or oldest", "backup_id")
        if self.restore_command is not None and not self.restore_command.strip():
            raise ConfigurationError("restore_command must not be empty: leave it unset for the default",
                                     "restore_command")
        self._check_targets()

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
        if self.recovery_target_xid is not None and not str(self.recovery_target_xid).isdigit():
            raise ConfigurationError("recovery_target_xid=%r is not a transaction id (a number)"
                                     % self.recovery_target_xid, "recovery_target_xid")
        if self.recovery_target_name is not None and not self.recovery_target_name:
            raise ConfigurationError("recovery_target_name must not be empty", "recovery_target_name")
        if self.recovery_target_timeline is not None and not _TIMELINE.match(str(self.recovery_target_timeline)):
            raise ConfigurationError("recovery_target_timeline=%r is not current, latest or a timeline number"
                                     % self.recovery_target_timeline, "recovery_target_timeline")
        if self.recovery_target_action is not None:
            if self.recovery_target_action not in RECOVERY_TARGET_ACTIONS:
                raise ConfigurationError("recovery_target_action=%r is not one of %s" % (
                    self.recovery_target_action, ", ".join(RECOVERY_TARGET_ACTIONS)), "recovery_target_action")
            if not chosen:
                raise ConfigurationError("recovery_target_action applies only with a recovery target: give one "
                                         "(such as recovery_target_time) or remove it", "recovery_target_action")

    def recovery_targets(self) -> List[str]:
        """The names of the recovery targets given."""
        return [name for name in RECOVERY_TARGETS if getattr(self, name) not in (None, False, "")]


def _absolute(path: Any, option: str) -> str:
    text = str(path or "")
    if not os.path.isabs(text):
        raise ConfigurationError("%s: %r is not an absolute path; give the full path of the folder" % (option, text),
                                 option)
    return os.path.normpath(text)
