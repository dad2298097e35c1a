# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backups of one server at a destination, read the way the reference readers read them."""

from __future__ import annotations

import logging
import tarfile
from typing import Any, Dict, List, Optional, Tuple

from . import layout
from .archive.compression import EXTENSIONS
from .config import BACKUP_ID_PATTERN
from .errors import BackupNotFoundError, PgCloudError
from .storage.base import ObjectStore

LOG = logging.getLogger("pgcloud.backup")


class Catalog:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.destination = store.destination

    def info_key(self, backup_id: str) -> str:
        return self.destination.key(*layout.info_path(backup_id))

    def folder_key(self, backup_id: str) -> str:
        return self.destination.key(*layout.backup_folder(backup_id))

    def backup_ids(self) -> List[str]:
        folders = self.store.list_folders(self.destination.key(layout.BASE_FOLDER) + "/")
        return sorted(name for name in folders if BACKUP_ID_PATTERN.match(name))

    def read(self, backup_id: str) -> Optional[Dict[str, Any]]:
        """The parsed backup.info with its id, or None if the folder holds none."""
        data = self.store.get_object(self.info_key(backup_id))
        if data is None:
            return None
        try:
            fields = layout.parse(data)
        except (ValueError, SyntaxError) as error:
            LOG.warning("backup %s has an unreadable backup.info: %s", backup_id, error)
            return {"backup_id": backup_id, "status": "UNREADABLE", "error": str(error)}
        fields["backup_id"] = backup_id
        return fields

    def all(self) -> List[Dict[str, Any]]:
        backups = []
        for backup_id in self.backup_ids():
            fields = self.read(backup_id)
            if fields is not None:
                backups.append(fields)
        return backups

    def find_done_by_name(self, name: str) -> Optional[Dict[str, Any]]:
        for fields in reversed(self.all()):
            if fields.get("backup_name") == name and fields.get("status") == layout.DONE:
                return fields
        return None

    def resolve(self, wanted: str) -> Dict[str, Any]:
        """A backup by id, by shortcut (latest, last, oldest, first, last-failed) or by name."""
        backups = self.all()
        if BACKUP_ID_PATTERN.match(wanted):
            matches = [fields for fields in backups if fields["backup_id"] == wanted]
        elif wanted in _SHORTCUTS:
            matches = _by_shortcut(backups, wanted)
        else:
            matches = [fields for fields in backups if fields.get("backup_name") == wanted]
            if len(matches) > 1:
                raise PgCloudError(
                    "backup name %r matches %d backups (%s): use a backup id"
                    % (wanted, len(matches), ", ".join(fields["backup_id"] for fields in matches))
                )
        if not matches:
            raise BackupNotFoundError(
                "no backup %r of server %r at %s" % (wanted, self.destination.server_name, self.destination.url)
            )
        return matches[0]

    def wal_archived(self, wal_name: str) -> bool:
        """Whether barman-cloud-wal-archive (or the like) has stored this whole WAL file, compressed or not.

        Its `.partial` file (from a promotion) or a `.backup` history file share the name's
        start but cannot stand in for the segment, so only the compression suffixes count.
        """
        key = self.destination.key(*layout.wal_path(wal_name))
        return any(item.key[len(key):] in layout.WAL_SUFFIXES for item in self.store.list_objects(key))

    def objects(self, backup_id: str) -> List[Dict[str, Any]]:
        prefix = self.folder_key(backup_id) + "/"
        return [{"key": item.key, "size": item.size} for item in self.store.list_objects(prefix)]

    def keep_key(self, backup_id: str) -> str:
        return self.destination.key(*layout.annotation_parts(backup_id, layout.KEEP_ANNOTATION))

    def keep_target(self, backup_id: str, objects: Optional[List[Dict[str, Any]]] = None) -> Optional[str]:
        """`full` or `standalone` when the backup is kept (see layout.parse_keep), else None.

        With the folder's listing at hand, the annotation is read only when it is listed.
        """
        key = self.keep_key(backup_id)
        if objects is not None and not any(item["key"] == key for item in objects):
            return None
        data = self.store.get_object(key)
        return None if data is None else layout.parse_keep(data)


_SHORTCUTS = ("latest", "last", "oldest", "first", "last-failed")


def _by_shortcut(backups: List[Dict[str, Any]], wanted: str) -> List[Dict[str, Any]]:
    """The backup a shortcut names, in a list (empty when there is none)."""
    if wanted == "last-failed":
        return [fields for fields in backups if fields.get("status") == layout.FAILED][-1:]
    # Unreadable ones are invisible to the restore tools: never point at one of them.
    finished = [fields for fields in backups if fields.get("status") not in (layout.STARTED, "UNREADABLE")]
    return finished[-1:] if wanted in ("latest", "last") else finished[:1]


# An uncompressed archive holds whole 512-byte blocks, at least the two that end it.
_SMALLEST_TAR = 2 * tarfile.BLOCKSIZE


