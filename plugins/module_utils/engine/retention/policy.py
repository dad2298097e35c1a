# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention policies: which backups a policy judges obsolete, as barman-cloud-backup-delete does.

Backups are judged newest first, in backup-id order. Only DONE backups are judged; a kept one
is never obsolete, but it fills a place of REDUNDANCY n all the same. A RECOVERY WINDOW keeps
every backup that ended inside the window and the newest one that ended before it (the one a
restore to the window's start needs); a month is 31 days. minimum_redundancy raises
REDUNDANCY n to itself, and keeps that many DONE backups of a window policy in any case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

from .. import layout
from ..errors import ConfigurationError

VALID, OBSOLETE = "VALID", "OBSOLETE"
# Obsolete by the window, but kept to reach minimum_redundancy.
KEPT_FOR_MINIMUM = "OBSOLETE*"
# Not DONE: never judged, never deleted by a policy.
NOT_JUDGED = "-"
UNIT_DAYS = {"day": 1, "week": 7, "month": 31}

_REDUNDANCY = re.compile(r"^\s*redundancy\s+(\d+)\s*$", re.IGNORECASE)
_WINDOW = re.compile(r"^\s*recovery\s+window\s+of\s+(\d+)\s+(day|week|month)s?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class RetentionPolicy:
    text: str
    redundancy: Optional[int] = None
    window: Optional[timedelta] = None


def parse_policy(text: Any) -> RetentionPolicy:
    """`REDUNDANCY n` or `RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS` (any case, singular or plural)."""
    source = "" if text is None else str(text)
    redundancy = _REDUNDANCY.match(source)
    if redundancy:
        return RetentionPolicy(source, redundancy=int(redundancy.group(1)))
    window = _WINDOW.match(source)
    if window:
        days = int(window.group(1)) * UNIT_DAYS[window.group(2).lower()]
        return RetentionPolicy(source, window=timedelta(days=days))
    raise ConfigurationError(
        "retention_policy=%r is not a policy: use REDUNDANCY n (keep the n newest backups) or "
        "RECOVERY WINDOW OF n DAYS, WEEKS or MONTHS" % (text,), "retention_policy")


def check_minimum_redundancy(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError("minimum_redundancy=%r must be a whole number, 0 or more" % (value,),
                                 "minimum_redundancy")
    return value


def judge(backups: List[Dict[str, Any]], keeps: Dict[str, Optional[str]], policy: RetentionPolicy,
          minimum_redundancy: int, now: datetime) -> Dict[str, str]:
    """backup id -> VALID, OBSOLETE, OBSOLETE*, KEEP:FULL, KEEP:STANDALONE or - (not DONE)."""
    verdicts: Dict[str, str] = {}
    judged = 0
    point_of_recovery = now - policy.window if policy.window is not None else None
    window_covered = False
    for fields in sorted(backups, key=lambda item: item["backup_id"], reverse=True):
        backup_id = fields["backup_id"]
        if fields.get("status") != layout.DONE:
            verdicts[backup_id] = NOT_JUDGED
            continue
        keep = keeps.get(backup_id)
        kept = "KEEP:%s" % keep.upper() if keep else None
        if point_of_recovery is None:
            verdict = VALID if judged < max(policy.redundancy or 0, minimum_redundancy) else OBSOLETE
        elif not window_covered:
            verdict = VALID
            window_covered = _ended_before(fields, point_of_recovery)
        else:
            verdict = KEPT_FOR_MINIMUM if judged < minimum_redundancy else OBSOLETE
        verdicts[backup_id] = kept or verdict
        judged += 1
    return verdicts


def _ended_before(fields: Dict[str, Any], moment: datetime) -> bool:
    end_time = fields.get("end_time")
    if end_time is None:
        # Without an end, it cannot be the backup a restore to the window's start uses.
        return False
    if end_time.tzinfo is None:
        end_time = end_time.astimezone()  # the host's zone, as the reference readers assume
    return bool(end_time < moment)


def obsolete_ids(verdicts: Dict[str, str]) -> List[str]:
    """The ids a policy deletes, oldest first."""
    return sorted(backup_id for backup_id, verdict in verdicts.items() if verdict == OBSOLETE)
