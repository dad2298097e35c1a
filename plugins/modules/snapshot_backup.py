#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_backup
short_description: Back up a PostgreSQL server by snapshots of its cloud disks
version_added: 0.1.0
description:
  - Takes an online backup of the PostgreSQL server running on the managed host by
    snapshotting, while the server's backup mode is on, the cloud disks that hold its data
    directory and tablespaces; then stores C(backup_label) and C(backup.info) at
    O(destination_url), in the layout of barman-cloud, so that C(barman-cloud-backup-list),
    C(barman-cloud-backup-show), C(barman-cloud-restore) and C(barman-cloud-backup-delete)
    work with it. No data archives are uploaded.
  - O(cloud_provider) chooses the compute API as well as the object store, as for
    C(barman-cloud-backup) - EC2 volume snapshots for V(aws-s3), Azure managed disk
    (incremental) snapshots for V(azure-blob-storage), Compute Engine disk snapshots for
    V(google-cloud-storage).
  - Before anything is written, checks that each disk of O(snapshot_disks) is attached to
    O(snapshot_instance) and mounted on the managed host, and that the data directory and
    every tablespace lie on those disks.
  - The backup is recorded as STARTED when the server's backup mode begins and as DONE,
    with the snapshots, once they are complete and the backup mode has ended. A failure
    records FAILED with its reason and ends the backup mode; snapshots already taken are kept,
    and listed in the failed backup's metadata.
  - In check mode, tests the object store and the server, finds the instance, the disks and
    their mounts, and reports the snapshots it would take, without creating anything.
  - With O(backup_name), a DONE backup of that name makes the task report it, unchanged.
  - The equivalent of C(barman-cloud-backup --snapshot-instance ... --snapshot-disk ...).
author:
  - pgcloud.backup contributors (@pgcloud)
extends_documentation_fragment:
  - pgcloud.backup.storage
  - pgcloud.backup.storage.sse_customer_key
  - pgcloud.backup.postgres
  - pgcloud.backup.upload
  - pgcloud.backup.snapshot
  - pgcloud.backup.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
notes:
  - Run the module on the compute instance itself, as an OS user that may connect to the
    server with backup privileges; the mounts are read from C(/proc/self/mountinfo).
  - The credentials for the compute API are those of the object store - the AWS profile,
    keys or default chain (the role needs C(ec2:DescribeInstances), C(ec2:DescribeVolumes),
    C(ec2:CreateSnapshot), C(ec2:CreateTags), C(ec2:DescribeSnapshots) and, to lock,
    C(ec2:LockSnapshot)); O(azure_credential) or the default Azure chain; the Google
    application default credentials.
  - O(kms_key_name) cannot be used, as no data is uploaded to the object store; snapshots are
    encrypted by the settings of their disks. O(tags) are put on the uploaded objects and,
    on AWS, on the snapshots.
  - The backup needs the WAL written while it runs to be restorable; archive WAL to the same
    O(destination_url) and O(server_name), for example with C(barman-cloud-wal-archive).
requirements:
  - boto3, azure-mgmt-compute and azure-identity, or google-cloud-compute, for the snapshots
    of O(cloud_provider)
seealso:
  - module: pgcloud.backup.base_backup
  - module: pgcloud.backup.backup_info
"""

EXAMPLES = r"""
- name: Snapshot the data and WAL volumes of an EC2 instance, locked for 30 days
  become: true
  become_user: postgres
  pgcloud.backup.snapshot_backup:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    snapshot_instance: i-0123456789abcdef0
    snapshot_disks: [pgdata, pgwal]
    aws_region: eu-west-1
    aws_snapshot_lock_mode: compliance
    aws_snapshot_lock_duration: 30

- name: Snapshot the data disk of an Azure VM
  pgcloud.backup.snapshot_backup:
    cloud_provider: azure-blob-storage
    destination_url: https://acmebackups.blob.core.windows.net/postgres
    server_name: db1
    snapshot_instance: db1-vm
    snapshot_disks: [db1-pgdata]
    azure_subscription_id: 00000000-0000-0000-0000-000000000000
    azure_resource_group: databases
    azure_credential: managed-identity

- name: Snapshot the data disk of a Compute Engine instance, once per release
  pgcloud.backup.snapshot_backup:
    cloud_provider: google-cloud-storage
    destination_url: gs://acme-backups/postgres
    server_name: db1
    snapshot_instance: db1
    snapshot_disks: [db1-pgdata]
    gcp_project: acme-prod
    gcp_zone: europe-west1-b
    backup_name: before-release-4.2
"""

RETURN = r"""
# First the return values shared with other modules, copied from the doc fragments
# pgcloud.backup.results, pgcloud.backup.results.backup (plugins/doc_fragments/results.py):
# ansible-core reads fragments in RETURN only from 2.20 on; this collection supports 2.16.
# tests/unit/plugins/modules/test_return_docs.py keeps the copies equal.
log:
  description:
    - The engine's log lines, the progress of a backup included; details are added from C(-vv) on.
    - Each line is also written to the journal (or syslog) of the managed host as it happens.
  returned: always
  type: list
  elements: str
  sample:
    - "2026-01-25 03:15:00,120 INFO starting backup 20260125T031500 of /var/lib/postgresql/15/main"
parameter:
  description: The parameter to fix, when the module refused a parameter's value.
  returned: on failure, when one parameter is the cause
  type: str
  sample: destination_url
version:
  description: The version of the pgcloud.backup collection that ran the module.
  returned: always
  type: str
  sample: 0.1.0
