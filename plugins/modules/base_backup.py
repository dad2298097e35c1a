#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: base_backup
short_description: Take a base backup of a PostgreSQL server and upload it to object storage
version_added: 0.1.0
description:
  - Takes an online base backup of the PostgreSQL server running on the managed host and
    streams it, as tar archives, to O(destination_url), in the layout of barman-cloud, so
    that C(barman-cloud-restore), C(barman-cloud-backup-list) and
    C(barman-cloud-backup-delete) work with it.
  - The backup is recorded as STARTED when the server's backup mode begins, and as DONE only
    when every archive is stored; a failure records FAILED with its reason, aborts the
    unfinished uploads and ends the server's backup mode.
  - In check mode, tests the object store and the server, as M(pgcloud.backup.check) does, and
    reports what it would back up, without uploading anything.
  - With O(backup_name), a DONE backup of that name makes the task report it, unchanged.
  - The equivalent of C(barman-cloud-backup) without its C(--snapshot-*) options.
author:
  - pgcloud.backup contributors (@pgcloud)
options:
  compression:
    description:
      - How to compress the archives while they are uploaded.
      - When unset, the archives are stored uncompressed.
      - V(gzip) and V(bzip2) need nothing beyond Python; V(lz4) needs the C(lz4) library,
        V(zstd) the C(zstandard) library and V(snappy) the C(cramjam) library, on the
        managed host.
      - Equivalent to C(-z/--gzip), C(-j/--bzip2), C(--snappy), C(--lz4) and C(--zstd) of
        C(barman-cloud-backup).
    type: str
    choices: [gzip, bzip2, snappy, lz4, zstd]
  jobs:
    description:
      - How many upload parts the backup holds at once, being filled, queued or uploading,
        and so how many uploads can run at the same time.
      - Memory use is about this number times the part size (about 20 MiB with the default
        O(max_archive_size)) plus some 60 MiB for Python and its libraries.
      - Compression runs on up to this many threads, never more than the host has cores; more
        jobs give more throughput until the cores, the disk or the network are saturated.
      - From 1 to 64.
      - Equivalent to C(-J/--jobs) of C(barman-cloud-backup).
    type: int
    default: 2
  max_archive_size:
    description:
      - The amount of stored (compressed) data after which an archive is closed and a new one
        (C(data_0001.tar), ...) is started.
      - A number of bytes, or a number with a unit such as V(512kB), V(5MB), V(1.5GB) or
        V(100GiB). As with C(barman-cloud-backup), units ending in V(B) count in powers of 1024
        and units ending in V(iB) in powers of 1000, so V(100GB) is 100 x 1024^3 bytes and
        V(100GiB) is 100 x 1000^3 bytes.
      - Files are never split, so an archive exceeds this by at most the file that crossed
        it; data files of PostgreSQL are at most 1 GB each.
      - Capped at the largest object the provider accepts. At most V(25000GB), past which one
        upload part (2 x O(max_archive_size) / 10000) would exceed the 5 GiB that S3 and Google
        Cloud Storage take.
      - Equivalent to C(-S/--max-archive-size) of C(barman-cloud-backup).
    type: str
    default: 100GB
  min_chunk_size:
    description:
      - The smallest part of a multipart upload, with the units of O(max_archive_size).
      - Larger parts mean fewer requests but more memory per job.
      - When unset, the provider's minimum part size, which is V(5MB) for V(aws-s3) and
        V(google-cloud-storage), and V(64KB) for V(azure-blob-storage) (whose parts are blocks).
      - Parts grow beyond it when an archive of O(max_archive_size) would otherwise need more
        parts than the provider allows.
      - At most the largest part the provider takes, V(5120MB) (5 GiB) for V(aws-s3) and
        V(google-cloud-storage), V(4000MB) for V(azure-blob-storage).
      - Equivalent to C(--min-chunk-size) of C(barman-cloud-backup).
    type: str
  max_bandwidth:
    description:
      - The most data to upload per second, all jobs together, with the units of
        O(max_archive_size) (for example V(50MB)).
      - When unset or V(0), uploads are not limited; otherwise at least V(128KB), below which a
        backup of a few GiB would take days.
      - Equivalent to C(--max-bandwidth) of C(barman-cloud-backup).
    type: str
  manifest_checksum:
    description:
      - The checksum of each file in the C(backup_manifest) that the last data archive holds,
        after C(backup_label). The manifest is PostgreSQL's own (as C(pg_basebackup) writes
        it), so that C(pg_verifybackup) can check a copy restored by C(barman-cloud-restore)
        before it is started (with C(--no-parse-wal) unless the WAL is fetched into it).
      - Checksums are computed as the files are archived; each file is read once.
      - V(CRC32C), the default of C(pg_basebackup), needs the C(google-crc32c) library with its
        C extension (which the Google Cloud Storage SDK installs). V(SHA256) needs nothing beyond
        Python but costs more CPU than V(lz4) compression itself (about 0.6 s of one core per
        GiB of data with the CPU's SHA extensions, against under 0.1 s for V(CRC32C)).
      - When unset, V(CRC32C) if C(google-crc32c) runs in C on the host, otherwise V(SHA256).
        Both let C(pg_verifybackup) detect a changed file; the manifest's own checksum is
        always SHA-256, as PostgreSQL requires.
    type: str
    choices: [SHA256, CRC32C]
extends_documentation_fragment:
  - pgcloud.backup.storage
  - pgcloud.backup.storage.sse_customer_key
  - pgcloud.backup.postgres
  - pgcloud.backup.upload
  - pgcloud.backup.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
notes:
  - Run the module as an OS user that can read the data directory and the tablespaces,
    normally C(postgres) (C(become_user=postgres)).
  - The backup needs the WAL written while it runs to be restorable; archive WAL to the same
    O(destination_url) and O(server_name), for example with C(barman-cloud-wal-archive) as
    C(archive_command).
  - Progress lines are written to the journal (or syslog) of the managed host while the
    backup runs, and returned in the C(log) result.
requirements:
  - lz4, zstandard or cramjam for the compressions that need them
seealso:
  - module: pgcloud.backup.check
  - module: pgcloud.backup.backup_info
"""

EXAMPLES = r"""
- name: Back up the local server to S3, compressed with zstd
  become: true
  become_user: postgres
  pgcloud.backup.base_backup:
    destination_url: s3://acme-backups/postgres
    server_name: "{{ inventory_hostname }}"
    compression: zstd
    jobs: 4
  register: backup

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ backup.backup_id }} is in {{ backup.destination }}"

