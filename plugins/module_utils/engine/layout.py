# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`backup.info`: one `key=value` line per field, keys sorted, the reference tool's key set.

The reference readers stop at a key they do not know, so only these keys are ever written.
"""

from __future__ import annotations

import ast
from datetime import datetime
from typing import Any, Dict, Optional

from .errors import redact

# Every key the reference tool writes for a base backup, with None as its default.
FIELDS = (
    "backup_label", "backup_name", "begin_offset", "begin_time", "begin_wal", "begin_xlog",
    "children_backup_ids", "cluster_size", "compression", "config_file", "copy_stats", "data_checksums",
    "deduplicated_size", "encryption", "end_offset", "end_time", "end_wal", "end_xlog", "error",
    "hba_file", "ident_file", "included_files", "mode", "parent_backup_id", "pgdata", "server_name",
    "size", "snapshots_info", "status", "summarize_wal", "systemid", "tablespaces", "timeline",
    "version", "xlog_segment_size",
)
# Written only when set.
OPTIONAL_FIELDS = ("backup_name", "snapshots_info")
# Written as Python literals.
LITERAL_FIELDS = ("backup_label", "copy_stats", "included_files", "tablespaces", "snapshots_info")
INTEGER_FIELDS = ("begin_offset", "end_offset", "cluster_size", "size", "deduplicated_size", "timeline",
                  "version", "xlog_segment_size")
TIME_FIELDS = ("begin_time", "end_time")

STARTED, DONE, FAILED = "STARTED", "DONE", "FAILED"


def _encode(name: str, value: Any) -> str:
    if name in LITERAL_FIELDS:
        return repr(value) if value else "None"
    if value is None:
        return "None"
    if name == "error":
        # One line: the format has no escaping for newlines in plain values. The object stays
        # in the bucket, readable by whoever lists backups: no password of a quoted conninfo.
        return redact(" ".join(str(value).split()))
    return str(value)


def render(fields: Dict[str, Any]) -> bytes:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError("backup.info has no field %s" % ", ".join(sorted(unknown)))
    lines = []
    for name in FIELDS:
        value = fields.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        lines.append("%s=%s\n" % (name, _encode(name, value)))
    return "".join(lines).encode("utf-8")


def _decode(name: str, text: str) -> Any:
    if text == "None":
        return None
    if name in LITERAL_FIELDS:
        return ast.literal_eval(text)
    if name in INTEGER_FIELDS:
        return int(text)
    if name in TIME_FIELDS:
        return datetime.fromisoformat(text)
    return text


def parse(data: bytes) -> Dict[str, Any]:
    """Read a backup.info, also one written by barman itself; unknown keys are kept as text."""
    fields: Dict[str, Any] = {}
    for line in data.decode("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, text = (part.strip() for part in line.split("=", 1))
        fields[name] = _decode(name, text) if name in FIELDS else text
    return fields


def describe_time(value: Optional[datetime]) -> Optional[str]:
    return value.isoformat() if value else None
