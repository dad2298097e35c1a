# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The barman-cloud object layout, read and written: where each object of a server lives
below the destination, and `backup.info`, the record of one backup.

    <destination>/<server_name>/base/<backup_id>/backup.info
                                                /data.tar[.ext], data_0001.tar[.ext], ...
                                                /<tablespace oid>.tar[.ext], ...
                                                /backup_label         (snapshot backups)
                               /wals/<timeline + log>/<WAL file name>[.ext]

`backup.info` is one `key=value` line per field, keys sorted, the reference tool's key set; the
reference readers stop at a key they do not know, so only these keys are ever written.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import Any, Dict, List, Optional, Tuple

from .errors import redact

BASE_FOLDER = "base"
WAL_FOLDER = "wals"
BACKUP_INFO = "backup.info"
BACKUP_LABEL = "backup_label"
DATA_GROUP = "data"

# <group>.<ext> or <group>_NNNN.<ext>, where group is `data` or a tablespace's oid.
ARCHIVE_NAME = re.compile(r"^(?P<group>data|\d+)(?:_(?P<number>\d{4}))?\.(?P<extension>tar(?:\.\w+)?)$")


def backup_folder(backup_id: str) -> Tuple[str, ...]:
    """The parts below the server's folder of one backup's folder."""
    return (BASE_FOLDER, backup_id)


def info_path(backup_id: str) -> Tuple[str, ...]:
    return backup_folder(backup_id) + (BACKUP_INFO,)


def archive_name(group: str, number: int, extension: str) -> str:
    """The name of archive `number` (from 0) of a group: the restore tools read them in this order."""
    suffix = "" if number == 0 else "_%04d" % number
    return "%s%s.%s" % (group, suffix, extension)


# The WAL files an archive holds: a segment TTTTTTTTLLLLLLLLSSSSSSSS, its `.partial` (the last
# segment of a timeline, archived at promotion), a backup history file (segment + `.OFFSET.backup`)
# and a timeline history file TTTTTTTT.history. Anything else is refused: a name is a key.
WAL_NAME = re.compile(
    r"^(?P<segment>(?P<timeline>[0-9A-Fa-f]{8})(?P<log>[0-9A-Fa-f]{8})[0-9A-Fa-f]{8})"
    r"(?P<kind>\.partial|\.[0-9A-Fa-f]{8}\.backup)?\Z"
    r"|^(?P<history_timeline>[0-9A-Fa-f]{8})\.history\Z"
)
# The suffix each compression adds to a WAL object's name, as barman-cloud-wal-archive writes
# them and barman-cloud-wal-restore reads them (xz too, which base backups do not offer).
WAL_EXTENSIONS: Dict[Optional[str], str] = {
    None: "",
    "gzip": ".gz",
    "bzip2": ".bz2",
    "xz": ".xz",
    "snappy": ".snappy",
    "zstd": ".zst",
    "lz4": ".lz4",
}
WAL_COMPRESSIONS = tuple(name for name in WAL_EXTENSIONS if name)
# A WAL file as barman-cloud-wal-archive stores it: uncompressed, or with one of these suffixes.
WAL_SUFFIXES = frozenset(WAL_EXTENSIONS.values())


@dataclass(frozen=True)
class WalName:
    """A validated WAL file name and what the layout needs of it."""

    name: str
    # "segment", "partial", "backup" or "history".
    kind: str
    timeline: int
    # The hash folder below wals/ ("" for history files, which have none).
    folder: str
    # The segment's own name (the first 24 characters), None for history files.
    segment: Optional[str]


def parse_wal_name(name: str) -> WalName:
    """Validate a WAL file name (any hex case, as the reference tools accept); ValueError if not one."""
    match = WAL_NAME.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError("%r is not a WAL file name (a segment such as 000000010000000000000001, with "
                         "an optional .partial or .XXXXXXXX.backup suffix, or a TTTTTTTT.history file)" % (name,))
    if match.group("history_timeline"):
        return WalName(name, "history", int(match.group("history_timeline"), 16), "", None)
    kind = {None: "segment", ".partial": "partial"}.get(match.group("kind"), "backup")
    timeline, log = int(match.group("timeline"), 16), int(match.group("log"), 16)
    return WalName(name, kind, timeline, "%08X%08X" % (timeline, log), match.group("segment"))


def is_wal_name(name: str) -> bool:
    try:
        parse_wal_name(name)
    except ValueError:
        return False
    return True


def wal_path(wal_name: str, compression: Optional[str] = None) -> Tuple[str, ...]:
    """The parts below the server's folder of a WAL file (with the compression's extension).

    The hash folder is the timeline and log of the name in upper case, as the reference tools
    compute it; history files lie in wals/ itself.
    """
    parsed = parse_wal_name(wal_name)
    name = wal_name + WAL_EXTENSIONS[compression]
    return (WAL_FOLDER, name) if not parsed.folder else (WAL_FOLDER, parsed.folder, name)


