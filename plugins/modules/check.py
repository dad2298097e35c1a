#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: check
short_description: Test the object store and the PostgreSQL server before backing up
version_added: 0.1.0
description:
  - Tests that the object store at O(destination_url) answers and that its bucket exists,
    and, unless O(check_postgres=false), that the PostgreSQL server accepts a connection
    and a backup by this OS user and role.
  - Fails, with the findings in the result, when any of these does not hold, so that a play
    stops before it relies on backups that cannot be taken.
  - Changes nothing, in check mode or not, but for the WAL segment switch of O(check_wal),
    which PostgreSQL also makes on its own (C(archive_timeout)) and which changes no data.
  - The storage part is the equivalent of C(barman-cloud-backup --test); the PostgreSQL part
    goes beyond it.
author:
  - pgcloud.backup contributors (@pgcloud)
options:
  check_postgres:
    description:
      - Also connect to PostgreSQL and check that a base backup could be taken (server
        facts, backup privileges of O(user), read access to the data directory and the
        tablespaces for the OS user the module runs as).
      - Set to V(false) on a host that only needs the object store, for example one that
        reads or prunes backups.
    type: bool
    default: true
  check_wal:
    description:
      - Also check that the server's WAL reaches O(destination_url), since a base backup
        restores only with the WAL written during it.
      - On a primary, closes the current WAL segment (C(pg_switch_wal())), waits at most
        O(wal_archive_timeout) seconds for that segment to be in the store (in the
        barman-cloud layout, C(<server_name>/wals/)), and reports C(pg_stat_archiver) in
        RV(wal). Fails when the segment does not arrive in time, or when the archiver is
        failing (its last failure is more recent than its last success).
      - On a standby, which cannot switch segments, the switch is skipped with a warning and
        only the archiver's state is checked.
      - The role needs to be a superuser or have EXECUTE on C(pg_switch_wal()); the count and
        age of the C(.ready) files (RV(wal.archiver.ready_count)) need C(pg_monitor).
      - Unset, V(true) where the server archives WAL (C(archive_mode) V(on) or V(always)),
        else V(false). V(true) on a server whose C(archive_mode) is V(off) fails.
      - Needs O(check_postgres=true). Skipped when the store itself fails its check.
      - The check looks for the segment under O(server_name), which must therefore be the one
        the server's C(archive_command) archives under.
    type: bool
  wal_archive_timeout:
    description:
      - With O(check_wal), the seconds to wait for the switched WAL segment to reach
        O(destination_url). V(0) looks once, without waiting.
      - The same option as the backups' (M(pgcloud.backup.base_backup)), at most 86400.
    type: int
    default: 300
extends_documentation_fragment:
  - pgcloud.backup.storage
  - pgcloud.backup.postgres
  - pgcloud.backup.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
notes:
  - A store that answers but refuses the credentials is reported with RV(storage.reachable=true)
    and the refusal in RV(storage.error).
  - When C(archive_mode) is off on the server, the module succeeds with a warning, because a
    base backup is of no use for a restore without the WAL written during it.
seealso:
  - module: pgcloud.backup.base_backup
  - module: pgcloud.backup.backup_info
"""

EXAMPLES = r"""
- name: Check the bucket and the local server before the first backup
  become: true
  become_user: postgres
  pgcloud.backup.check:
    destination_url: s3://acme-backups/postgres
    server_name: "{{ inventory_hostname }}"

- name: Check an S3-compatible store only, with credentials from the vault
  pgcloud.backup.check:
    destination_url: s3://backups/pg
    server_name: db1
    endpoint_url: https://minio.internal:9000
    addressing_style: path
    aws_access_key: "{{ vault_minio_access_key }}"
    aws_secret_key: "{{ vault_minio_secret_key }}"
    check_postgres: false

- name: Check an Azure container with the storage account's connection string
  pgcloud.backup.check:
    cloud_provider: azure-blob-storage
    destination_url: https://acmebackups.blob.core.windows.net/postgres/prod
    server_name: db1
    azure_storage_connection_string: "{{ vault_azure_connection_string }}"
    check_postgres: false

- name: Report the findings without failing the play
  pgcloud.backup.check:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    port: 5433
  register: backup_check
  ignore_errors: true

