#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: restore
short_description: Restore a base backup from object storage into a data directory, ready to recover
version_added: 0.1.0
description:
  - Run on the host to restore to. Fetches the archives of a base backup of O(server_name) at
    O(destination_url), decompresses them and extracts them into O(target_directory), each
    tablespace into its location, and writes the recovery settings with which PostgreSQL,
    started on the copy, fetches and replays the archived WAL.
  - Restores the backups written by M(pgcloud.backup.base_backup) and by C(barman-cloud-backup),
    of any compression, split into several archives or not, with their tablespaces.
  - Archives are fetched as streams, O(jobs) at a time, and decoded and extracted while they
    arrive; memory stays bounded by O(jobs) whatever the size of the backup.
  - Refuses, before writing anything, a backup that is not DONE, a non-empty O(target_directory)
    or tablespace location (unless O(force)), a folder this user cannot write, a recovery target
    before the end of the backup, and an archive member that would be written outside its folder.
    A restore that fails after it began writing removes what it wrote.
  - When the backup carries a C(backup_manifest) and C(pg_verifybackup) is installed, the copy
    is checked against it before the recovery settings are written (see O(verify)).
  - In check mode, resolves the backup and checks everything above, and reports what it would
    restore and where, without writing.
  - The equivalent of C(barman-cloud-restore), plus the recovery settings that it leaves to the user.
author:
  - pgcloud.backup contributors (@pgcloud)
