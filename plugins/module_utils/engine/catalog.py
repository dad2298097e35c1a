# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backups of one server at a destination, read the way the reference readers read them."""

from __future__ import annotations

import logging
import tarfile
from typing import Any, Dict, List, Optional

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
        elif wanted in ("latest", "last", "oldest", "first"):
            # Unreadable ones are invisible to the restore tools: never point at one of them.
            finished = [fields for fields in backups if fields.get("status") not in (layout.STARTED, "UNREADABLE")]
            matches = finished[-1:] if wanted in ("latest", "last") else finished[:1]
        elif wanted == "last-failed":
            matches = [fields for fields in backups if fields.get("status") == layout.FAILED][-1:]
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


# An uncompressed archive holds whole 512-byte blocks, at least the two that end it.
_SMALLEST_TAR = 2 * tarfile.BLOCKSIZE


def check_objects(catalog: Catalog, fields: Dict[str, Any],
                  objects: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Whether the objects of a backup are all in the store, from a listing alone (nothing is read).

    backup.info names the archive groups (data and each tablespace's oid); each group needs its
    first archive and no gap in its `_NNNN` numbering, every archive a known extension, the same
    in all groups, and a size an archive can have. The backups of this collection record the
    bytes stored in `size`, which the listed sizes must add up to: that finds a lost last part
    or a truncated object too. `objects` is the backup folder's listing, when the caller has it.
    """
    if objects is None:
        objects = catalog.objects(fields["backup_id"])
    listed = {item["key"].rsplit("/", 1)[-1]: item["size"] for item in objects}
    folder = catalog.folder_key(fields["backup_id"]) + "/"
    if fields.get("snapshots_info"):
        return _check_snapshot_objects(folder, listed)
    groups = [layout.DATA_GROUP] + [str(oid) for _name, oid, _location in fields.get("tablespaces") or []]
    missing: List[str] = []
    mismatched: List[Dict[str, Any]] = []
    archives = _archives_by_group(listed)
    extensions = {extension for parts in archives.values() for extension in parts.values()}
    for group in groups:
        parts = archives.get(group, {})
        if 0 not in parts:
            missing.append(folder + layout.archive_name(group, 0, _one(extensions)))
        for number in range(1, max(parts, default=0)):
            if number not in parts:
                missing.append(folder + layout.archive_name(group, number, _one(extensions)))
    if layout.BACKUP_INFO not in listed:
        missing.append(folder + layout.BACKUP_INFO)
    for name, size in sorted(listed.items()):
        problem = _archive_problem(name, size, extensions)
        if problem:
            mismatched.append({"key": folder + name, "size": size, "reason": problem})
    stored = sum(size for name, size in listed.items() if name != layout.BACKUP_INFO)
    expected = fields.get("size")
    if expected is not None and not missing and stored != expected:
        mismatched.append({"key": folder, "size": stored,
                           "reason": "the archives add up to %d bytes, backup.info records %d" % (stored, expected)})
    return {"ok": not missing and not mismatched, "missing": missing, "mismatched": mismatched,
            "objects": len(listed), "stored_size": stored, "recorded_size": expected}


def _check_snapshot_objects(folder: str, listed: Dict[str, int]) -> Dict[str, Any]:
    """A snapshot backup stores backup_label and backup.info; its data is in the disks' snapshots."""
    missing = [folder + name for name in (layout.BACKUP_LABEL, layout.BACKUP_INFO) if name not in listed]
    mismatched = [{"key": folder + name, "size": size, "reason": "empty" if name in (layout.BACKUP_LABEL, layout.BACKUP_INFO)
                   else "not an object of a snapshot backup"}
                  for name, size in sorted(listed.items())
                  if size == 0 or name not in (layout.BACKUP_LABEL, layout.BACKUP_INFO)]
    return {"ok": not missing and not mismatched, "missing": missing, "mismatched": mismatched,
            "objects": len(listed), "stored_size": sum(listed.values()), "recorded_size": None}


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
