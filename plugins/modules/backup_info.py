#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_info
short_description: List the backups of a PostgreSQL server in object storage, or show one
version_added: 0.1.0
description:
  - Lists the backups of O(server_name) at O(destination_url), oldest first, or shows every
    recorded detail of one of them.
  - Reads backups written by this collection and by C(barman-cloud-backup) alike.
  - Reads only; changes nothing.
  - The equivalent of C(barman-cloud-backup-list) and C(barman-cloud-backup-show).
author:
  - pgcloud.backup contributors (@pgcloud)
options:
  backup:
    description:
      - The backup to show, by id (V(20260125T031500)), by O(pgcloud.backup.base_backup#module:backup_name),
        or by one of the shortcuts V(latest) (or V(last)), V(oldest) (or V(first)) and V(last-failed).
      - V(latest) and V(oldest) skip backups that are still running (STARTED).
      - When unset, all the backups of the server are listed, in less detail.
      - The module fails when no backup matches, or when a name matches several backups.
    type: str
  check_objects:
    description:
      - Also check that the objects of the backup O(backup) are all in the store, from a listing
        of its folder; nothing is downloaded. The result is RV(objects_check).
      - The archives expected are those C(backup.info) names (C(data) and one per tablespace),
        each with its first object and no gap in the numbering of the next ones; every object
        needs a known extension (the same for all) and a size an archive can have. Backups
        taken by this collection record their stored bytes in C(backup.info), which the listed
        sizes must add up to; this also finds a missing last part or a truncated object.
      - The annotations of the backup (the C(annotations/keep) object of a kept backup) are
        neither archives nor foreign objects; they are not counted in the sizes.
      - Problems are reported, not raised; use RV(objects_check.ok) to act on them.
      - Requires O(backup).
    type: bool
    default: false
  check_wal:
    description:
      - Also check that the WAL archive holds every segment from the first WAL file of the
        backup O(backup) (its C(begin_wal)) to the newest segment archived, from a listing
        of the archive's folders from that one on; nothing is downloaded. The result is
        RV(wal_check).
      - Recovery stops at the first segment it cannot fetch, so a segment missing after the
        backup's end leaves the backup restorable but no point in time after the gap reachable.
      - A segment counts as archived on the backup's timeline or a later one, compressed or not.
        C(.partial) files do not count.
      - Problems are reported, not raised; use RV(wal_check.ok) to act on them.
      - Requires O(backup).
    type: bool
    default: false
extends_documentation_fragment:
  - pgcloud.backup.storage
  - pgcloud.backup.storage.sse_customer_key
  - pgcloud.backup.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
seealso:
  - module: pgcloud.backup.base_backup
  - module: pgcloud.backup.check
"""

EXAMPLES = r"""
- name: List the backups of db1
  pgcloud.backup.backup_info:
    destination_url: s3://acme-backups/postgres
    server_name: db1
  register: listing

- name: Show the ids of the backups that can be restored
  ansible.builtin.debug:
    msg: "{{ listing.backups | selectattr('status', 'equalto', 'DONE') | map(attribute='backup_id') | list }}"

- name: Show the latest backup
  pgcloud.backup.backup_info:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup: latest
  register: latest

- name: Check that every object of the latest backup is still in the bucket
  pgcloud.backup.backup_info:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup: latest
    check_objects: true
  register: latest_checked
  failed_when: not latest_checked.objects_check.ok

- name: Fail when the latest backup did not complete
  ansible.builtin.assert:
    that: latest.backup.status == 'DONE'
    fail_msg: "the latest backup of db1 is {{ latest.backup.status }}: {{ latest.backup.error }}"
"""

RETURN = r"""
# First the return values shared with other modules, copied from the doc fragments
# pgcloud.backup.results (plugins/doc_fragments/results.py):
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
backups:
  description: The backups of the server, oldest first.
  returned: when O(backup) is not set
  type: list
  elements: dict
  contains:
    backup_id:
      description: The id of the backup.
      type: str
      returned: always
      sample: 20260125T031500
    backup_name:
      description: The name of the backup, or null.
      type: str
      returned: always
      sample: nightly
    status:
      description: V(DONE), V(FAILED), or V(STARTED) for a backup that is running or died unrecorded.
      type: str
      returned: always
      sample: DONE
    begin_time:
      description: When the server's backup began (ISO 8601).
      type: str
      returned: always
      sample: "2026-01-25T03:15:00.123456+00:00"
    end_time:
      description: When the server's backup ended (ISO 8601), or null.
      type: str
      returned: always
      sample: "2026-01-25T03:15:42.654321+00:00"
    begin_wal:
      description: The first WAL file the backup needs.
      type: str
      returned: always
      sample: "000000010000000000000004"
    end_wal:
      description: The last WAL file the backup needs, or null.
      type: str
      returned: always
      sample: "000000010000000000000004"
    timeline:
      description: The timeline of the server when the backup began.
      type: int
      returned: always
      sample: 1
    size:
      description: The bytes stored for the backup.
      type: int
      returned: always
      sample: 268435456
    error:
      description: Why the backup failed, or null.
      type: str
      returned: always
      sample: null
    keep:
      description:
        - V(full) or V(standalone) when the backup is kept (by M(pgcloud.backup.backup_keep) or
          C(barman-cloud-backup-keep)), null when it is not; what C(barman-cloud-backup-list)
          shows as C(KEEP:FULL) or C(KEEP:STANDALONE).
        - A kept backup is never deleted by a retention policy.
      type: str
      returned: always
      sample: standalone
backup:
  description:
    - Every field of the backup's C(backup.info), with the times in ISO 8601, plus the objects
      stored for it.
    - Besides the fields described here, the other fields of C(backup.info) (C(systemid),
      C(version), C(xlog_segment_size), C(begin_xlog), C(copy_stats), ...) are included as
      recorded.
  returned: when O(backup) is set
  type: dict
  contains:
    backup_id:
      description: The id of the backup.
      type: str
      returned: always
      sample: 20260125T031500
    backup_name:
      description: The name of the backup, when it has one.
      type: str
      returned: when set
      sample: nightly
    status:
      description: V(DONE), V(FAILED) or V(STARTED).
      type: str
      returned: always
      sample: DONE
    pgdata:
      description: The data directory that was backed up.
      type: str
      returned: always
      sample: /var/lib/postgresql/15/main
    tablespaces:
      description: The tablespaces of the backup.
      type: list
      elements: dict
      returned: always
      sample: [{"name": "fast", "oid": 16385, "location": "/srv/tablespaces/fast"}]
    objects:
      description: The objects stored for the backup, with their sizes in bytes.
      type: list
      elements: dict
      returned: always
      sample: [{"key": "postgres/db1/base/20260125T031500/data.tar.zst", "size": 268435000}]
    size:
      description: The bytes stored for the backup.
      type: int
      returned: always
      sample: 268435456
    keep:
      description: V(full) or V(standalone) when the backup is kept, null when it is not.
      type: str
      returned: always
      sample: full
objects_check:
  description: Whether the objects of the backup are all in the store, and what is not.
  returned: when O(check_objects) is true
  type: dict
  contains:
    backup_id:
      description: The id of the backup checked.
      type: str
      returned: always
      sample: 20260125T031500
    ok:
      description: True when nothing is missing or mismatched.
      type: bool
      returned: always
      sample: false
    missing:
      description:
        - The keys of the objects that should be there and are not. When the extension of a
          missing archive cannot be told, it is written V(tar*).
      type: list
      elements: str
      returned: always
      sample: ["postgres/db1/base/20260125T031500/data_0002.tar.zst"]
    mismatched:
      description:
        - The objects that are there but cannot be right, each with its key, its listed size
          and why. A total that differs from the size C(backup.info) records is reported with
          the key of the backup's folder.
      type: list
      elements: dict
      returned: always
      sample: [{"key": "postgres/db1/base/20260125T031500/16385.tar", "size": 1000,
                "reason": "an uncompressed archive must be whole 512-byte blocks, at least 1024 bytes"}]
    objects:
      description: How many objects the backup's folder holds, annotations included.
      type: int
      returned: always
      sample: 4
    stored_size:
      description: The bytes of the objects listed, C(backup.info) and annotations aside.
      type: int
      returned: always
      sample: 268435456
    recorded_size:
      description:
        - The bytes stored that C(backup.info) records; null for backups that do not record it
          (those of C(barman-cloud-backup), and snapshot backups).
      type: int
      returned: always
      sample: 268435456
wal_check:
  description:
    - What O(check_wal) found. Absent without it.
  returned: when O(check_wal=true)
  type: dict
  contains:
    backup_id:
      description: The id of the backup checked.
      type: str
      returned: always
      sample: "20260125T031500"
    begin_wal:
      description: The backup's first WAL file, where the check starts.
      type: str
      returned: always
      sample: "000000010000000000000042"
    newest:
      description: The newest segment archived, or null when none is from RV(wal_check.begin_wal) on.
      type: str
      returned: always
      sample: "0000000100000000000000A7"
    segments:
      description: How many segments from RV(wal_check.begin_wal) to RV(wal_check.newest) are archived.
      type: int
      returned: always
      sample: 102
    missing:
      description:
        - The segments missing between RV(wal_check.begin_wal) and RV(wal_check.newest), named
          on the backup's timeline; the first 50.
      type: list
      elements: str
      returned: always
      sample: ["000000010000000000000077"]
    missing_count:
      description: How many segments are missing in all.
      type: int
      returned: always
      sample: 1
    ok:
      description: True when segments are archived from RV(wal_check.begin_wal) on and none is missing.
      type: bool
      returned: always
      sample: false
    error:
      description: Why there is nothing to check (no WAL archived from the backup's first on), or null.
      type: str
      returned: always
      sample: null
"""

from typing import Any, Dict

from ansible_collections.pgcloud.backup.plugins.module_utils.ansible_adapter import (
    PgCloudModule,
    merge_argument_specs,
    merge_rules,
    sse_customer_key_argument_spec,
    storage_argument_spec,
    storage_rules,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.operations import describe_backup, list_backups


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(
        storage_argument_spec(),
        sse_customer_key_argument_spec(),
        {"backup": {"type": "str"}, "check_objects": {"type": "bool", "default": False},
         "check_wal": {"type": "bool", "default": False}},
    )


def main() -> None:
    rules = merge_rules(storage_rules(), {"required_if": [["check_objects", True, ["backup"]],
                                                          ["check_wal", True, ["backup"]]]})
    module = PgCloudModule(argument_spec(), rules=rules, supports_check_mode=True)
    wanted = module.params["backup"]
    result: Dict[str, Any]
    with module.engine_errors():
        storage = module.storage_config()
        if wanted:
            result = describe_backup(storage, wanted, check_objects=module.params["check_objects"],
                                     check_wal=module.params["check_wal"])
        else:
            result = {"backups": list_backups(storage)}
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
