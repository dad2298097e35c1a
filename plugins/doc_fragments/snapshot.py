# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the options of snapshot backups."""

from __future__ import annotations


class ModuleDocFragment(object):

    # snapshot_argument_spec()
    DOCUMENTATION = r"""
options:
  snapshot_instance:
    description:
      - The compute instance (the managed host itself) whose disks are snapshotted.
      - For AWS an instance id (V(i-0abc...)) or the value of its C(Name) tag; for Azure the
        name of the virtual machine; for Google Cloud the name of the instance.
      - Equivalent to C(--snapshot-instance) of C(barman-cloud-backup).
    type: str
    required: true
  snapshot_disks:
    description:
      - The disks to snapshot. Together they must hold PGDATA and every tablespace, and each
        must be attached to O(snapshot_instance) and mounted on the managed host.
      - For AWS a volume id or the value of its C(Name) tag; for Azure the name of a managed
        data disk; for Google Cloud the name of a disk.
      - Each snapshot is named C(<disk>-<backup id in lower case>).
      - Equivalent to repeated C(--snapshot-disk) options of C(barman-cloud-backup).
    type: list
    elements: str
    required: true
    aliases: [snapshot_disk]
  aws_region:
    description:
      - The AWS region of the instance and its volumes.
      - When unset, the region of the AWS profile or of the environment.
      - Equivalent to C(--aws-region) of C(barman-cloud-backup).
    type: str
  aws_await_snapshots_timeout:
    description:
      - How many seconds to wait for the EC2 snapshots to complete before the backup fails.
      - Equivalent to C(--aws-await-snapshots-timeout) of C(barman-cloud-backup).
    type: int
    default: 3600
  aws_snapshot_lock_mode:
    description:
      - Lock the EC2 snapshots against deletion in this mode.
      - Needs O(aws_snapshot_lock_duration) or O(aws_snapshot_lock_expiration_date).
      - Equivalent to C(--aws-snapshot-lock-mode) of C(barman-cloud-backup).
    type: str
    choices: [governance, compliance]
  aws_snapshot_lock_duration:
    description:
      - How many days the snapshots stay locked, from 1 to 36500.
      - Cannot be combined with O(aws_snapshot_lock_expiration_date).
      - Equivalent to C(--aws-snapshot-lock-duration) of C(barman-cloud-backup).
    type: int
  aws_snapshot_lock_cool_off_period:
    description:
      - Hours, from 1 to 72, during which a snapshot locked in V(compliance) mode may still be
        unlocked; when unset, the lock holds at once.
      - Only with O(aws_snapshot_lock_mode=compliance).
      - Equivalent to C(--aws-snapshot-lock-cool-off-period) of C(barman-cloud-backup).
    type: int
  aws_snapshot_lock_expiration_date:
    description:
      - When the lock of the snapshots ends, in UTC, as V(YYYY-MM-DDTHH:MM:SS.sssZ) (for
        example V(2031-01-31T00:00:00.000Z)); at least a day ahead.
      - Cannot be combined with O(aws_snapshot_lock_duration).
      - Equivalent to C(--aws-snapshot-lock-expiration-date) of C(barman-cloud-backup).
    type: str
  azure_subscription_id:
    description:
      - The Azure subscription of the virtual machine and its disks.
      - Required with O(cloud_provider=azure-blob-storage).
      - Equivalent to C(--azure-subscription-id) of C(barman-cloud-backup).
    type: str
  azure_resource_group:
    description:
      - The resource group of the virtual machine and its disks, where the snapshots are created.
      - Required with O(cloud_provider=azure-blob-storage).
      - Equivalent to C(--azure-resource-group) of C(barman-cloud-backup).
    type: str
  gcp_project:
    description:
      - The Google Cloud project of the instance and its disks, where the snapshots are created.
      - Required with O(cloud_provider=google-cloud-storage).
      - Equivalent to C(--gcp-project) of C(barman-cloud-backup); the alias
        O(snapshot_gcp_project) matches its deprecated C(--snapshot-gcp-project) spelling and
        is deprecated as well.
    type: str
    aliases: [snapshot_gcp_project]
  gcp_zone:
    description:
      - The zone of the instance and its disks.
      - Required with O(cloud_provider=google-cloud-storage).
      - Equivalent to C(--gcp-zone) of C(barman-cloud-backup); the alias O(snapshot_zone)
        matches its deprecated C(--snapshot-zone) spelling and is deprecated as well.
    type: str
    aliases: [snapshot_zone]
requirements:
  - boto3 (for snapshots on AWS)
  - azure-mgmt-compute and azure-identity (for snapshots on Azure)
  - google-cloud-compute (for snapshots on Google Cloud)
"""