- name: Show why the check failed
  ansible.builtin.debug:
    msg: "{{ backup_check.storage.error or backup_check.postgres.error }}"
  when: backup_check is failed
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
ok:
  description: Whether every check passed. The module fails when this is false.
  returned: always
  type: bool
  sample: true
msg:
  description: A one-line summary of the findings, or the reasons of the failure.
  returned: always
  type: str
  sample: "s3://acme-backups/postgres is reachable; PostgreSQL 15.4 at /var/lib/postgresql/15/main can be backed up"
storage:
  description:
    - What was found at the destination.
    - Null when a parameter was refused before any check ran (the C(parameter) result names it).
  returned: always
  type: dict
  contains:
    cloud_provider:
      description: The provider that was tested.
      type: str
      returned: always
      sample: aws-s3
    destination_url:
      description: The destination, as parsed.
      type: str
      returned: always
      sample: s3://acme-backups/postgres
    bucket:
      description: The bucket (or container) of the destination.
      type: str
      returned: always
      sample: acme-backups
    prefix:
      description: The path inside the bucket, without the server name.
      type: str
      returned: always
      sample: postgres
    reachable:
      description: Whether the store answered at all, even with a refusal.
      type: bool
      returned: always
      sample: true
    bucket_exists:
      description: Whether the bucket exists; null when the store did not tell.
      type: bool
      returned: always
      sample: true
    error:
      description: Why the store cannot be used, or null.
      type: str
      returned: always
      sample: null
postgres:
  description:
    - What was found on the PostgreSQL server.
    - Null when O(check_postgres=false), or when a parameter was refused before any check ran.
  returned: always
  type: dict
  contains:
    connected:
      description: Whether a session could be opened.
      type: bool
      returned: always
      sample: true
    server_version:
      description: The server version as a number (C(server_version_num)), or null.
      type: int
      returned: always
      sample: 150004
    data_directory:
      description: The data directory (PGDATA) the server reports, or null.
      type: str
      returned: always
      sample: /var/lib/postgresql/15/main
    in_recovery:
      description: Whether the server is a standby, or null.
      type: bool
      returned: always
      sample: false
    backup_privileges:
      description: Whether the role may start and stop a backup, or null.
      type: bool
      returned: always
      sample: true
    archive_mode:
      description: The server's C(archive_mode) setting, or null.
      type: str
      returned: always
      sample: "on"
    error:
      description: Why no backup could be taken from this server, or null.
      type: str
      returned: always
      sample: null
    warnings:
      description: Findings that do not prevent a backup but deserve attention.
      type: list
      elements: str
      returned: when the server was checked
      sample: []
