#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_keep
short_description: Keep a backup of a PostgreSQL server from retention policies, or release it
version_added: 0.1.0
description:
  - Marks a backup of O(server_name) at O(destination_url) as kept, releases it, or shows whether
    it is kept.
  - A kept backup is never deleted by a retention policy (M(pgcloud.backup.backup_delete),
    C(barman-cloud-backup-delete)), and cannot be deleted by its id until it is released.
  - The mark is the C(annotations/keep) object that C(barman-cloud-backup-keep) writes, so each
    tool sees and changes the keeps of the other.
  - The equivalent of C(barman-cloud-backup-keep).
author:
  - pgcloud.backup contributors (@pgcloud)
options:
  backup:
    description:
      - The backup, by id (V(20260125T031500)), by name, or by one of the shortcuts V(latest)
        (or V(last)), V(oldest) (or V(first)) and V(last-failed).
      - The module fails when no backup matches, or when a name matches several backups.
    type: str
    required: true
  state:
    description:
      - V(present) keeps the backup with the given O(target); only a backup whose status is
        V(DONE) can be kept.
      - V(absent) releases it; nothing changes when it is not kept.
      - V(query) only reports RV(keep).
    type: str
    choices: [present, absent, query]
    default: present
  target:
    description:
      - What is kept with the backup, with O(state=present).
      - V(full) keeps the backup and every WAL file archived after it, so that it can be
        restored to any later point in time.
      - V(standalone) keeps the backup and only the WAL files from its first to its last one,
        enough to restore it as it was when it ended (an archival copy).
      - A backup kept with one target can be switched to the other.
    type: str
    choices: [full, standalone]
extends_documentation_fragment:
  - pgcloud.backup.storage
  - pgcloud.backup.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
notes:
  - In check mode nothing is written; C(changed) says whether the mark would change.
seealso:
  - module: pgcloud.backup.backup_delete
  - module: pgcloud.backup.backup_info
"""

EXAMPLES = r"""
- name: Keep the latest backup of db1 before an upgrade, with the WAL that restores it
  pgcloud.backup.backup_keep:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup: latest
    target: standalone
  register: kept

- name: Release the backup after the upgrade
  pgcloud.backup.backup_keep:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup: "{{ kept.backup_id }}"
    state: absent

- name: Is the backup named before-upgrade kept?
  pgcloud.backup.backup_keep:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup: before-upgrade
    state: query
  register: keep_status
"""

RETURN = r"""
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
  description: The id of the backup O(backup) named.
  returned: success
  type: str
  sample: 20260125T031500
keep:
  description:
    - V(full) or V(standalone) when the backup is kept after the task (or would be, in check
      mode), null when it is not.
    - An annotation of another content (written by hand) reads as V(full), which loses nothing.
  returned: success
  type: str
  sample: standalone
previous_keep:
  description: What RV(keep) was before the task.
  returned: success
  type: str
  sample: null
"""

from typing import Any, Dict

from ansible_collections.pgcloud.backup.plugins.module_utils.ansible_adapter import (
    PgCloudModule,
    merge_argument_specs,
    storage_argument_spec,
    storage_rules,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention.keep import manage_keep


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(
        storage_argument_spec(),
        {
            "backup": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent", "query"]},
            "target": {"type": "str", "choices": ["full", "standalone"]},
        },
    )


def main() -> None:
    rules = dict(storage_rules())
    rules["required_if"] = [["state", "present", ["target"]]]
    module = PgCloudModule(argument_spec(), rules=rules, supports_check_mode=True)
    params = module.params
    with module.engine_errors():
        result = manage_keep(module.storage_config(), params["backup"], params["state"], params["target"],
                             check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