def check_objects(catalog: Catalog, fields: Dict[str, Any],
                  objects: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Whether the objects of a backup are all in the store, from a listing alone (nothing is read).

    backup.info names the archive groups (data and each tablespace's oid); each group needs its
    first archive and no gap in its `_NNNN` numbering, every archive a known extension, the same
    in all groups, and a size an archive can have. The backups of this collection record the
    bytes stored in `size`, which the listed sizes must add up to: that finds a lost last part
    or a truncated object too. Annotations (the keep of barman-cloud-backup-keep) belong to the
    backup but are not archives: they are neither checked nor counted. `objects` is the backup
    folder's listing, when the caller has it.
    """
    if objects is None:
        objects = catalog.objects(fields["backup_id"])
    folder = catalog.folder_key(fields["backup_id"]) + "/"
    listed, annotations = _split_listing(objects, folder)
    if fields.get("snapshots_info"):
        return _check_snapshot_objects(folder, listed, len(annotations))
    archives = _archives_by_group(listed)
    extensions = {extension for parts in archives.values() for extension in parts.values()}
    groups = [layout.DATA_GROUP] + [str(oid) for _name, oid, _location in fields.get("tablespaces") or []]
    missing = [folder + name for name in _missing_archives(groups, archives, extensions)]
    if layout.BACKUP_INFO not in listed:
        missing.append(folder + layout.BACKUP_INFO)
    mismatched = [{"key": folder + name, "size": size, "reason": problem}
                  for name, size, problem in _listed_problems(listed, extensions)]
    stored = sum(size for name, size in listed.items() if name != layout.BACKUP_INFO)
    expected = fields.get("size")
    if not missing:
        mismatched.extend(_size_mismatch(folder, stored, expected))
    return {"ok": not missing and not mismatched, "missing": missing, "mismatched": mismatched,
            "objects": len(listed) + len(annotations), "stored_size": stored, "recorded_size": expected}


def _size_mismatch(folder: str, stored: int, expected: Optional[int]) -> List[Dict[str, Any]]:
    """The total that differs from the size backup.info records (backups of this collection)."""
    if expected is None or stored == expected:
        return []
    return [{"key": folder, "size": stored,
             "reason": "the archives add up to %d bytes, backup.info records %d" % (stored, expected)}]


def _split_listing(objects: List[Dict[str, Any]], folder: str) -> Tuple[Dict[str, int], Dict[str, int]]:
    """(name -> size of the backup's own files, name -> size of its annotations), names below folder."""
    listed: Dict[str, int] = {}
    annotations: Dict[str, int] = {}
    annotation_prefix = layout.ANNOTATIONS_FOLDER + "/"
    for item in objects:
        name = item["key"][len(folder):] if item["key"].startswith(folder) else item["key"].rsplit("/", 1)[-1]
        if name.startswith(annotation_prefix):
            annotations[name[len(annotation_prefix):]] = item["size"]
        else:
            listed[name] = item["size"]
    return listed, annotations


def _missing_archives(groups: List[str], archives: Dict[str, Dict[int, str]], extensions: set) -> List[str]:
    """Names of the archives each group lacks: its first one, and any gap in its numbering."""
    missing: List[str] = []
    for group in groups:
        parts = archives.get(group, {})
        if 0 not in parts:
            missing.append(layout.archive_name(group, 0, _one(extensions)))
        missing.extend(layout.archive_name(group, number, _one(extensions))
                       for number in range(1, max(parts, default=0)) if number not in parts)
    return missing


def _listed_problems(listed: Dict[str, int], extensions: set) -> List[Tuple[str, int, str]]:
    problems = []
    for name, size in sorted(listed.items()):
        problem = _archive_problem(name, size, extensions)
        if problem:
            problems.append((name, size, problem))
    return problems


def _check_snapshot_objects(folder: str, listed: Dict[str, int], annotations: int) -> Dict[str, Any]:
    """A snapshot backup stores backup_label and backup.info; its data is in the disks' snapshots."""
    missing = [folder + name for name in (layout.BACKUP_LABEL, layout.BACKUP_INFO) if name not in listed]
    mismatched = [{"key": folder + name, "size": size, "reason": "empty" if name in (layout.BACKUP_LABEL, layout.BACKUP_INFO)
                   else "not an object of a snapshot backup"}
                  for name, size in sorted(listed.items())
                  if size == 0 or name not in (layout.BACKUP_LABEL, layout.BACKUP_INFO)]
    return {"ok": not missing and not mismatched, "missing": missing, "mismatched": mismatched,
            "objects": len(listed) + annotations, "stored_size": sum(listed.values()), "recorded_size": None}


def _archives_by_group(listed: Dict[str, int]) -> Dict[str, Dict[int, str]]:
    """group -> {archive number (0 for the first): extension}, for the archives the restore tools read."""
    archives: Dict[str, Dict[int, str]] = {}
    for name in listed:
        match = layout.ARCHIVE_NAME.match(name)
        # The restore tools skip an archive of an unknown extension: it counts as absent.
        if match and match.group("extension") in EXTENSIONS.values():
            number = int(match.group("number") or 0)
            archives.setdefault(match.group("group"), {})[number] = match.group("extension")
    return archives


def _archive_problem(name: str, size: int, extensions: set) -> Optional[str]:
    if name == layout.BACKUP_INFO:
        return None if size > 0 else "empty"
    match = layout.ARCHIVE_NAME.match(name)
    if match is None:
        return "not an object of a backup (the restore tools skip it)"
    extension = match.group("extension")
    if extension not in EXTENSIONS.values():
        return "unknown extension .%s (the restore tools skip it)" % extension
    if len(extensions) > 1:
        return "archives with different extensions (%s) in one backup" % ", ".join(sorted(extensions))
    if size == 0:
        return "empty"
    if extension == "tar" and (size < _SMALLEST_TAR or size % tarfile.BLOCKSIZE):
        return "an uncompressed archive must be whole 512-byte blocks, at least 1024 bytes"
    return None


def _one(extensions: set) -> str:
    """The extension of the backup's archives, to name a missing one; `tar*` when unknown."""
    return next(iter(extensions)) if len(extensions) == 1 else "tar*"
