# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compute Engine disk snapshots, through google-cloud-compute (REST).

Credentials are Google's application default credentials of the host.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional

from ..config import SnapshotConfig, StorageConfig
from ..errors import MissingDependencyError, SnapshotError, SnapshotPreconditionError
from .base import Disk, HostView, SnapshotProvider, snapshot_name

try:
    from google.api_core import exceptions as google_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import compute_v1
except ImportError as error:  # pragma: no cover - depends on the host
    compute_v1 = None
    GOOGLE_IMPORT_ERROR: Optional[ImportError] = error
else:
    GOOGLE_IMPORT_ERROR = None

LOG = logging.getLogger("pgcloud.backup")
# Compute Engine has no timeout option of the reference tool; a disk snapshot that takes
# longer than this is stuck rather than slow.
WAIT_TIMEOUT = 3600


class GcpSnapshots(SnapshotProvider):
    name = "gcp"
    snapshot_fields = ("device_name", "snapshot_name", "snapshot_project")

    def __init__(self, config: SnapshotConfig, storage: StorageConfig, host: HostView, credentials: Any = None,
                 client_options: Optional[Dict[str, Any]] = None) -> None:
        if compute_v1 is None:
            raise MissingDependencyError("google-cloud-compute", "snapshot backups on Google Cloud",
                                         GOOGLE_IMPORT_ERROR)
        self.project = config.gcp_project
        self.zone = config.gcp_zone
        self.host = host
        arguments = {"credentials": credentials, "client_options": client_options, "transport": "rest"}
        try:
            self.instances = compute_v1.InstancesClient(**arguments)
            self.disks = compute_v1.DisksClient(**arguments)
            self.snapshots = compute_v1.SnapshotsClient(**arguments)
            # The operation client that the SDK makes for insert() ignores client_options, so
            # operations are waited for with one made here, on the same endpoint.
            self.operations = compute_v1.GlobalOperationsClient(**arguments)
        except auth_exceptions.DefaultCredentialsError as error:
            raise SnapshotError("no Google Cloud credentials for the snapshots (%s): set up application default "
                                "credentials on the host, or give the instance a service account" % error)

    def _call(self, action: str, call: Any, **kwargs: Any) -> Any:
        try:
            return call(**kwargs)
        except google_exceptions.GoogleAPICallError as error:
            raise SnapshotError("Compute Engine refused to %s (%s); check gcp_project, gcp_zone and the "
                                "service account's roles" % (action, error))
        except auth_exceptions.GoogleAuthError as error:
            raise SnapshotError("no usable Google Cloud credentials to %s: %s" % (action, error))

    def find_disks(self, instance: str, names: List[str]) -> List[Disk]:
        try:
            found = self.instances.get(project=self.project, zone=self.zone, instance=instance)
        except google_exceptions.NotFound:
            raise SnapshotPreconditionError(
                "cannot find compute instance %s in project %s, zone %s: check snapshot_instance, gcp_project and "
                "gcp_zone" % (instance, self.project, self.zone))
        except (google_exceptions.GoogleAPICallError, auth_exceptions.GoogleAuthError) as error:
            raise SnapshotError("Compute Engine refused to get instance %s (%s)" % (instance, error))
        attached = {item.source.rsplit("/", 1)[-1]: item for item in found.disks if item.source}
        missing = [name for name in names if name not in attached]
        if missing:
            raise SnapshotPreconditionError(
                "cannot find disks attached to compute instance %s: %s; name disks attached to it in snapshot_disks"
                % (instance, ", ".join(missing)))
        disks = []
        for name in names:
            self._call("get disk %s" % name, self.disks.get, project=self.project, zone=self.zone, disk=name)
            device_name = attached[name].device_name
            disks.append(Disk(name, "/dev/disk/by-id/google-%s" % device_name, {"device_name": device_name}))
        return disks

    def disks_from_snapshots(self, instance: str, snapshots: List[Dict[str, Any]]) -> Dict[str, Disk]:
        try:
            found = self.instances.get(project=self.project, zone=self.zone, instance=instance)
        except google_exceptions.NotFound:
            raise SnapshotPreconditionError(
                "cannot find compute instance %s in project %s, zone %s: check snapshot_recovery_instance, "
                "gcp_project and gcp_zone" % (instance, self.project, self.zone))
        except (google_exceptions.GoogleAPICallError, auth_exceptions.GoogleAuthError) as error:
            raise SnapshotError("Compute Engine refused to get instance %s (%s)" % (instance, error))
        wanted = {str(item.get("snapshot_name")) for item in snapshots}
        disks: Dict[str, Disk] = {}
        for attached in found.disks:
            if not attached.source:
                continue
            name = attached.source.rsplit("/", 1)[-1]
            disk = self._call("get disk %s" % name, self.disks.get, project=self.project, zone=self.zone, disk=name)
            snapshot = (disk.source_snapshot or "").rsplit("/", 1)[-1]
            if snapshot in wanted and snapshot not in disks:
                disks[snapshot] = Disk(name, "/dev/disk/by-id/google-%s" % attached.device_name,
                                       {"device_name": attached.device_name})
        return disks

    def take(self, disks: List[Disk], backup_id: str) -> List[Dict[str, Any]]:
        operations = []
        for disk in disks:
            name = snapshot_name(disk.name, backup_id)
            LOG.info("taking snapshot %s of disk %s", name, disk.name)
            resource = compute_v1.Snapshot(
                name=name, source_disk="projects/%s/zones/%s/disks/%s" % (self.project, self.zone, disk.name))
            operation = self._call("snapshot disk %s" % disk.name, self.snapshots.insert_unary, project=self.project,
                                   snapshot_resource=resource)
            operations.append((name, disk, operation))
        taken = []
        for name, disk, operation in operations:
            self._wait(name, operation)
            taken.append({"device_name": disk.details["device_name"], "snapshot_name": name,
                          "snapshot_project": self.project})
        return taken

    def _wait(self, name: str, operation: Any) -> None:
        """Wait on the global operation (each wait call returns when it is done or after about two minutes)."""
        deadline = time.monotonic() + WAIT_TIMEOUT
        while operation.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise SnapshotError("snapshot %s did not complete within %d s" % (name, WAIT_TIMEOUT))
            operation = self._call("wait for snapshot %s" % name, self.operations.wait, project=self.project,
                                   operation=operation.name)
        errors = [item.message or item.code for item in operation.error.errors] if operation.error else []
        if errors:
            raise SnapshotError("snapshot %s failed: %s" % (name, "; ".join(errors)))
        for warning in operation.warnings:
            LOG.warning("snapshot %s: %s", name, warning.message)

    def provider_info(self) -> Dict[str, Any]:
        return {"project": self.project}
