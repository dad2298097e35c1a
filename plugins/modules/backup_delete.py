#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_delete
short_description: Delete a backup of a PostgreSQL server, or the backups a retention policy makes obsolete
version_added: 0.1.0
description:
  - Deletes one backup of O(server_name) at O(destination_url) (O(backup_id)), or every backup
    that O(retention_policy) judges obsolete, with the archived WAL files that no remaining
    backup needs.
  - Judges backups as C(barman-cloud-backup-delete) does, so both delete the same backups and
    WAL files from the same store.
  - Backups kept with M(pgcloud.backup.backup_keep) or C(barman-cloud-backup-keep) are never
    deleted by a policy; deleting one by its id fails until it is released.
  - In check mode nothing is deleted, and the result lists what would be (the dry run).
  - The equivalent of C(barman-cloud-backup-delete).
author:
  - pgcloud.backup contributors (@pgcloud)
options:
  backup_id:
    description:
      - The backup to delete, by id (V(20260125T031500)), by name, or by one of the shortcuts
        V(latest) (or V(last)), V(oldest) (or V(first)) and V(last-failed).
      - Any backup can be deleted this way, a FAILED or a running one too, but not a kept one.
      - WAL files are deleted only when no older backup needs them, that is when the backup is
        the oldest one that restores (older backups kept V(standalone) aside).
      - Exactly one of O(backup_id) and O(retention_policy) is required.
    type: str
  retention_policy:
    description:
      - V(REDUNDANCY n) keeps the n newest backups whose status is DONE; older ones are obsolete.
      - V(RECOVERY WINDOW OF n DAYS), V(WEEKS) or V(MONTHS) keeps what a restore to any point of
        the last n days, weeks or months (of 31 days) needs, judged on the end time of the
        backups - every backup that ended inside the window and the newest one that ended
        before it.
      - Case does not matter. Only DONE backups are judged; FAILED and running ones are never
        deleted by a policy. Kept backups are never obsolete, and they count among the n
        backups of V(REDUNDANCY n).
      - Also finishes a deletion that was interrupted (a backup this module had begun to delete,
        left listed as FAILED).
      - Exactly one of O(backup_id) and O(retention_policy) is required.
    type: str
  minimum_redundancy:
    description:
      - The least number of backups to keep, whatever the policy says.
      - With O(retention_policy), V(REDUNDANCY n) keeps at least this many DONE backups, and a
        recovery window keeps this many DONE backups even when they are obsolete.
      - With O(backup_id), the deletion fails when the server has no more than this many backups
        that are not running (FAILED ones included).
    type: int
    default: 0
  abort_uploads_older_than:
    description:
      - With O(retention_policy), the multipart uploads under the server's folder that have been
        open for at least this many seconds are aborted, after the obsolete backups are deleted.
        They are the uploads of runs that were killed (SIGKILL, a lost host) before they could
        abort their own; the store keeps, and bills, their parts until then.
      - The default, a day, is longer than a backup runs, so that the upload of a backup or a
        WAL file being written now is never aborted. V(0) aborts every open upload, those of a
        run in progress too.
      - Cloud Storage's XML multipart uploads and S3 multipart uploads are listed and aborted.
        Azure discards uncommitted blocks by itself a week after they were staged; nothing is
        aborted there.
      - In check mode they are listed in RV(aborted_uploads) and none is aborted.
    type: int
    default: 86400
extends_documentation_fragment:
  - pgcloud.backup.storage
  - pgcloud.backup.storage.sse_customer_key
  - pgcloud.backup.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
notes:
  - Each backup is deleted so that an interruption (a store fault, a lost connection) never
    leaves a DONE backup with missing objects - its C(backup.info) is rewritten as FAILED first
    and deleted last - and never deletes the WAL files a remaining backup needs. Run the module
    again to finish.
  - Objects are deleted in batches (1000 on S3, 256 on Azure, 100 on Google Cloud Storage).
  - Snapshot backups are refused; delete them with C(barman-cloud-backup-delete), which deletes
    their disk snapshots too.
  - The WAL of a timeline other than that of the next backup is kept while another backup is on
    it; timeline history files are never deleted.
seealso:
  - module: pgcloud.backup.backup_keep
  - module: pgcloud.backup.backup_info