backup_id:
  description:
    - The id of the backup, the local start time as C(YYYYMMDDTHHMMSS).
    - The id of the existing backup when O(backup_name) named one; null in check mode.
  returned: always
  type: str
  sample: 20260125T031500
backup_name:
  description: The name of the backup, or null.
  returned: always
  type: str
  sample: before-release-4.2
status:
  description: V(DONE) for a backup taken or found; null in check mode.
  returned: always
  type: str
  sample: DONE
elapsed_seconds:
  description: The duration of the backup, in seconds.
  returned: always
  type: float
  sample: 42.7
begin_wal:
  description: The first WAL file the backup needs.
  returned: when a backup was taken or found
  type: str
  sample: "000000010000000000000004"
end_wal:
  description: The last WAL file the backup needs.
  returned: when a backup was taken or found
  type: str
  sample: "000000010000000000000004"
begin_time:
  description: When the server's backup began.
  returned: when a backup was taken or found
  type: str
  sample: "2026-01-25T03:15:00.123456+00:00"
end_time:
  description: When the server's backup ended.
  returned: when a backup was taken or found
  type: str
  sample: "2026-01-25T03:15:42.654321+00:00"
tablespaces:
  description:
    - The tablespaces of the server; a base backup stores each in archives named after its
      oid, a snapshot backup checks that each lies on the snapshotted disks.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The tablespace name.
      type: str
      returned: always
      sample: fast
    oid:
      description: The tablespace oid.
      type: int
      returned: always
      sample: 16385
    location:
      description: The tablespace directory.
      type: str
      returned: always
      sample: /srv/tablespaces/fast
wal_archiver:
  description:
    - The server's WAL archiver (C(pg_stat_archiver)) once the backup's last WAL file was
      archived, so that a play sees archiving trouble next to the backup; null when the
      server could not tell.
    - V(failing) is true when the archiver's last failure is more recent than its last success.
  returned: when this run took a backup
  type: dict
  sample:
    archived_count: 66
    last_archived_wal: "000000010000000000000042"
    last_archived_time: "2026-01-25T03:15:43.012345+00:00"
    failed_count: 0
    last_failed_wal: null
    last_failed_time: null
    failing: false
destination:
  description: The URL of the folder that holds the backup's metadata (of C(base/) in check mode).
  returned: always
  type: str
  sample: s3://acme-backups/postgres/db1/base/20260125T031500/
object_keys:
  description: The object keys written by this run, C(backup.info) last; empty when nothing was written.
  returned: always
  type: list
  elements: str
  sample:
    - postgres/db1/base/20260125T031500/backup_label
    - postgres/db1/base/20260125T031500/backup.info
snapshots:
  description:
    - The snapshots of the backup taken or found, one per disk, with the provider's fields
      as C(barman-cloud-backup) records them and the disk's mount.
    - On AWS C(device_name), C(snapshot_id), C(snapshot_name), C(snapshot_lock_mode); on
      Azure C(location), C(lun), C(snapshot_name); on Google Cloud C(device_name),
      C(snapshot_name), C(snapshot_project); always C(mount_point) and C(mount_options).
  returned: always
  type: list
  elements: dict
  sample:
    - device_name: /dev/sdf
      snapshot_id: snap-0123456789abcdef0
      snapshot_name: pgdata-20260125t031500
      snapshot_lock_mode: compliance
      mount_point: /var/lib/postgresql
      mount_options: rw,noatime
plan:
  description: What the backup would do.
  returned: in check mode, when no DONE backup of O(backup_name) exists
  type: dict
  contains:
    provider:
      description: The snapshot provider, V(aws), V(azure) or V(gcp).
      type: str
      returned: always
      sample: aws
    instance:
      description: The compute instance, as given in O(snapshot_instance).
      type: str
      returned: always
      sample: i-0123456789abcdef0
    data_directory:
      description: The data directory of the server.
      type: str
      returned: always
      sample: /var/lib/postgresql/15/main
    snapshots:
      description:
        - One per disk - C(disk), the C(device) on the host, its C(mount_point) and
          C(mount_options), and the C(snapshot_name) with C(<backup_id>) for the id to come.
      type: list
      elements: dict
      returned: always
      sample:
        - disk: pgdata
          device: /dev/nvme1n1
          mount_point: /var/lib/postgresql
          mount_options: rw,noatime
          snapshot_name: pgdata-<backup_id>
msg:
  description: A one-line summary of what was done, found or planned.
  returned: always
  type: str
  sample: "backup 20260125T031500 DONE: 1 snapshots (pgdata-20260125t031500), 42.7 s"
"""

from typing import Any, Dict

from ansible_collections.pgcloud.backup.plugins.module_utils.ansible_adapter import (
    PgCloudModule,
    merge_argument_specs,
    merge_rules,
    postgres_argument_spec,
    snapshot_argument_spec,
    snapshot_rules,
    storage_argument_spec,
    storage_rules,
    upload_argument_spec,
    upload_rules,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.operations import take_snapshot_backup


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(storage_argument_spec(), postgres_argument_spec(), upload_argument_spec(),
                                snapshot_argument_spec())


def main() -> None:
    module = PgCloudModule(argument_spec(), rules=merge_rules(storage_rules(), upload_rules(), snapshot_rules()),
                           supports_check_mode=True)
    with module.engine_errors():
        result = take_snapshot_backup(module.storage_config(), module.postgres_config(), module.snapshot_config(),
                                      module.backup_config(), check_mode=module.check_mode)
    # Jinja reads result.keys as the dict method, so the engine's "keys" gets a readable name.
    result["object_keys"] = result.pop("keys", [])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
