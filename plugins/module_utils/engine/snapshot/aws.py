# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 volume snapshots, through boto3.

The EC2 endpoint is boto3's for the region; the AWS_ENDPOINT_URL_EC2 environment variable
that botocore honours points it elsewhere (a private endpoint, or a test double).
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, Callable, Dict, List, Optional

from ..config import SnapshotConfig, StorageConfig
from ..errors import ConfigurationError, MissingDependencyError, SnapshotError, SnapshotPreconditionError
from .base import Disk, HostView, SnapshotProvider, snapshot_name
from ..storage.s3 import aws_session

try:
    import boto3
    import botocore.exceptions
except ImportError as error:  # pragma: no cover - depends on the host
    boto3 = None
    BOTO3_IMPORT_ERROR: Optional[ImportError] = error
else:
    BOTO3_IMPORT_ERROR = None

LOG = logging.getLogger("pgcloud.backup")
WAITER_DELAY = 15
# Instances in these states still have their volumes attached.
LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]
# Root devices of EC2 images: a snapshot backup needs PGDATA on a data volume.
ROOT_DEVICES = ("/dev/sda1", "/dev/xvda")


class AwsSnapshots(SnapshotProvider):
    name = "aws"
    # The option that named the instance, for messages (snapshot_recovery_instance in a restore).
    instance_option = "snapshot_instance"
    snapshot_fields = ("device_name", "snapshot_id", "snapshot_name", "snapshot_lock_mode")

    def __init__(self, config: SnapshotConfig, storage: StorageConfig, host: HostView) -> None:
        if boto3 is None:
            raise MissingDependencyError("boto3", "snapshot backups on AWS", BOTO3_IMPORT_ERROR)
        self.config = config
        self.tags = storage.tags
        self.host = host
        self.account_id: Optional[str] = None
        self.outpost_arn: Optional[str] = None
        self.region, self.client = self._client(storage)

    def _client(self, storage: StorageConfig):
        session = aws_session(storage)
        region = self.config.aws_region or session.region_name
        if not region:
            raise ConfigurationError(
                "no AWS region for the snapshots: set aws_region to the region of the instance", "aws_region")
        return region, session.client("ec2", region_name=region)

    def _call(self, action: str, call: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return call(**kwargs)
        except botocore.exceptions.NoCredentialsError:
            raise SnapshotError("no AWS credentials found to %s: set aws_access_key and aws_secret_key, aws_profile, "
                                "or the AWS_* environment variables of the host" % action)
        except botocore.exceptions.ClientError as error:
            details = error.response.get("Error", {})
            raise SnapshotError("EC2 refused to %s (%s: %s); check the instance, the volumes and the IAM policy"
                                % (action, details.get("Code"), details.get("Message")))
        except botocore.exceptions.BotoCoreError as error:
            raise SnapshotError("EC2 failed to %s: %s" % (action, error))

    # --- instance and volumes ------------------------------------------------------------------

    def _instance(self, instance: str) -> Dict[str, Any]:
        key = "instance-id" if instance.startswith("i-") else "tag:Name"
        response = self._call("find instance %s" % instance, self.client.describe_instances,
                              Filters=[{"Name": key, "Values": [instance]},
                                       {"Name": "instance-state-name", "Values": LIVE_STATES}])
        found = [(reservation.get("OwnerId"), item) for reservation in response.get("Reservations", [])
                 for item in reservation.get("Instances", [])]
        if not found:
            raise SnapshotPreconditionError(
                "cannot find compute instance %s in region %s: check %s (an instance id or Name tag) "
                "and aws_region" % (instance, self.region, self.instance_option))
        if len(found) > 1:
            raise SnapshotPreconditionError(
                "snapshot_instance=%s names %d instances (%s): use the instance id"
                % (instance, len(found), ", ".join(item["InstanceId"] for _owner, item in found)))
        self.account_id, item = found[0]
        return item

    def find_disks(self, instance: str, names: List[str]) -> List[Disk]:
        item = self._instance(instance)
        instance_id = item["InstanceId"]
        self.outpost_arn = item.get("OutpostArn")
        if self.outpost_arn and self.config.aws_snapshot_lock_mode:
            raise SnapshotPreconditionError(
                "instance %s runs on the Outpost %s, where EC2 cannot lock snapshots: remove aws_snapshot_lock_mode"
                % (instance, self.outpost_arn))
        root = item.get("RootDeviceName")
        response = self._call("list the volumes of %s" % instance_id, self.client.describe_volumes,
                              Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])
        volumes = response.get("Volumes", [])
        disks, missing = [], []
        for name in names:
            volume = _volume_named(volumes, name)
            attachment = _attachment(volume, instance_id) if volume else None
            if volume is None or attachment is None or attachment.get("Device") == root:
                missing.append(name)
                continue
            device_name = attachment["Device"]
            if device_name in ROOT_DEVICES:
                raise SnapshotPreconditionError(
                    "disk %s is attached as %s, the root device: snapshot backups need PGDATA on a data volume"
                    % (name, device_name))
            disks.append(Disk(name, self._host_device(volume["VolumeId"], device_name),
                              {"volume_id": volume["VolumeId"], "device_name": device_name}))
        if missing:
            raise SnapshotPreconditionError(
                "cannot find disks attached to compute instance %s: %s; name data volumes attached to it in "
                "snapshot_disks, by volume id or Name tag" % (instance, ", ".join(missing)))
        return disks

    def disks_from_snapshots(self, instance: str, snapshots: List[Dict[str, Any]]) -> Dict[str, Disk]:
        self.instance_option = "snapshot_recovery_instance"
        instance_id = self._instance(instance)["InstanceId"]
        response = self._call("list the volumes of %s" % instance_id, self.client.describe_volumes,
                              Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])
        names = {item.get("snapshot_id"): item.get("snapshot_name") for item in snapshots}
        found: Dict[str, Disk] = {}
        for volume in response.get("Volumes", []):
            attachment = _attachment(volume, instance_id)
            name = names.get(volume.get("SnapshotId"))
            if attachment is None or name is None or name in found:
                continue
            device_name = attachment["Device"]
            found[name] = Disk(volume["VolumeId"], self._host_device(volume["VolumeId"], device_name),
                               {"volume_id": volume["VolumeId"], "device_name": device_name})
        return found

    def _host_device(self, volume_id: str, device_name: str) -> str:
        """The block device of the volume: NVMe volumes report their id as serial, others keep or
        rename (sdX -> xvdX) the name given at attachment."""
        serial = volume_id.replace("-", "")
        for block, found in self.host.block_serials().items():
            if found.replace("-", "") == serial:
                return "/dev/" + block
        base = os.path.basename(device_name)
        for candidate in (base, re.sub(r"^(sd|hd)", "xvd", base)):
            if self.host.exists("/sys/block/" + candidate):
                return "/dev/" + candidate
        return device_name

    # --- snapshots -----------------------------------------------------------------------------

    def take(self, disks: List[Disk], backup_id: str) -> List[Dict[str, Any]]:
        taken = []
        for disk in disks:
            name = snapshot_name(disk.name, backup_id)
            tags = [{"Key": "Name", "Value": name}] + [{"Key": key, "Value": value} for key, value in self.tags.items()]
            LOG.info("taking snapshot %s of volume %s", name, disk.details["volume_id"])
            # On an Outpost the snapshot stays there, beside its volume.
            outpost = {"OutpostArn": self.outpost_arn} if self.outpost_arn else {}
            response = self._call("snapshot volume %s" % disk.details["volume_id"], self.client.create_snapshot,
                                  VolumeId=disk.details["volume_id"],
                                  TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}], **outpost)
            taken.append({"device_name": disk.details["device_name"], "snapshot_id": response["SnapshotId"],
                          "snapshot_name": name, "snapshot_lock_mode": self.config.aws_snapshot_lock_mode})
        self._wait([item["snapshot_id"] for item in taken])
        if self.config.aws_snapshot_lock_mode:
            for item in taken:
                self._lock(item["snapshot_id"])
        return taken

    def _wait(self, snapshot_ids: List[str]) -> None:
        timeout = self.config.aws_await_snapshots_timeout
        LOG.info("waiting up to %d s for snapshots %s", timeout, ", ".join(snapshot_ids))
        waiter = self.client.get_waiter("snapshot_completed")
        try:
            waiter.wait(SnapshotIds=snapshot_ids,
                        WaiterConfig={"Delay": WAITER_DELAY, "MaxAttempts": max(1, math.ceil(timeout / WAITER_DELAY))})
        except botocore.exceptions.WaiterError as error:
            raise SnapshotError("snapshots %s did not complete within aws_await_snapshots_timeout=%d s (%s); raise the "
                                "timeout, the snapshots go on in EC2" % (", ".join(snapshot_ids), timeout, error))

    def _lock(self, snapshot_id: str) -> None:
        arguments: Dict[str, Any] = {"SnapshotId": snapshot_id, "LockMode": self.config.aws_snapshot_lock_mode}
        if self.config.aws_snapshot_lock_duration is not None:
            arguments["LockDuration"] = self.config.aws_snapshot_lock_duration
        if self.config.aws_snapshot_lock_cool_off_period is not None:
            arguments["CoolOffPeriod"] = self.config.aws_snapshot_lock_cool_off_period
        expiration = self.config.lock_expiration()
        if expiration is not None:
            arguments["ExpirationDate"] = expiration
        response = self._call("lock snapshot %s" % snapshot_id, self.client.lock_snapshot, **arguments)
        LOG.info("snapshot %s locked in %s mode (lock state %s)", snapshot_id, self.config.aws_snapshot_lock_mode,
                 response.get("LockState"))

    def provider_info(self) -> Dict[str, Any]:
        return {"account_id": self.account_id, "region": self.region}


def _volume_named(volumes: List[Dict[str, Any]], name: str) -> Optional[Dict[str, Any]]:
    for volume in volumes:
        tags = {tag["Key"]: tag["Value"] for tag in volume.get("Tags", [])}
        if volume["VolumeId"] == name or tags.get("Name") == name:
            return volume
    return None


def _attachment(volume: Dict[str, Any], instance_id: str) -> Optional[Dict[str, Any]]:
    for attachment in volume.get("Attachments", []):
        if attachment.get("InstanceId") == instance_id and attachment.get("State") in ("attached", "attaching"):
            return attachment
    return None
