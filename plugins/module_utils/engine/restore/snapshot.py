# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recovery of a snapshot backup, whose data is on disks made from its snapshots.

The disks are created from the snapshots and attached to the recovery instance, and mounted,
by the user (the cloud's tools). This checks, through the compute API and the host's mount
table, that each snapshot of backup.info has a disk made from it attached to
`snapshot_recovery_instance`, and that this disk is mounted where the backup recorded it, with
the same options; and that target_directory lies on those disks. Only then is backup_label put
in place (the snapshots hold the data as it was during the backup, without it), the source's
stale postmaster.pid removed, and the recovery settings written. Nothing is downloaded but
backup_label.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

from .. import layout
from ..config import SNAPSHOT_PROVIDERS, SnapshotConfig, StorageConfig
from ..errors import ConfigurationError, SnapshotPreconditionError
from ..storage.base import ObjectStore
from ..snapshot.base import Disk, HostView, Mount
from .options import RestoreConfig
from .recovery import signal_file, write_recovery

PID_FILE = "postmaster.pid"
# backup.info's provider name -> the cloud_provider whose compute API holds its snapshots.
CLOUD_PROVIDERS = {provider: cloud for cloud, provider in SNAPSHOT_PROVIDERS.items()}


def check_snapshot_request(fields: Dict[str, Any], options: RestoreConfig) -> None:
    """A snapshot backup needs the recovery instance; a base backup must not get one."""
    backup_id = fields["backup_id"]
    if fields.get("snapshots_info") and not options.snapshot_recovery_instance:
        raise ConfigurationError(
            "backup %s is a snapshot backup: its data is in the disks' snapshots; create a disk from each snapshot, "
            "attach and mount them on the recovery instance as the backup records (backup_info shows it), and give "
            "that instance in snapshot_recovery_instance" % backup_id, "snapshot_recovery_instance")
    if not fields.get("snapshots_info") and options.snapshot_recovery_instance:
        raise ConfigurationError("backup %s is not a snapshot backup: remove snapshot_recovery_instance"
                                 % backup_id, "snapshot_recovery_instance")
    if fields.get("snapshots_info") and options.tablespaces:
        raise ConfigurationError("backup %s is a snapshot backup: its tablespaces are on the disks, where the backup "
                                 "recorded them, and cannot be relocated; remove tablespaces" % backup_id,
                                 "tablespaces")


def snapshot_config(fields: Dict[str, Any], options: RestoreConfig) -> SnapshotConfig:
    """The compute API settings of the recovery instance: the backup's region, unless given."""
    info = fields["snapshots_info"]
    provider = str(info.get("provider"))
    if provider not in CLOUD_PROVIDERS:
        raise SnapshotPreconditionError("backup %s has snapshots of an unknown provider %r" % (fields["backup_id"],
                                                                                               provider))
    recorded = info.get("provider_info") or {}
    names = [str(item.get("provider", {}).get("snapshot_name")) for item in info.get("snapshots") or []]
    return SnapshotConfig(
        snapshot_instance=str(options.snapshot_recovery_instance), snapshot_disks=names,
        cloud_provider=CLOUD_PROVIDERS[provider], aws_region=options.aws_region or recorded.get("region"),
        azure_subscription_id=options.azure_subscription_id or recorded.get("subscription_id"),
        azure_resource_group=options.azure_resource_group or recorded.get("resource_group"),
        gcp_project=options.gcp_project or recorded.get("project"), gcp_zone=options.gcp_zone)


def check_disks(snapshots: List[Dict[str, Any]], disks: Dict[str, Disk], host: HostView, instance: str) -> List[str]:
    """Each snapshot's disk attached and mounted as recorded; returns the mount points."""
    problems, mount_points = [], []
    for item in snapshots:
        name = item.get("provider", {}).get("snapshot_name")
        wanted = item.get("mount") or {}
        disk = disks.get(name)
        if disk is None:
            problems.append("no disk made from snapshot %s is attached to %s" % (name, instance))
            continue
        mount: Optional[Mount] = host.mount_of_device(disk.device)
        if mount is None:
            problems.append("disk %s (from snapshot %s, %s) is not mounted; mount it at %s"
                            % (disk.name, name, disk.device, wanted.get("mount_point")))
        elif mount.mount_point != wanted.get("mount_point"):
            problems.append("disk %s (from snapshot %s) is mounted at %s; the backup needs it at %s"
                            % (disk.name, name, mount.mount_point, wanted.get("mount_point")))
        elif wanted.get("mount_options") and mount.mount_options != wanted.get("mount_options"):
            problems.append("disk %s (from snapshot %s) is mounted at %s with options %s; the backup's were %s"
                            % (disk.name, name, mount.mount_point, mount.mount_options, wanted.get("mount_options")))
        else:
            mount_points.append(mount.mount_point)
    if problems:
        raise SnapshotPreconditionError("the snapshot backup cannot be recovered on %s: %s" % (
            instance, "; ".join(problems)))
    return mount_points


def check_target(target: str, mount_points: List[str], host: HostView, fields: Dict[str, Any]) -> None:
    mount = host.mount_containing(target)
    if mount is None or mount.mount_point not in mount_points or not os.path.isdir(target):
        raise ConfigurationError(
            "target_directory %s is not a folder on the disks made from the snapshots (mounted at %s): give the data "
            "directory on them (the backup's was %s)" % (target, ", ".join(mount_points), fields.get("pgdata")),
            "target_directory")
    if not os.path.isfile(os.path.join(target, "PG_VERSION")):
        raise ConfigurationError("target_directory %s holds no PG_VERSION: it is not the data directory of the "
                                 "snapshots (the backup's was %s)" % (target, fields.get("pgdata")),
                                 "target_directory")
    if postgres_running(os.path.join(target, PID_FILE)):
        raise ConfigurationError("target_directory %s belongs to a running PostgreSQL server: stop it first" % target,
                                 "target_directory")


def postgres_running(pid_file: str) -> bool:
    """Whether the pid file names a live PostgreSQL process of this host: the snapshot's copy
    names the source's server, whose pid may be any process here."""
    try:
        with open(pid_file, encoding="utf-8") as handle:
            pid = int(handle.readline().strip() or 0)
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            command = handle.read()
    except (OSError, ValueError):
        return False
    return b"postgres" in command or b"postmaster" in command


def recover_snapshot_backup(store: ObjectStore, storage: StorageConfig, options: RestoreConfig,
                            fields: Dict[str, Any], settings: Dict[str, str], check_mode: bool) -> Dict[str, Any]:
    from ..snapshot.factory import open_snapshot_provider

    started = time.monotonic()
    config = snapshot_config(fields, options)
    host = HostView.from_environment()
    snapshots = fields["snapshots_info"].get("snapshots") or []
    provider = open_snapshot_provider(config, storage, host)
    disks = provider.disks_from_snapshots(config.snapshot_instance, [item.get("provider", {}) for item in snapshots])
    mount_points = check_disks(snapshots, disks, host, config.snapshot_instance)
    target = options.target_directory
    check_target(target, mount_points, host, fields)
    label_key = store.destination.key(*layout.backup_folder(fields["backup_id"]), layout.BACKUP_LABEL)
    result = snapshot_result(fields, options, disks, snapshots, settings)
    if check_mode:
        result.update(changed=True, msg="would put backup_label of backup %s into %s, on the disks of its snapshots"
                      % (fields["backup_id"], target))
        return result
    label = store.get_object(label_key)
    if label is None:
        raise SnapshotPreconditionError("backup %s has no backup_label in the store (%s): it cannot be recovered"
                                        % (fields["backup_id"], label_key))
    written = [_write_file(os.path.join(target, layout.BACKUP_LABEL), label)]
    if os.path.lexists(os.path.join(target, PID_FILE)):
        os.unlink(os.path.join(target, PID_FILE))
    written += write_recovery(target, options, settings, fields["backup_id"])
    result.update(changed=True, files_written=len(written), bytes_written=len(label), written_files=written,
                  elapsed_seconds=round(time.monotonic() - started, 3),
                  msg="put backup_label of snapshot backup %s into %s, on the disks made from %s" % (
                      fields["backup_id"], target, ", ".join(sorted(disks))))
    return result


def snapshot_result(fields: Dict[str, Any], options: RestoreConfig, disks: Dict[str, Disk],
                    snapshots: List[Dict[str, Any]], settings: Dict[str, str]) -> Dict[str, Any]:
    return {
        "backup_id": fields["backup_id"], "backup_name": fields.get("backup_name"),
        "begin_time": layout.describe_time(fields.get("begin_time")),
        "end_time": layout.describe_time(fields.get("end_time")),
        "target_directory": options.target_directory, "tablespaces": [], "archives": [],
        "bytes_downloaded": 0, "bytes_written": 0, "files_written": 0, "written_files": [],
        "verified": False, "verify_message": "a snapshot backup has no backup_manifest to verify",
        "recovery_settings": settings, "signal_file": signal_file(options), "elapsed_seconds": 0.0,
        "snapshot_disks": [{"snapshot_name": item.get("provider", {}).get("snapshot_name"),
                            "disk": disks[item["provider"]["snapshot_name"]].name,
                            "device": disks[item["provider"]["snapshot_name"]].device,
                            "mount_point": (item.get("mount") or {}).get("mount_point")} for item in snapshots],
    }


def _write_file(path: str, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    return path