options:
  backup_id:
    description:
      - The backup to restore, by id (V(20260125T031500)), by
        O(pgcloud.backup.base_backup#module:backup_name), or by a shortcut, V(latest) (or V(last))
        or V(oldest) (or V(first)), which skip the backups still running.
      - V(auto) restores the newest DONE backup that ended at or before O(recovery_target_time) or
        O(recovery_target_lsn), on O(recovery_target_timeline) when that is a number; with no
        such target, the newest DONE backup. Other targets (an xid, a name) do not choose the
        backup; give an older one by id when the target comes before the newest backup.
      - The backup must be DONE.
    type: str
    default: latest
  target_directory:
    description:
      - The data directory to restore into, an absolute path. It is created if missing (mode
        0700) and must otherwise be empty, unless O(force).
      - Run the module as the OS user that will run PostgreSQL on the copy (normally
        C(postgres)), since the files belong to the user that wrote them.
    type: path
    required: true
  tablespaces:
    description:
      - New locations of tablespaces, by tablespace name, as absolute paths. Tablespaces not named
        here go back to the location recorded in the backup.
      - Each location is created if missing and must otherwise be empty, unless O(force);
        C(pg_tblspc/<oid>) in O(target_directory) links to it.
      - A name that the backup does not hold is refused.
      - Equivalent to C(--tablespace NAME:LOCATION) of C(barman-cloud-restore).
    type: dict
  jobs:
    description:
      - How many archives are fetched, decoded and extracted at the same time. Each is read up
        to 8 MiB ahead of its extraction, and its files are written by a thread of their own, up
        to 16 MiB behind it.
      - Memory is therefore bounded by this number, whatever the size of the backup (on Azure,
        the SDK reads the first 32 MiB of each blob at once).
      - A backup of C(barman-cloud-backup) without tablespaces is one archive, which one job restores.
    type: int
    default: 2
  force:
    description:
      - Restore into a non-empty O(target_directory) or tablespace location, whose contents are
        removed first.
      - A folder that holds the C(postmaster.pid) of a running server is refused all the same.
    type: bool
    default: false
  verify:
    description:
      - Check the restored copy with C(pg_verifybackup --no-parse-wal) when the backup carries a
        C(backup_manifest) (the backups of M(pgcloud.backup.base_backup) do) and C(pg_verifybackup)
        is installed (the backup's major in C(/usr/lib/postgresql/<major>/bin) or
        C(/usr/pgsql-<major>/bin), else on E(PATH)). The result's RV(verified) says whether it ran.
      - A copy that fails the check is removed and the task fails.
    type: bool
    default: true
  restore_command:
    description:
      - The C(restore_command) PostgreSQL runs to fetch each WAL file during recovery.
      - When unset and the host has the collection's own command, installed by the
        C(pgcloud.backup.scheduled_backup) role in O(install_dir), for a job of the same store and
        server as this restore (see O(wal_restore_job)), the command
        C(<install_dir>/bin/pgcloud-backup --job <job> wal-restore %f %p), which fetches with the job's credentials file and prefetches the following segments.
      - Otherwise C(barman-cloud-wal-restore) (its full path when it is on this host's E(PATH)) with
        O(cloud_provider), O(endpoint_url), O(aws_profile), O(azure_credential) and O(read_timeout)
        when set, O(destination_url) and O(server_name).
      - Secrets are never written into it. With C(barman-cloud-wal-restore), the OS user of the
        server must find the store's credentials where it looks for them (its environment,
        C(~/.aws), E(AZURE_STORAGE_CONNECTION_STRING), E(GOOGLE_APPLICATION_CREDENTIALS), an
        instance's identity); otherwise give a command of your own.
    type: str
  wal_restore_job:
    description:
      - The job (V(pgcloud_backup_job_name) of the scheduled_backup role) whose C(wal-restore) the
        default O(restore_command) runs.
      - When unset, the first job, by name, whose C(<job_config_root>/<job>/config.json) this user
        can read and whose O(cloud_provider), O(destination_url), O(endpoint_url) and
        O(server_name) are those of this restore; a job of another store or server is never
        picked, since its WAL is not the WAL of the backup restored. When none is found, or
        C(<install_dir>/bin/pgcloud-backup) is missing, C(barman-cloud-wal-restore) is used.
      - When set, the job must be installed and of the same store and server, or the task fails
        before anything is written.
      - Ignored when O(restore_command) is given.
    type: str
  install_dir:
    description:
      - Where the scheduled_backup role installed the host command, C(bin/pgcloud-backup) in it
        (its V(pgcloud_backup_install_dir)).
    type: path
    default: /opt/pgcloud-backup-job
  job_config_root:
    description:
      - The folder of the jobs' C(<job>/config.json) (V(pgcloud_backup_config_root) of the
        scheduled_backup role). The command written names the job with C(--job) under the
        default folder, with C(--config <file>) under another one.
    type: path
    default: /etc/pgcloud-backup
  snapshot_recovery_instance:
    description:
      - For a backup of M(pgcloud.backup.snapshot_backup), whose data is in disk snapshots rather
        than in the store, the compute instance (an EC2 instance id or Name tag, an Azure VM name,
        a Compute Engine instance name) on which a disk
        made from each snapshot of the backup is attached and mounted where the backup recorded
        it (M(pgcloud.backup.backup_info) shows the snapshots and mount points), with the same
        mount options. Create and attach the disks with the cloud's tools first.
      - The module checks this through the compute API and the host's mount table, checks that
        O(target_directory) is the data directory on those disks, and only then puts the backup's
        C(backup_label) there, removes the source's stale C(postmaster.pid) and writes the
        recovery settings. Nothing else is downloaded; O(tablespaces) cannot be given (the
        tablespaces are on the disks) and there is nothing to O(verify).
      - Required for a snapshot backup, refused for a base backup. The compute API is the one of
        the backup's snapshots, with the credentials of the storage options (as for
        M(pgcloud.backup.snapshot_backup)); the region, subscription, resource group or project
        is the backup's unless given (O(aws_region), O(azure_subscription_id),
        O(azure_resource_group), O(gcp_project)); Compute Engine needs O(gcp_zone).
      - Equivalent to C(--snapshot-recovery-instance) of C(barman-cloud-restore).
    type: str
  aws_region:
    description: The region of O(snapshot_recovery_instance) on AWS; the backup's region when unset.
    type: str
  azure_subscription_id:
    description: The subscription of O(snapshot_recovery_instance) on Azure; the backup's when unset.
    type: str
  azure_resource_group:
    description: The resource group of O(snapshot_recovery_instance) on Azure; the backup's when unset.
    type: str
  gcp_project:
    description: The project of O(snapshot_recovery_instance) on Google Cloud; the backup's when unset.
    type: str
  gcp_zone:
    description: The zone of O(snapshot_recovery_instance) on Google Cloud; required there.
    type: str
  standby:
    description:
      - Write C(standby.signal) instead of C(recovery.signal), so that the copy stays a standby,
        replaying WAL as it is archived (and streaming with a C(primary_conninfo) of its own).
    type: bool
    default: false
  wal_archiving:
    description:
      - Let the copy archive WAL as its source did, with the C(archive_mode) and
        C(archive_command) it was restored with. This is for a server that replaces its source,
        whose new timeline must be archived where the source's WAL is.
      - V(false) appends C(archive_mode = off) to the recovery settings, for a clone, a test copy
        or a drill. Otherwise such a copy, once promoted, archives its new timeline (its WAL and
        its C(.history) file) into the source's folder of the store, where the source's own
        WAL archiving and every later recovery of the source would meet it.
      - C(barman-cloud-restore) leaves the settings as restored, as the default does.
    type: bool
    default: true
  recovery_target_time:
    description:
      - Recover up to this time, with its UTC offset (V(2026-01-25 03:15:00+00)); refused when it
        is before the end of the backup.
      - At most one of the recovery targets may be given; without any, recovery replays all the
        WAL archived.
    type: str
  recovery_target_lsn:
    description: Recover up to this WAL location (V(0/16B3748)); refused when it is before the end of the backup.
    type: str
  recovery_target_xid:
    description: Recover up to this transaction id.
    type: str
  recovery_target_name:
    description:
      - Recover up to this restore point, made with C(pg_create_restore_point()).
      - At most 63 bytes, as PostgreSQL's restore point names.
    type: str
  recovery_target_immediate:
    description: End recovery as soon as the copy is consistent, at the end of the backup.
    type: bool
    default: false
  recovery_target_timeline:
    description: The timeline to recover along, V(current), V(latest) or a number; PostgreSQL's default (V(latest)) when unset.
    type: str
  recovery_target_action:
    description:
      - What the server does when it reaches the recovery target; PostgreSQL's default (V(pause)) when unset.
      - Only with a recovery target.
    type: str
    choices: [pause, promote, shutdown]
