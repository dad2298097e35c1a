# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure managed disk snapshots, through azure-mgmt-compute and azure-identity.

Snapshots are incremental (Azure bills the changed blocks only) copies of the managed data
disks of the VM; a data disk at LUN n is /dev/disk/azure/scsi1/lun<n> on the VM, a link the
Azure udev rules create.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from ..config import SnapshotConfig, StorageConfig
from ..errors import ConfigurationError, MissingDependencyError, SnapshotError, SnapshotPreconditionError, first_line
from .base import Disk, HostView, SnapshotProvider, snapshot_name

try:
    from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError
    from azure.identity import AzureCliCredential, DefaultAzureCredential, ManagedIdentityCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.compute.models import CreationData, Snapshot
except ImportError as error:  # pragma: no cover - depends on the host
    ComputeManagementClient = None
    AZURE_IMPORT_ERROR: Optional[ImportError] = error
else:
    AZURE_IMPORT_ERROR = None

LOG = logging.getLogger("pgcloud.backup")
# The reference tool has no timeout option for Azure; a snapshot stuck longer than this has failed.
WAIT_TIMEOUT = 3600
DEVICE_PATTERN = "/dev/disk/azure/scsi1/lun%d"


def credential_for(kind: Optional[str]) -> Any:
    """The azure-identity credential that azure_credential names (the default chain when unset)."""
    if kind == "azure-cli":
        return AzureCliCredential()
    if kind == "managed-identity":
        return ManagedIdentityCredential()
    if kind in (None, "default"):
        return DefaultAzureCredential()
    raise ConfigurationError("azure_credential=%r is not one of azure-cli, managed-identity, default" % kind,
                             "azure_credential")


class AzureSnapshots(SnapshotProvider):
    name = "azure"
    snapshot_fields = ("location", "lun", "snapshot_name")

    def __init__(self, config: SnapshotConfig, storage: StorageConfig, host: HostView, credential: Any = None,
                 client_options: Optional[Dict[str, Any]] = None) -> None:
        if ComputeManagementClient is None:
            raise MissingDependencyError("azure-mgmt-compute", "snapshot backups on Azure", AZURE_IMPORT_ERROR)
        self.subscription_id = config.azure_subscription_id
        self.resource_group = config.azure_resource_group
        self.host = host
        self.location: Optional[str] = None
        self.client = ComputeManagementClient(credential or credential_for(storage.azure_credential),
                                              self.subscription_id, **(client_options or {}))

    def _call(self, action: str, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except AzureError as error:
            raise _snapshot_error(action, error)

    def find_disks(self, instance: str, names: List[str]) -> List[Disk]:
        try:
            vm = self.client.virtual_machines.get(self.resource_group, instance)
        except ResourceNotFoundError:
            raise SnapshotPreconditionError(
                "cannot find compute instance %s in resource group %s: check snapshot_instance and "
                "azure_resource_group" % (instance, self.resource_group))
        except AzureError as error:
            raise _snapshot_error("get VM %s" % instance, error)
        self.location = vm.location
        attached = {disk.name: disk for disk in (vm.storage_profile.data_disks or [])}
        missing = [name for name in names if name not in attached or attached[name].managed_disk is None]
        if missing:
            raise SnapshotPreconditionError(
                "cannot find disks attached to compute instance %s: %s; name managed data disks of the VM in "
                "snapshot_disks" % (instance, ", ".join(missing)))
        return [Disk(name, DEVICE_PATTERN % attached[name].lun,
                     {"lun": attached[name].lun, "disk_id": attached[name].managed_disk.id}) for name in names]

    def disks_from_snapshots(self, instance: str, snapshots: List[Dict[str, Any]]) -> Dict[str, Disk]:
        try:
            vm = self.client.virtual_machines.get(self.resource_group, instance)
        except ResourceNotFoundError:
            raise SnapshotPreconditionError(
                "cannot find compute instance %s in resource group %s: check snapshot_recovery_instance and "
                "azure_resource_group" % (instance, self.resource_group))
        except AzureError as error:
            raise _snapshot_error("get VM %s" % instance, error)
        wanted = {str(item.get("snapshot_name")) for item in snapshots}
        disks: Dict[str, Disk] = {}
        for attached in vm.storage_profile.data_disks or []:
            if attached.managed_disk is None:
                continue
            # The disk's own resource group, from its id (.../resourceGroups/<group>/.../disks/<name>).
            parts = str(attached.managed_disk.id).split("/")
            group = parts[parts.index("resourceGroups") + 1] if "resourceGroups" in parts else self.resource_group
            disk = self._call("get disk %s" % attached.name, self.client.disks.get, group, parts[-1])
            source = getattr(getattr(disk, "creation_data", None), "source_resource_id", None) or ""
            snapshot = source.rsplit("/", 1)[-1]
            if snapshot in wanted and snapshot not in disks:
                disks[snapshot] = Disk(attached.name, DEVICE_PATTERN % attached.lun,
                                       {"lun": attached.lun, "disk_id": attached.managed_disk.id})
        return disks

    def take(self, disks: List[Disk], backup_id: str) -> List[Dict[str, Any]]:
        pollers = []
        for disk in disks:
            name = snapshot_name(disk.name, backup_id)
            LOG.info("taking snapshot %s of disk %s", name, disk.name)
            resource = Snapshot(location=self.location, incremental=True,
                                creation_data=CreationData(create_option="Copy",
                                                           source_resource_id=disk.details["disk_id"]))
            poller = self._call("snapshot disk %s" % disk.name, self.client.snapshots.begin_create_or_update,
                                self.resource_group, name, resource)
            pollers.append((name, disk, poller))
        taken = []
        for name, disk, poller in pollers:
            snapshot = self._call("wait for snapshot %s" % name, poller.result, WAIT_TIMEOUT)
            if not poller.done():
                raise SnapshotError("snapshot %s did not complete within %d s" % (name, WAIT_TIMEOUT))
            state = getattr(snapshot, "provisioning_state", None)
            if str(state).lower() != "succeeded":
                raise SnapshotError("snapshot %s ended in state %s" % (name, state))
            taken.append({"location": self.location, "lun": disk.details["lun"], "snapshot_name": name})
        return taken

    def provider_info(self) -> Dict[str, Any]:
        return {"subscription_id": self.subscription_id, "resource_group": self.resource_group}


def _snapshot_error(action: str, error: BaseException) -> SnapshotError:
    if isinstance(error, ClientAuthenticationError):
        return SnapshotError("Azure refused the credentials to %s (%s); check azure_credential and the role "
                             "assignments of the identity" % (action, first_line(error)))
    return SnapshotError("Azure failed to %s: %s" % (action, first_line(error)))