- name: One named backup per release, taken once however often the play runs
  become: true
  become_user: postgres
  pgcloud.backup.base_backup:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup_name: before-release-4.2
    immediate_checkpoint: true
    encryption: aws:kms
    sse_kms_key_id: alias/backups
    tags:
      release: "4.2"
      retention: long

- name: To an S3-compatible store, slowly, in 1 GiB archives
  become: true
  become_user: postgres
  pgcloud.backup.base_backup:
    destination_url: s3://backups/pg
    server_name: db1
    endpoint_url: https://minio.internal:9000
    addressing_style: path
    compression: gzip
    max_archive_size: 1GB
    max_bandwidth: 20MB
    port: 5433

- name: To Azure Blob Storage, as the VM's managed identity, in an encryption scope
  become: true
  become_user: postgres
  pgcloud.backup.base_backup:
    cloud_provider: azure-blob-storage
    destination_url: https://acmebackups.blob.core.windows.net/postgres/prod
    server_name: "{{ inventory_hostname }}"
    azure_credential: managed-identity
    encryption_scope: backups
    compression: lz4

- name: To Google Cloud Storage, with a service account key kept in the vault
  become: true
  become_user: postgres
  pgcloud.backup.base_backup:
    cloud_provider: google-cloud-storage
    destination_url: gs://acme-backups/postgres
    server_name: "{{ inventory_hostname }}"
    gcp_service_account_contents: "{{ vault_gcs_backup_key }}"
    kms_key_name: projects/acme/locations/europe-west1/keyRings/backups/cryptoKeys/postgres
    compression: zstd
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
  description: The URL of the folder that holds the backup (of C(base/) in check mode).
  returned: always
  type: str
  sample: s3://acme-backups/postgres/db1/base/20260125T031500/
object_keys:
  description: The object keys written by this run, C(backup.info) last; empty when nothing was written.
  returned: always
  type: list
  elements: str
  sample:
    - postgres/db1/base/20260125T031500/data.tar.zst
    - postgres/db1/base/20260125T031500/backup.info
bytes_read:
  description: Bytes read from the data directory and the tablespaces.
  returned: always
  type: int
  sample: 1073741824
bytes_written:
  description: Bytes stored, after compression.
  returned: always
  type: int
  sample: 268435456
compression:
  description: The compression of the archives, or null for none.
  returned: always
  type: str
  sample: zstd
plan:
  description: What the backup would do.
  returned: in check mode, when no DONE backup of O(backup_name) exists
  type: dict
  contains:
    data_directory:
      description: The data directory that would be copied.
      type: str
      returned: always
      sample: /var/lib/postgresql/15/main
    tablespaces:
      description: The tablespaces that would be copied, in the form of the C(tablespaces) result.
      type: list
      elements: dict
      returned: always
      sample: []
    compression:
      description: The compression that would be used.
      type: str
      returned: always
      sample: zstd
    jobs:
      description: The number of parallel uploads.
      type: int
      returned: always
      sample: 4
    chunk_size:
      description: The size of the upload parts, in bytes.
      type: int
      returned: always
      sample: 5242880
    max_archive_size:
      description: The archive size limit, in bytes, after the provider's cap.
      type: int
      returned: always
      sample: 107374182400
    cluster_size:
      description: The size of the databases, in bytes, as the server reports it.
      type: int
      returned: when the server reports it
      sample: 1073741824
msg:
  description: A one-line summary of what was done, found or planned.
  returned: always
  type: str
  sample: "backup 20260125T031500 DONE: 1024.0 MiB read, 256.0 MiB stored in 2 objects, 42.7 s"
"""

from typing import Any, Dict

from ansible_collections.pgcloud.backup.plugins.module_utils.ansible_adapter import (
    PgCloudModule,
    merge_argument_specs,
    merge_rules,
    postgres_argument_spec,
    storage_argument_spec,
    storage_rules,
    upload_argument_spec,
    upload_rules,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import COMPRESSIONS, MANIFEST_CHECKSUMS
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.operations import take_base_backup


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(
        storage_argument_spec(),
        postgres_argument_spec(),
        upload_argument_spec(),
        {
            "compression": {"type": "str", "choices": list(COMPRESSIONS)},
            "jobs": {"type": "int", "default": 2},
            "max_archive_size": {"type": "str", "default": "100GB"},
            "min_chunk_size": {"type": "str"},
            "max_bandwidth": {"type": "str"},
            "manifest_checksum": {"type": "str", "choices": list(MANIFEST_CHECKSUMS)},
        },
    )


def main() -> None:
    module = PgCloudModule(argument_spec(), rules=merge_rules(storage_rules(), upload_rules()),
                           supports_check_mode=True)
    with module.engine_errors():
        result = take_base_backup(module.storage_config(), module.postgres_config(), module.backup_config(),
                                  check_mode=module.check_mode)
    # Jinja reads result.keys as the dict method, so the engine's "keys" gets a readable name.
    result["object_keys"] = result.pop("keys", [])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
