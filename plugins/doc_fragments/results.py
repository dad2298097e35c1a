# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The return values every module of the collection adds to its own (RETURN only).
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
"""

    # What the modules that take a backup (base_backup, snapshot_backup) return about it.
    BACKUP = r"""
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
"""