wal:
  description:
    - What the WAL check (O(check_wal)) found.
    - Null when it did not run (O(check_wal=false), V(archive_mode=off) with O(check_wal)
      unset, no connection to the server, a store that failed its own check, or a parameter
      refused before any check ran).
  returned: always
  type: dict
  contains:
    archive_mode:
      description: The server's C(archive_mode) setting.
      type: str
      returned: always
      sample: "on"
    segment:
      description: The WAL segment closed by C(pg_switch_wal()), or null on a standby.
      type: str
      returned: always
      sample: "000000010000000000000042"
    switched:
      description: Whether the check closed a segment (false on a standby).
      type: bool
      returned: always
      sample: true
    in_store:
      description: Whether RV(wal.segment) reached O(destination_url); null when no segment was closed.
      type: bool
      returned: always
      sample: true
    waited_seconds:
      description: How long the check waited for RV(wal.segment), or null.
      type: float
      returned: always
      sample: 1.5
    archiver:
      description:
        - C(pg_stat_archiver) after the wait, and the WAL files waiting to be archived.
      type: dict
      returned: always
      contains:
        archived_count:
          description: WAL files archived since the statistics were reset.
          type: int
          returned: always
          sample: 66
        last_archived_wal:
          description: The last WAL file archived, or null.
          type: str
          returned: always
          sample: "000000010000000000000042"
        last_archived_time:
          description: When it was archived (ISO 8601), or null.
          type: str
          returned: always
          sample: "2026-01-25T03:15:01.234567+00:00"
        failed_count:
          description: Failed C(archive_command) calls since the statistics were reset.
          type: int
          returned: always
          sample: 0
        last_failed_wal:
          description: The WAL file of the last failure, or null.
          type: str
          returned: always
          sample: null
        last_failed_time:
          description: When the last failure happened (ISO 8601), or null.
          type: str
          returned: always
          sample: null
        failing:
          description: Whether the last failure is more recent than the last success.
          type: bool
          returned: always
          sample: false
        ready_count:
          description:
            - WAL files waiting to be archived (C(.ready) in C(pg_wal/archive_status)); null
              when the role may not list them (it needs C(pg_monitor) or superuser).
          type: int
          returned: always
          sample: 0
        oldest_ready_age_seconds:
          description: The age of the oldest of them in seconds, 0 when none waits, or null as RV(wal.archiver.ready_count).
          type: float
          returned: always
          sample: 0.0
    error:
      description: Why WAL archiving does not work, or null.
      type: str
      returned: always
      sample: null
    warnings:
      description: Findings that do not fail the check (a standby's skipped switch).
      type: list
      elements: str
      returned: always
      sample: []
"""

from typing import Any, Dict, Optional

from ansible_collections.pgcloud.backup.plugins.module_utils.ansible_adapter import (
    PgCloudModule,
    failure_result,
    merge_argument_specs,
    postgres_argument_spec,
    storage_argument_spec,
    storage_rules,
    upload_argument_spec,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.operations import check_destination


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(
        storage_argument_spec(),
        postgres_argument_spec(),
        {"check_postgres": {"type": "bool", "default": True},
         # No default: unset means "where the server archives WAL", which only the server knows.
         "check_wal": {"type": "bool"},
         "wal_archive_timeout": upload_argument_spec()["wal_archive_timeout"]},
    )


def postgres_text(server_version: Optional[int]) -> str:
    """server_version_num as people write it: 150004 is 15.4, 90624 is 9.6.24."""
    if not server_version:
        return "PostgreSQL"
    major, minor = divmod(server_version, 10000)
    if major >= 10:
        return "PostgreSQL %d.%d" % (major, minor)
    return "PostgreSQL %d.%d.%d" % (major, minor // 100, minor % 100)


def summary(report: Dict[str, Any]) -> str:
    storage, postgres = report["storage"], report["postgres"]
    problems = []
    if storage["error"]:
        problems.append("storage: %s" % storage["error"])
    if postgres is not None and postgres["error"]:
        problems.append("postgres: %s" % postgres["error"])
    if (report.get("wal") or {}).get("error"):
        problems.append("wal: %s" % report["wal"]["error"])
    if problems:
        return "; ".join(problems)
    text = "%s is reachable" % storage["destination_url"]
    if postgres is not None:
        text += "; %s at %s can be backed up" % (postgres_text(postgres["server_version"]), postgres["data_directory"])
    wal = report.get("wal")
    if wal and wal["in_store"]:
        text += "; WAL segment %s reached the store in %s s" % (wal["segment"], wal["waited_seconds"])
    return text


def wal_option(params: Dict[str, Any]) -> Optional[bool]:
    """check_wal, refused without check_postgres (the check needs the server)."""
    if params["check_wal"] and not params["check_postgres"]:
        raise ConfigurationError("check_wal=true needs check_postgres=true: the WAL check switches the server's "
                                 "WAL segment and reads pg_stat_archiver; set check_postgres: true or check_wal: "
                                 "false", "check_wal")
    return params["check_wal"] if params["check_postgres"] else False


def main() -> None:
    module = PgCloudModule(argument_spec(), rules=storage_rules(), supports_check_mode=True)
    with module.engine_errors():
        try:
            storage = module.storage_config()
            check_wal = wal_option(module.params)
            postgres = module.postgres_config() if module.params["check_postgres"] else None
            report = check_destination(storage, postgres, check_wal)
        except ConfigurationError as error:
            # A playbook that reads the report finds its keys even when no check could run.
            module.fail_json(ok=False, storage=None, postgres=None, wal=None, **failure_result(error))
    for warning in ((report["postgres"] or {}).get("warnings") or []) + ((report.get("wal") or {}).get("warnings") or []):
        module.warn(warning)
    if not report["ok"]:
        module.fail_json(msg=summary(report), **report)
    module.exit_json(changed=False, msg=summary(report), **report)


if __name__ == "__main__":
    main()