"""

EXAMPLES = r"""
- name: Keep a week of point-in-time recovery, and at least 3 backups
  pgcloud.backup.backup_delete:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    retention_policy: RECOVERY WINDOW OF 7 DAYS
    minimum_redundancy: 3

- name: Which backups would REDUNDANCY 2 delete?
  pgcloud.backup.backup_delete:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    retention_policy: REDUNDANCY 2
  check_mode: true
  register: would_delete

- name: Show them
  ansible.builtin.debug:
    msg: "{{ would_delete.deleted | map(attribute='backup_id') | list }}"

- name: Delete the last failed backup
  pgcloud.backup.backup_delete:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup_id: last-failed
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
deleted:
  description: The backups deleted (or that would be, in check mode), oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    backup_id:
      description: The id of the backup.
      type: str
      returned: always
      sample: 20260118T031500
    backup_name:
      description: The name of the backup, or null.
      type: str
      returned: always
      sample: nightly
    status:
      description: Its status before the deletion.
      type: str
      returned: always
      sample: DONE
    end_time:
      description: When the backup ended (ISO 8601), or null.
      type: str
      returned: always
      sample: "2026-01-18T03:15:42.654321+00:00"
    objects:
      description: The keys of its objects, C(backup.info) last.
      type: list
      elements: str
      returned: always
      sample: ["postgres/db1/base/20260118T031500/data.tar.zst", "postgres/db1/base/20260118T031500/backup.info"]
    wals:
      description: The names of the WAL objects deleted with it, because no remaining backup needs them.
      type: list
      elements: str
      returned: always
      sample: ["000000010000000000000002.zst", "000000010000000000000002.00000028.backup.zst"]
retention:
  description:
    - The verdict of O(retention_policy) on every backup, by id.
    - V(VALID) is kept by the policy, V(OBSOLETE) is deleted, V(OBSOLETE*) is kept by
      O(minimum_redundancy), V(KEEP:FULL) and V(KEEP:STANDALONE) are kept backups, V(-) is a
      backup that is not DONE (never judged).
  returned: when O(retention_policy) is set
  type: list
  elements: dict
  sample: [{"backup_id": "20260118T031500", "verdict": "OBSOLETE"}, {"backup_id": "20260125T031500", "verdict": "VALID"}]
aborted_uploads:
  description:
    - The multipart uploads under the server's folder open for at least O(abort_uploads_older_than)
      seconds, aborted (or that would be, in check mode).
    - Always empty on Azure, whose uncommitted blocks expire by themselves.
  returned: when O(retention_policy) is set
  type: list
  elements: dict
  contains:
    key:
      description: The key of the object the upload was writing.
      type: str
      returned: always
      sample: postgres/db1/base/20260118T031500/data.tar.zst
    upload_id:
      description: The store's id of the upload.
      type: str
      returned: always
      sample: 2~hUZQm8kV1hVx3pQZ1jXyZw
    initiated:
      description: When the upload was begun (ISO 8601).
      type: str
      returned: always
      sample: "2026-01-18T03:15:02+00:00"
"""

from typing import Any, Dict

from ansible_collections.pgcloud.backup.plugins.module_utils.ansible_adapter import (
    PgCloudModule,
    merge_argument_specs,
    sse_customer_key_argument_spec,
    storage_argument_spec,
    storage_rules,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention.delete import delete_backups


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(
        storage_argument_spec(),
        sse_customer_key_argument_spec(),
        {
            "backup_id": {"type": "str"},
            "retention_policy": {"type": "str"},
            "minimum_redundancy": {"type": "int", "default": 0},
            "abort_uploads_older_than": {"type": "int", "default": 86400},
        },
    )


def main() -> None:
    rules = dict(storage_rules())
    rules["mutually_exclusive"] = list(rules["mutually_exclusive"]) + [["backup_id", "retention_policy"]]
    rules["required_one_of"] = [["backup_id", "retention_policy"]]
    module = PgCloudModule(argument_spec(), rules=rules, supports_check_mode=True)
    params = module.params
    with module.engine_errors():
        result = delete_backups(module.storage_config(), params["backup_id"], params["retention_policy"],
                                params["minimum_redundancy"], check_mode=module.check_mode,
                                abort_uploads_older_than=params["abort_uploads_older_than"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