extends_documentation_fragment:
  - pgcloud.backup.storage
  - pgcloud.backup.storage.sse_customer_key
  - pgcloud.backup.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
notes:
  - The recovery settings are appended to C(postgresql.auto.conf), whose later lines win over
    the earlier ones and over C(postgresql.conf); the configuration the backup holds (its port,
    its C(archive_command)) is otherwise restored as it was. Review it before starting the copy
    beside the original server, and set O(wal_archiving=false) for a copy that must not archive
    into the source's folder of the store.
  - Restores PostgreSQL 12 and later (recovery signal files). Snapshot backups are recovered
    from disks made from their snapshots (see O(snapshot_recovery_instance)).
requirements:
  - lz4, zstandard or cramjam for the backups compressed with them
  - barman-cloud-wal-restore, the collection's C(pgcloud-backup) (see O(wal_restore_job)) or another
    O(restore_command) on the host, for the recovery
seealso:
  - module: pgcloud.backup.backup_info
  - module: pgcloud.backup.base_backup
"""

EXAMPLES = r"""
- name: Restore the latest backup of db1 into a new data directory
  become: true
  become_user: postgres
  pgcloud.backup.restore:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    target_directory: /var/lib/postgresql/15/restored
    jobs: 4
  register: restored

- name: A clone of db1 for tests, which must not archive into db1's folder of the store
  become: true
  become_user: postgres
  pgcloud.backup.restore:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    target_directory: /var/lib/postgresql/15/clone
    wal_archiving: false

- name: Recover to a moment before a mistake, then promote
  become: true
  become_user: postgres
  pgcloud.backup.restore:
    destination_url: s3://acme-backups/postgres
    server_name: db1
    backup_id: auto  # the newest backup that ended before the target time
    target_directory: /var/lib/postgresql/15/main
    force: true
    recovery_target_time: "2026-01-25 14:02:00+00"
    recovery_target_action: promote
    tablespaces:
      fast_space: /srv/pg/fast_space

- name: A new replica from the latest backup, fed from the WAL archive
  become: true
  become_user: postgres
  pgcloud.backup.restore:
    cloud_provider: google-cloud-storage
    destination_url: gs://acme-backups/postgres
    server_name: db1
    target_directory: /var/lib/postgresql/15/main
    standby: true
    restore_command: "/usr/local/bin/barman-cloud-wal-restore --cloud-provider google-cloud-storage gs://acme-backups/postgres db1 %f %p"
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
  description: The id of the backup restored.
  returned: always
  type: str
  sample: 20260125T031500
