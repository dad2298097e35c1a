# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One snapshot backup: the server's backup runs while the cloud snapshots its disks.

Before anything is written, the disks are found on the instance and on this host, and
PGDATA and every tablespace must lie on them. Then, as for a base backup, backup.info is
STARTED when the server's backup starts; the disks are snapshotted while it runs; after the
stop, backup_label is stored as an object of its own (no data archives), and backup.info
gets DONE with snapshots_info, which the reference restore tool recovers from.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from .. import layout
from .base_backup import BackupJob, check_backup_privileges
from ..config import BackupConfig, PostgresConfig, SnapshotConfig, StorageConfig
from ..errors import ConfigurationError
from ..postgres.session import BackupPoint, PostgresSession, ServerFacts
from ..snapshot.base import (
    Disk,
    HostView,
    SnapshotProvider,
    check_data_on_disks,
    locate_mounts,
    snapshot_name,
    snapshots_info,
)
from ..snapshot.factory import open_snapshot_provider
from ..results import BackupResult
from ..storage.base import ObjectStore

LOG = logging.getLogger("pgcloud.backup")


class SnapshotBackupJob(BackupJob):
    def __init__(self, storage: StorageConfig, postgres: PostgresConfig, snapshot: SnapshotConfig,
                 backup: BackupConfig, store: Optional[ObjectStore] = None,
                 provider: Optional[SnapshotProvider] = None, host: Optional[HostView] = None) -> None:
        _check_compatible(storage, backup)
        super().__init__(storage, postgres, backup.backup_name, store, backup.require_wal_archiving)
        self.snapshot = snapshot
        self.host = host or HostView.from_environment()
        self.provider = provider or open_snapshot_provider(snapshot, storage, self.host)
        self.disks: List[Disk] = []
        self.taken: List[Dict[str, Any]] = []
        self.label_key: Optional[str] = None
        self.label = b""

    def _prepare(self, facts: ServerFacts) -> None:
        check_backup_privileges(facts)
        instance = self.snapshot.snapshot_instance
        self.disks = self.provider.find_disks(instance, self.snapshot.snapshot_disks)
        locate_mounts(self.disks, self.host, instance)
        check_data_on_disks([facts.pgdata()] + [location for _name, _oid, location in facts.tablespaces],
                            self.disks, self.host)

    def _while_started(self, backup_id: str, session: PostgresSession, facts: ServerFacts,
                       info: layout.BackupInfo) -> None:
        # Snapshots may take long to complete; the session must outlive idle timeouts meanwhile.
        session.start_keepalive(self.postgres.keepalive_interval)
        self.taken = self.provider.take(self.disks, backup_id)
        info.snapshots_info = snapshots_info(self.provider, self.disks, self.taken)
        session.stop_keepalive()

    def _after_stop(self, backup_id: str, stop: BackupPoint, facts: ServerFacts) -> None:
        self.label_key = self._label_key(backup_id)
        self.label = (stop.label_file or "").encode("utf-8")
        self.store.put_object(self.label_key, self.label)

    def _written_objects(self) -> Dict[str, int]:
        return {self.label_key: len(self.label)} if self.label_key else {}

    def _abort(self) -> None:
        if self.taken:
            LOG.warning("the snapshots %s of the failed backup are kept; delete them when they are not needed",
                        ", ".join(item["snapshot_name"] for item in self.taken))

    def _copy_stats(self, copy_time: float, total_time: float) -> Dict[str, Any]:
        return {"copy_time": round(copy_time, 6), "total_time": round(total_time, 6)}

    def _server_name(self) -> str:
        return self.storage.server_name

    def _plan(self, facts: ServerFacts) -> Tuple[Dict[str, Any], str]:
        planned = [{
            "disk": disk.name,
            "device": disk.device,
            "mount_point": disk.mount.mount_point if disk.mount else None,
            "mount_options": disk.mount.mount_options if disk.mount else None,
            "snapshot_name": snapshot_name(disk.name, "<backup_id>"),
        } for disk in self.disks]
        plan = {
            "provider": self.provider.name,
            "instance": self.snapshot.snapshot_instance,
            "data_directory": facts.data_directory,
            "snapshots": planned,
        }
        return plan, "would snapshot %s of instance %s and record the backup in %s" % (
            ", ".join(disk.name for disk in self.disks), self.snapshot.snapshot_instance,
            self.store.destination.url_of(layout.BASE_FOLDER))

    def _details(self, info: Optional[Dict[str, Any]], taken: bool) -> Dict[str, Any]:
        return {"snapshots": _snapshot_results(info.get("snapshots_info") if info else None)}

    def _written_keys(self, backup_id: str) -> List[str]:
        return [self._label_key(backup_id), self.catalog.info_key(backup_id)]

    def _label_key(self, backup_id: str) -> str:
        return self.catalog.folder_key(backup_id) + "/" + layout.BACKUP_LABEL

    def _done_message(self, result: BackupResult) -> str:
        snapshots = result.details["snapshots"]
        return "backup %s DONE: %d snapshots (%s), %.1f s" % (
            result.backup_id, len(snapshots), ", ".join(item["snapshot_name"] for item in snapshots),
            result.elapsed_seconds)


def _check_compatible(storage: StorageConfig, backup: BackupConfig) -> None:
    if backup.compression:
        raise ConfigurationError(
            "compression cannot be used with snapshot backups: the data stays in the disk snapshots; "
            "remove compression", "compression")
    if storage.kms_key_name:
        raise ConfigurationError(
            "kms_key_name cannot be used with snapshot backups: only backup.info and backup_label are uploaded, "
            "and disk snapshots are encrypted by the disk's own settings; remove kms_key_name", "kms_key_name")


def _snapshot_results(info: Optional[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One flat dict per snapshot, for the module's result."""
    if not info:
        return []
    results = []
    for item in info.get("snapshots", []):
        entry = dict(item.get("provider", {}))
        entry.update(item.get("mount", {}))
        results.append(entry)
    return results
