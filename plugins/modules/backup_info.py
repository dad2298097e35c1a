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

- name: Fail when the latest backup did not complete
  ansible.builtin.assert:
    that: latest.backup.status == 'DONE'
    fail_msg: "the latest backup of db1 is {{ latest.backup.status }}: {{ latest.backup.error }}"
"""

RETURN = r"""
extends_documentation_fragment:
  - pgcloud.backup.results
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
"""

from typing import Any, Dict

from ansible_collections.pgcloud.backup.plugins.module_utils.ansible_adapter import (
    PgCloudModule,
    merge_argument_specs,
    sse_customer_key_argument_spec,
    storage_argument_spec,
    storage_rules,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.operations import list_backups, show_backup


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(
        storage_argument_spec(),
        sse_customer_key_argument_spec(),
        {"backup": {"type": "str"}},
    )


def main() -> None:
    module = PgCloudModule(argument_spec(), rules=storage_rules(), supports_check_mode=True)
    wanted = module.params["backup"]
    with module.engine_errors():
        storage = module.storage_config()
        if wanted:
            result = {"backup": show_backup(storage, wanted)}
        else:
            result = {"backups": list_backups(storage)}
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
