# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`backup.info`: one `key=value` line per field, keys sorted, the reference tool's key set.

The reference readers stop at a key they do not know, so only these keys are ever written.
"""

from __future__ import annotations

import ast
import re
from datetime import datetime
from typing import Any, Dict, Optional, Tuple

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
        # One line: the format has no escaping for newlines in plain values.
        return " ".join(str(value).split())
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


# --- annotations: small objects beside a backup's files, under base/<id>/annotations/ ---------

ANNOTATIONS_FOLDER = "annotations"
KEEP_ANNOTATION = "keep"
KEEP_FULL, KEEP_STANDALONE = "full", "standalone"
# full: the backup and every WAL from it on are kept; standalone: the backup and the WAL
# from its begin_wal to its end_wal only (enough to restore it, not to replay past it).
KEEP_TARGETS = (KEEP_FULL, KEEP_STANDALONE)


def annotation_parts(backup_id: str, name: str) -> Tuple[str, ...]:
    """The key parts, below the server's folder, of an annotation of a backup."""
    return ("base", backup_id, ANNOTATIONS_FOLDER, name)


def render_keep(target: str) -> bytes:
    """The keep annotation's content: the bare target, without a newline, as barman writes it."""
    if target not in KEEP_TARGETS:
        raise ValueError("keep target %r is not one of %s" % (target, ", ".join(KEEP_TARGETS)))
    return target.encode("utf-8")


def parse_keep(data: bytes) -> str:
    """The target of a keep annotation that exists.

    Only an exact `standalone` (a trailing newline aside) limits the keep to the backup's own
    WAL; anything else, an empty annotation too, keeps the backup and all later WAL, which is
    the choice that loses nothing.
    """
    lines = data.decode("utf-8", "replace").splitlines()
    first = lines[0].strip() if lines else ""
    return KEEP_STANDALONE if first == KEEP_STANDALONE else KEEP_FULL


# --- the WAL archive: wals/<timeline><log>/<name>[.<compression>], .history files in wals/ ---------

WAITING_FOR_WALS = "WAITING_FOR_WALS"
# The statuses of a backup that restores (the others never count as a previous or next backup).
RESTORABLE_STATUSES = (DONE, WAITING_FOR_WALS)
# Suffixes of compressed WAL files that the reference tools read.
WAL_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".snappy", ".zst", ".lz4")
_WAL_NAME = re.compile(r"^[0-9A-Fa-f]{8}(?:[0-9A-Fa-f]{16}(?:\.[0-9A-Fa-f]{8}\.backup|\.partial)?|\.history)$")


def wal_name_of_key(key: str) -> Optional[str]:
    """The WAL file name an archived object holds (one compression suffix removed), or None when
    the object is not a WAL, partial, backup history or timeline history file."""
    name = key.rsplit("/", 1)[-1]
    for suffix in WAL_COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[:-len(suffix)]
            break
    return name if _WAL_NAME.match(name) else None


def is_history(wal_name: str) -> bool:
    return wal_name.endswith(".history")


def timeline_of(wal_name: str) -> int:
    return int(wal_name[:8], 16)
