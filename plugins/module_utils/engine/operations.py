# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's entry points: what the modules (and scripts) call."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from . import layout
from .jobs.base_backup import BaseBackupJob, check_readable
from .catalog import Catalog
from .catalog import check_objects as check_objects_of
from .config import BackupConfig, PostgresConfig, SnapshotConfig, StorageConfig
from .errors import BucketNotFoundError, PgCloudError, StorageAccessDeniedError, StorageError
from .postgres.session import PostgresSession
from .jobs.snapshot_backup import SnapshotBackupJob
from .restore.job import RestoreJob
from .restore.options import RestoreConfig
from .storage.factory import open_store, parse_destination
from .wal.check import check_wal_report, wal_check_wanted
from .wal.continuity import wal_continuity


def check_destination(storage: StorageConfig, postgres: Optional[PostgresConfig] = None,
                      check_wal: Optional[bool] = False) -> Dict[str, Any]:
    """Test the store (and the server, and with check_wal that its WAL reaches the store: None
    where it archives); problems are reported in the result, not raised."""
    destination = parse_destination(storage)
    store_report: Dict[str, Any] = {
        "cloud_provider": destination.cloud_provider,
        "destination_url": destination.url,
        "bucket": destination.bucket,
        "prefix": destination.prefix,
        "reachable": False,
        "bucket_exists": None,
        "error": None,
    }
    try:
        open_store(storage).check()
        store_report.update(reachable=True, bucket_exists=True)
    except StorageError as error:
        store_report["reachable"] = isinstance(error, (BucketNotFoundError, StorageAccessDeniedError))
        store_report["bucket_exists"] = False if isinstance(error, BucketNotFoundError) else None
        store_report["error"] = str(error)
    # No WAL check (nor its segment switch) against a store that does not answer.
    wal_wanted = check_wal if store_report["error"] is None else False
    postgres_report = None if postgres is None else _check_postgres(postgres, storage, wal_wanted)
    wal_report = (postgres_report or {}).pop("wal", None)
    ok = store_report["error"] is None and all(
        report is None or report["error"] is None for report in (postgres_report, wal_report))
    return {"ok": ok, "storage": store_report, "postgres": postgres_report, "wal": wal_report}


def _check_postgres(postgres: PostgresConfig, storage: StorageConfig, check_wal: Optional[bool]) -> Dict[str, Any]:
    report: Dict[str, Any] = {
        "connected": False, "server_version": None, "data_directory": None, "in_recovery": None,
        "backup_privileges": None, "archive_mode": None, "error": None, "warnings": [],
    }
    try:
        session = PostgresSession(postgres)
    except PgCloudError as error:
        report["error"] = str(error)
        return report
    try:
        report.update(connected=True, server_version=session.version)
        facts = session.facts()
        report.update(data_directory=facts.data_directory, in_recovery=facts.in_recovery,
                      backup_privileges=facts.backup_privileges, archive_mode=facts.archive_mode)
        report["warnings"].extend(facts.warnings)
        if wal_check_wanted(check_wal, facts.archive_mode):
            report["wal"] = check_wal_report(storage, session, postgres.wal_archive_timeout)
        check_readable(facts)
        if facts.archive_mode == "off":
            report["warnings"].append(
                "archive_mode is off: a base backup cannot be restored without its WAL; "
                "archive WAL (for example with barman-cloud-wal-archive) before relying on backups")
    except PgCloudError as error:
        report["error"] = str(error)
    finally:
        session.close()
    return report


def take_base_backup(storage: StorageConfig, postgres: PostgresConfig, backup: BackupConfig,
                     check_mode: bool = False) -> Dict[str, Any]:
    return BaseBackupJob(storage, postgres, backup).run(check_mode=check_mode).as_dict()


def take_snapshot_backup(storage: StorageConfig, postgres: PostgresConfig, snapshot: SnapshotConfig,
                         backup: BackupConfig, check_mode: bool = False) -> Dict[str, Any]:
    return SnapshotBackupJob(storage, postgres, snapshot, backup).run(check_mode=check_mode).as_dict()


def _summary(catalog: Catalog, fields: Dict[str, Any]) -> Dict[str, Any]:
    objects = catalog.objects(fields["backup_id"])
    return {
        "backup_id": fields["backup_id"],
        "backup_name": fields.get("backup_name"),
        "status": fields.get("status"),
        "begin_time": layout.describe_time(fields.get("begin_time")),
        "end_time": layout.describe_time(fields.get("end_time")),
        "begin_wal": fields.get("begin_wal"),
        "end_wal": fields.get("end_wal"),
        "timeline": fields.get("timeline"),
        "size": sum(item["size"] for item in objects),
        "error": fields.get("error"),
        "keep": catalog.keep_target(fields["backup_id"], objects),
    }


def list_backups(storage: StorageConfig) -> List[Dict[str, Any]]:
    catalog = Catalog(open_store(storage))
    return [_summary(catalog, fields) for fields in catalog.all()]


def show_backup(storage: StorageConfig, backup: str) -> Dict[str, Any]:
    return describe_backup(storage, backup)["backup"]


def show_and_check_backup(storage: StorageConfig, backup: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """show_backup, and whether the backup's objects are all in the store (see catalog.check_objects),
    from the one listing of its folder."""
    described = describe_backup(storage, backup, check_objects=True)
    return described["backup"], described["objects_check"]


def describe_backup(storage: StorageConfig, backup: str, check_objects: bool = False,
                    check_wal: bool = False) -> Dict[str, Any]:
    """One backup's details (`backup`), with, when asked, whether its objects are all in the
    store (`objects_check`, catalog.check_objects) and whether the WAL archive holds every
    segment from its first WAL file to the newest (`wal_check`, wal.continuity)."""
    catalog = Catalog(open_store(storage))
    fields = catalog.resolve(backup)
    objects = catalog.objects(fields["backup_id"])
    described: Dict[str, Any] = {"backup": _shown(fields, objects, catalog.keep_target(fields["backup_id"], objects))}
    if check_objects:
        described["objects_check"] = dict(check_objects_of(catalog, fields, objects), backup_id=fields["backup_id"])
    if check_wal:
        described["wal_check"] = dict(wal_continuity(catalog, fields), backup_id=fields["backup_id"])
    return described


def _shown(fields: Dict[str, Any], objects: List[Dict[str, Any]], keep: Optional[str]) -> Dict[str, Any]:
    shown = {name: value for name, value in fields.items() if name not in layout.TIME_FIELDS}
    shown.update(
        begin_time=layout.describe_time(fields.get("begin_time")),
        end_time=layout.describe_time(fields.get("end_time")),
        tablespaces=[{"name": name, "oid": oid, "location": location}
                     for name, oid, location in fields.get("tablespaces") or []],
        objects=objects,
        size=sum(item["size"] for item in objects),
        keep=keep,
    )
    return shown


def restore_backup(storage: StorageConfig, restore: RestoreConfig, check_mode: bool = False) -> Dict[str, Any]:
    """Restore a base backup into restore.target_directory, ready for PostgreSQL to recover."""
    return RestoreJob(storage, restore).run(check_mode=check_mode)
