# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a backup run returns, typed; `as_dict()` is what the modules and the role's job report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import layout


def tablespace_results(tablespaces: Sequence[Tuple[str, int, str]]) -> List[Dict[str, Any]]:
    return [{"name": name, "oid": oid, "location": location} for name, oid, location in tablespaces]


@dataclass
class BackupResult:
    """One run of a base or snapshot backup: taken, planned (check mode) or found by its name.

    `details` holds what only one kind of backup reports (bytes and compression of a base
    backup, the snapshots of a snapshot backup); it is merged into the dict.
    """

    changed: bool
    msg: str
    destination: str
    backup_id: Optional[str] = None
    backup_name: Optional[str] = None
    status: Optional[str] = None
    keys: List[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    begin_wal: Optional[str] = None
    end_wal: Optional[str] = None
    begin_time: Optional[str] = None
    end_time: Optional[str] = None
    tablespaces: List[Dict[str, Any]] = field(default_factory=list)
    plan: Optional[Dict[str, Any]] = None
    details: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_backup(cls, info: Dict[str, Any], backup_id: str, destination: str, msg: str,
                  changed: bool = True, elapsed: float = 0.0) -> "BackupResult":
        """The result of a backup recorded in `info` (its backup.info fields)."""
        return cls(changed=changed, msg=msg, destination=destination, backup_id=backup_id,
                   backup_name=info.get("backup_name"), status=info.get("status"),
                   elapsed_seconds=round(elapsed, 3),
                   begin_wal=info.get("begin_wal"), end_wal=info.get("end_wal"),
                   begin_time=layout.describe_time(info.get("begin_time")),
                   end_time=layout.describe_time(info.get("end_time")),
                   tablespaces=tablespace_results(info.get("tablespaces") or []))

    def as_dict(self) -> Dict[str, Any]:
        result = asdict(self)
        details = result.pop("details")
        if result["plan"] is None:
            del result["plan"]
        result.update(details)
        return result