def wal_object_name(object_name: str) -> Tuple[Optional[str], Optional[str]]:
    """(WAL file name, compression) of an object's last path part, (None, None) if not a WAL object."""
    for compression, extension in WAL_EXTENSIONS.items():
        if extension and object_name.endswith(extension):
            base = object_name[:-len(extension)]
            return (base, compression) if is_wal_name(base) else (None, None)
    return (object_name, None) if is_wal_name(object_name) else (None, None)


STARTED, DONE, FAILED = "STARTED", "DONE", "FAILED"


@dataclass
class BackupInfo:
    """backup.info, typed: every key the reference tool writes for a base backup, None by default.

    The reference readers stop at a key they do not know, so only these are ever written; keys
    of a newer writer that this one does not know are kept, as text, in `unknown`.
    """

    backup_label: Optional[str] = None
    backup_name: Optional[str] = None
    begin_offset: Optional[int] = None
    begin_time: Optional[datetime] = None
    begin_wal: Optional[str] = None
    begin_xlog: Optional[str] = None
    children_backup_ids: Optional[str] = None
    cluster_size: Optional[int] = None
    compression: Optional[str] = None
    config_file: Optional[str] = None
    copy_stats: Optional[Dict[str, Any]] = None
    data_checksums: Optional[str] = None
    deduplicated_size: Optional[int] = None
    encryption: Optional[str] = None
    end_offset: Optional[int] = None
    end_time: Optional[datetime] = None
    end_wal: Optional[str] = None
    end_xlog: Optional[str] = None
    error: Optional[str] = None
    hba_file: Optional[str] = None
    ident_file: Optional[str] = None
    included_files: Optional[List[str]] = None
    mode: Optional[str] = None
    parent_backup_id: Optional[str] = None
    pgdata: Optional[str] = None
    server_name: Optional[str] = None
    size: Optional[int] = None
    snapshots_info: Optional[Dict[str, Any]] = None
    status: Optional[str] = None
    summarize_wal: Optional[str] = None
    systemid: Optional[str] = None
    tablespaces: Optional[List[Tuple[str, int, str]]] = None
    timeline: Optional[int] = None
    version: Optional[int] = None
    xlog_segment_size: Optional[int] = None
    unknown: Dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, data: bytes) -> "BackupInfo":
        """Read a backup.info, also one written by barman itself."""
        known = parse(data)
        unknown = {name: known.pop(name) for name in list(known) if name not in FIELDS}
        return cls(unknown=unknown, **known)

    def render(self) -> bytes:
        return render(self.fields())

    def fields(self) -> Dict[str, Any]:
        """The known keys and their values, as `render` and the catalog's readers take them."""
        return {name: getattr(self, name) for name in FIELDS}


# Every key, in the order written (sorted, as the reference tool writes them).
FIELDS = tuple(item.name for item in dataclass_fields(BackupInfo) if item.name != "unknown")
# Written only when set.
OPTIONAL_FIELDS = ("backup_name", "snapshots_info")
# Written as Python literals.
LITERAL_FIELDS = ("backup_label", "copy_stats", "included_files", "tablespaces", "snapshots_info")
INTEGER_FIELDS = ("begin_offset", "end_offset", "cluster_size", "size", "deduplicated_size", "timeline",
                  "version", "xlog_segment_size")
TIME_FIELDS = ("begin_time", "end_time")


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


# --- annotations: small objects beside a backup's files, under base/<id>/annotations/ ---------

ANNOTATIONS_FOLDER = "annotations"
KEEP_ANNOTATION = "keep"
KEEP_FULL, KEEP_STANDALONE = "full", "standalone"
# full: the backup and every WAL from it on are kept; standalone: the backup and the WAL
# from its begin_wal to its end_wal only (enough to restore it, not to replay past it).
KEEP_TARGETS = (KEEP_FULL, KEEP_STANDALONE)


def annotation_parts(backup_id: str, name: str) -> Tuple[str, ...]:
    """The key parts, below the server's folder, of an annotation of a backup."""
    return backup_folder(backup_id) + (ANNOTATIONS_FOLDER, name)


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


def wal_name_of_key(key: str) -> Optional[str]:
    """The WAL file name an archived object holds (its compression suffix removed), or None when
    the object is not a WAL, partial, backup history or timeline history file."""
    return wal_object_name(key.rsplit("/", 1)[-1])[0]


def is_history(wal_name: str) -> bool:
    return wal_name.endswith(".history")


def timeline_of(wal_name: str) -> int:
    return int(wal_name[:8], 16)
