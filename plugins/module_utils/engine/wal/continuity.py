# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether the WAL archive holds every segment from a backup's first WAL file to the newest one.

Recovery replays segment after segment and ends at the first one restore_command cannot
fetch: a segment missing after a backup's end still lets the backup restore, but no point in
time after the gap can be reached. This reads the archive's listing only, from the hash folder
of the backup's first segment on (folders sort by timeline, then log); a segment counts as
present on any timeline at or after the backup's, since recovery follows the newer ones.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from .. import layout
from ..catalog import Catalog
from ..postgres.session import wal_file_name

DEFAULT_SEGMENT_SIZE = 16 << 20
# The missing segments named in a report; the count covers the rest.
MISSING_LISTED = 50


def segment_number(segment: str, segment_size: int) -> int:
    """The position of a segment (its name's log and segment parts) in the WAL, any timeline."""
    per_log = 0x100000000 // segment_size
    return int(segment[8:16], 16) * per_log + int(segment[16:24], 16)


def segment_name(timeline: int, number: int, segment_size: int) -> str:
    return wal_file_name(timeline, number * segment_size, segment_size)


def archived_segments(catalog: Catalog, first: layout.WalName) -> List[layout.WalName]:
    """The whole segments archived in the hash folders from first's on, on first's timeline or later."""
    prefix = catalog.destination.key(layout.WAL_FOLDER) + "/"
    folders = [folder for folder in catalog.store.list_folders(prefix)
               if len(folder) == 16 and int(folder[:8], 16) >= first.timeline and folder[8:] >= first.folder[8:]]
    found = []
    for folder in sorted(folders):
        for item in catalog.store.list_objects(prefix + folder + "/"):
            name = layout.wal_name_of_key(item.key)
            parsed = layout.parse_wal_name(name) if name is not None else None
            if parsed is not None and parsed.kind == "segment":
                found.append(parsed)
    return found


def wal_continuity(catalog: Catalog, fields: Dict[str, Any]) -> Dict[str, Any]:
    """From the backup's begin_wal to the newest segment archived: the newest, and the missing."""
    begin_wal = fields.get("begin_wal")
    if not begin_wal:
        return {"begin_wal": None, "newest": None, "segments": 0, "missing": [], "missing_count": 0, "ok": False,
                "error": "backup %s records no begin_wal" % fields.get("backup_id")}
    first = layout.parse_wal_name(str(begin_wal))
    segment_size = int(fields.get("xlog_segment_size") or DEFAULT_SEGMENT_SIZE)
    start = segment_number(str(begin_wal), segment_size)
    present: Set[int] = set()
    # (number, timeline, name) of the newest segment: on the later timeline when two share a number.
    newest: Optional[Tuple[int, int, str]] = None
    for wal in archived_segments(catalog, first):
        number = segment_number(wal.name, segment_size)
        if number >= start:
            present.add(number)
            newest = max(newest or (number, wal.timeline, wal.name), (number, wal.timeline, wal.name))
    if newest is None:
        return {"begin_wal": begin_wal, "newest": None, "segments": 0, "missing": [str(begin_wal)], "missing_count": 1,
                "ok": False, "error": "no WAL archived from %s on" % begin_wal}
    end, _timeline, newest_name = newest
    missing = [number for number in range(start, end) if number not in present]
    return {"begin_wal": begin_wal, "newest": newest_name, "segments": len(present),
            "missing": [segment_name(first.timeline, number, segment_size) for number in missing[:MISSING_LISTED]],
            "missing_count": len(missing), "ok": not missing, "error": None}