backup_name:
  description: The name of the backup, or null.
  returned: always
  type: str
  sample: before-release-4.2
begin_time:
  description: When the server's backup began.
  returned: always
  type: str
  sample: "2026-01-25T03:15:00.123456+00:00"
end_time:
  description: When the server's backup ended; a recovery target must be after it.
  returned: always
  type: str
  sample: "2026-01-25T03:15:42.654321+00:00"
target_directory:
  description: The data directory restored (or to restore, in check mode).
  returned: always
  type: str
  sample: /var/lib/postgresql/15/restored
tablespaces:
  description: The tablespaces of the backup and where they are (or would be) restored.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The tablespace's name.
      type: str
      returned: always
      sample: fast_space
    oid:
      description: The tablespace's oid, the name of its link in C(pg_tblspc).
      type: int
      returned: always
      sample: 16385
    location:
      description: The folder its archives are extracted into.
      type: str
      returned: always
      sample: /srv/pg/fast_space
archives:
  description: The archive objects of the backup, with their stored sizes in bytes.
  returned: always
  type: list
  elements: dict
  sample:
    - {key: postgres/db1/base/20260125T031500/data.tar.zst, size: 268435456}
bytes_downloaded:
  description: The bytes of the archives, as stored (compressed).
  returned: always
  type: int
  sample: 268435456
bytes_written:
  description: The bytes of the files written; 0 in check mode.
  returned: always
  type: int
  sample: 1073741824
files_written:
  description: How many files (and links) were written; 0 in check mode.
  returned: always
  type: int
  sample: 1630
verified:
  description:
    - Whether C(pg_verifybackup) checked the copy against its C(backup_manifest) and found it
      whole; false when it did not run (RV(verify_message) says why). A copy that fails the
      check makes the task fail.
  returned: always
  type: bool
  sample: true
verify_message:
  description: The last line of C(pg_verifybackup), or why it did not run; null in check mode.
  returned: always
  type: str
  sample: backup successfully verified
recovery_settings:
  description:
    - The settings appended to C(postgresql.auto.conf) (or that would be), unquoted.
    - C(archive_mode) is among them, V(off), with O(wal_archiving=false).
  returned: always
  type: dict
  sample:
    restore_command: /usr/bin/barman-cloud-wal-restore --cloud-provider aws-s3 s3://acme-backups/postgres db1 %f %p
    recovery_target_time: "2026-01-25 14:02:00+00"
signal_file:
  description: The signal file written in the data directory, C(recovery.signal) or C(standby.signal).
  returned: always
  type: str
  sample: recovery.signal
snapshot_disks:
  description: For a snapshot backup, the disk made from each snapshot, its device on this host and its mount point.
  returned: when O(snapshot_recovery_instance) is given
  type: list
  elements: dict
  sample:
    - {snapshot_name: pgdata-20260125t031500, disk: vol-0123456789abcdef0, device: /dev/nvme1n1, mount_point: /srv/pgdata}
elapsed_seconds:
  description: The duration of the restore, in seconds.
  returned: always
  type: float
  sample: 12.4
msg:
  description: A one-line summary of what was done or would be.
  returned: always
  type: str
  sample: "restored backup 20260125T031500 into /var/lib/postgresql/15/restored: 1630 files, 1024.0 MiB written, 256.0 MiB fetched, 12.4 s"
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
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import from_params
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore import restore_backup
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.options import (
    RECOVERY_TARGETS,
    RestoreConfig,
    restore_argument_spec,
)


def argument_spec() -> Dict[str, Dict[str, Any]]:
    return merge_argument_specs(
        storage_argument_spec(),
        sse_customer_key_argument_spec(),
        restore_argument_spec(),
    )


def main() -> None:
    # recovery_target_immediate is a bool that defaults to false: the engine counts it as given only when true.
    rules = {"mutually_exclusive": [[name for name in RECOVERY_TARGETS if name != "recovery_target_immediate"]]}
    module = PgCloudModule(argument_spec(), rules=merge_rules(storage_rules(), rules), supports_check_mode=True)
    with module.engine_errors():
        result = restore_backup(module.storage_config(), from_params(RestoreConfig, module.params),
                                check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
