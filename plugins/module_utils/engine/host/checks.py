# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The findings of `pgcloud-backup check` (operations.check_destination) as text for a terminal."""

from __future__ import annotations

from typing import Any, Dict, List, Optional


def _verdict(section: Optional[Dict[str, Any]]) -> str:
    if section is None:
        return "not checked"
    return "FAILED: %s" % section["error"] if section.get("error") else "ok"


def wal_lines(wal: Dict[str, Any]) -> List[str]:
    archiver = wal.get("archiver") or {}
    lines = ["wal: %s" % _verdict(wal)]
    if wal.get("segment"):
        lines.append("  segment %s %s" % (wal["segment"], "in the store after %s s" % wal["waited_seconds"]
                                          if wal.get("in_store") else "not in the store"))
    lines.append("  archived %s, last %s at %s" % (archiver.get("archived_count"), archiver.get("last_archived_wal"),
                                                   archiver.get("last_archived_time")))
    lines.append("  failed %s, last %s at %s" % (archiver.get("failed_count"), archiver.get("last_failed_wal"),
                                                 archiver.get("last_failed_time")))
    if archiver.get("ready_count") is not None:
        lines.append("  waiting (.ready) %s, the oldest for %s s"
                     % (archiver["ready_count"], archiver.get("oldest_ready_age_seconds")))
    return lines + ["  warning: %s" % warning for warning in wal.get("warnings") or []]


def check_text(report: Dict[str, Any]) -> str:
    """One line per part (storage, postgres, wal), details indented under the WAL line."""
    storage = report["storage"]
    lines = ["storage: %s (%s)" % (_verdict(storage), storage.get("destination_url")),
             "postgres: %s" % _verdict(report.get("postgres"))]
    lines += ["  warning: %s" % warning for warning in (report.get("postgres") or {}).get("warnings") or []]
    lines += wal_lines(report["wal"]) if report.get("wal") else ["wal: not checked"]
    lines.append("result: %s" % ("ok" if report["ok"] else "FAILED"))
    return "\n".join(lines)
