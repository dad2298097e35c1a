# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backups of one server at a destination, read the way the reference readers read them."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from . import backup_info
from .config import BACKUP_ID_PATTERN
from .errors import BackupNotFoundError, PgCloudError
from .storage import ObjectStore

LOG = logging.getLogger("pgcloud.backup")


class Catalog:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.destination = store.destination

    def info_key(self, backup_id: str) -> str:
        return self.destination.key("base", backup_id, "backup.info")

    def folder_key(self, backup_id: str) -> str:
        return self.destination.key("base", backup_id)

    def backup_ids(self) -> List[str]:
        folders = self.store.list_folders(self.destination.key("base") + "/")
        return sorted(name for name in folders if BACKUP_ID_PATTERN.match(name))

    def read(self, backup_id: str) -> Optional[Dict[str, Any]]:
        """The parsed backup.info with its id, or None if the folder holds none."""
        data = self.store.get_object(self.info_key(backup_id))
        if data is None:
            return None
        try:
            fields = backup_info.parse(data)
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
            if fields.get("backup_name") == name and fields.get("status") == backup_info.DONE:
                return fields
        return None

    def resolve(self, wanted: str) -> Dict[str, Any]:
        """A backup by id, by shortcut (latest, last, oldest, first, last-failed) or by name."""
        backups = self.all()
        if BACKUP_ID_PATTERN.match(wanted):
            matches = [fields for fields in backups if fields["backup_id"] == wanted]
        elif wanted in ("latest", "last", "oldest", "first"):
            # Unreadable ones are invisible to the restore tools: never point at one of them.
            finished = [fields for fields in backups if fields.get("status") not in (backup_info.STARTED, "UNREADABLE")]
            matches = finished[-1:] if wanted in ("latest", "last") else finished[:1]
        elif wanted == "last-failed":
            matches = [fields for fields in backups if fields.get("status") == backup_info.FAILED][-1:]
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
        """Whether barman-cloud-wal-archive (or the like) has stored this WAL file, compressed or not."""
        key = self.destination.key("wals", wal_name[:16], wal_name)
        return any(item.key == key or item.key.startswith(key + ".") for item in self.store.list_objects(key))

    def objects(self, backup_id: str) -> List[Dict[str, Any]]:
        prefix = self.folder_key(backup_id) + "/"
        return [{"key": item.key, "size": item.size} for item in self.store.list_objects(prefix)]
