# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the options of the modules that write a backup."""

from __future__ import annotations


class ModuleDocFragment(object):

    # upload_argument_spec(); the sse_customer_key option it includes is documented by
    # pgcloud.backup.storage.sse_customer_key, which modules extend as well.
    DOCUMENTATION = r"""
options:
  backup_name:
    description:
      - A name for the backup, which the restore and delete tools of barman-cloud accept
        wherever they take a backup id.
      - Makes the task idempotent. When a backup of that name is already DONE for
        O(server_name) at O(destination_url), no new backup is taken and the task reports
        that one, unchanged.
      - Must not look like a backup id (V(YYYYMMDDTHHMMSS)) nor be one of the words the tools
        reserve (V(latest), V(last), V(oldest), V(first), V(last-failed), V(latest-full),
        V(last-full), V(auto)).
      - Must not be V(None) (which C(backup.info) reads back as no name), hold a control or
        invisible character (a line break, a tab, ...), or start or end with a space, since the tools
        read the name back stripped, so it would never match again and every run would take
        another backup.
      - Equivalent to C(-n/--name) of C(barman-cloud-backup).
    type: str
    aliases: [name]
  tags:
    description:
      - Tags to put on every object the backup writes, as a dictionary of tag names to values.
      - S3 object tags, Azure blob index tags; Google Cloud Storage has no object tags, so
        there they are custom metadata of the objects, as C(barman-cloud-backup) writes them.
      - At most 10 tags; names of 1 to 128 characters that do not start with C(aws:), values of
        at most 256 characters, without spaces at either end, checked against the rules of the
        store of O(cloud_provider) before the backup starts.
      - V(aws-s3) takes letters, digits, spaces and the characters C(_.:/=+-@).
      - V(azure-blob-storage) takes the same but C(@) (the rules of blob index tags).
      - V(google-cloud-storage) takes the same in values; names are HTTP header names there,
        so letters, digits and C(_.+-) only, and two names that differ only in case are one.
      - Equivalent to C(--tags) of C(barman-cloud-backup), which takes C(key,value) pairs.
    type: dict
  encryption:
    description:
      - Server-side encryption that S3 applies to the stored objects, with keys managed by S3
        (V(AES256)) or by AWS KMS (V(aws:kms)).
      - When unset, the bucket's default encryption applies.
      - Equivalent to C(-e/--encryption) of C(barman-cloud-backup).
    type: str
    choices: [AES256, aws:kms]
  sse_kms_key_id:
    description:
      - The KMS key for O(encryption=aws:kms), as a key id or a key ARN.
      - When unset, the AWS managed key of S3 is used.
      - Only valid with O(encryption=aws:kms).
      - Equivalent to C(--sse-kms-key-id) of C(barman-cloud-backup).
    type: str
  encryption_scope:
    description:
      - The encryption scope of the Azure storage account to encrypt the stored data with.
      - For O(cloud_provider=azure-blob-storage) only.
      - Equivalent to C(--encryption-scope) of C(barman-cloud-backup).
    type: str
  kms_key_name:
    description:
      - The Cloud KMS key to encrypt the data stored in Google Cloud Storage with, as
        V(projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY).
      - For O(cloud_provider=google-cloud-storage) only.
      - Equivalent to C(--kms-key-name) of C(barman-cloud-backup).
    type: str
  immediate_checkpoint:
    description:
      - Ask PostgreSQL for a fast checkpoint at the start of the backup, so that the copy
        starts at once, at the cost of a burst of I/O.
      - When false, the server spreads the checkpoint over its configured
        C(checkpoint_completion_target), and the backup may wait for it.
      - Equivalent to C(--immediate-checkpoint) of C(barman-cloud-backup).
    type: bool
    default: false
  keepalive_interval:
    description:
      - Seconds between the trivial queries that keep the PostgreSQL session alive while the
        files are uploaded; a connection that idles too long may be cut by a firewall or
        C(idle_session_timeout), which would abort the backup.
      - V(0) sends none; at most 3600.
      - Equivalent to C(--keepalive-interval) of C(barman-cloud-backup).
    type: int
    default: 60
  primary_conninfo:
    description:
      - For a backup taken from a standby, the libpq connection string of its primary, such as
        V(host=db1 user=postgres dbname=postgres).
      - A standby cannot close the WAL file that holds the end of its backup; with this set, the
        backup asks the primary to (C(pg_switch_wal())) every 10 seconds until that file is in
        O(destination_url), so that the backup can be restored as soon as the module returns.
        The role needs to be a superuser or have EXECUTE on C(pg_switch_wal()).
      - Ignored when the server backed up is a primary.
    type: str
  wal_archive_timeout:
    description:
      - For a backup taken from a standby, the seconds to wait, after the files are uploaded,
        for the WAL file that holds the end of the backup to appear in O(destination_url)
        (archived there by the primary, or by the standby with C(archive_mode=always)). The
        backup is recorded as failed if it does not, since it could not be restored.
      - Without O(primary_conninfo), the file arrives when the primary's traffic or its
        C(archive_timeout) completes it.
      - For a backup taken from a primary, the seconds to wait for the server's archiver to
        archive that WAL file (as C(pg_stat_archiver) reports it); the backup is recorded as
        failed, with the archiver's last failure in its message, if it does not.
      - V(0) does not wait, as C(barman-cloud-backup) does not on a standby; the backup is then
        restorable only once that file is archived.
      - At most 86400 (a day).
    type: int
    default: 300
  require_wal_archiving:
    description:
      - Refuse to back up a primary that archives no WAL (C(archive_mode=off), or neither
        C(archive_command) nor C(archive_library) set), before anything is written, since a
        base backup cannot be restored without the WAL written while it ran.
      - Set V(false) only when WAL reaches the restore by another way (for example
        C(pg_receivewal)); the backup then does not wait for the archiver when C(archive_mode=off).
    type: bool
    default: true
"""
