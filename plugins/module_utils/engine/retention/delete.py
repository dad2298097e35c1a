# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deleting backups, one by id or those a retention policy judges obsolete, and the WAL they leave unused.

Everything is planned from two listings (base/ and wals/) before anything is deleted, so bad
input and refusals (a kept backup, an unreadable backup.info, a snapshot backup) stop the run
with the store untouched, and check mode returns the plan itself.

Each backup goes in this order: its backup.info is rewritten as FAILED (with an error saying
so), its other objects are deleted, then its backup.info, then the WAL it leaves unused. A run
interrupted part-way thus leaves at worst one backup listed as FAILED, never a DONE one with
missing objects; a policy run finishes such a backup the next time.

WAL of a deleted backup: when an older restorable backup remains that is not kept standalone,
it needs all later WAL and nothing goes. Otherwise the WAL files before the next restorable
backup's begin_wal go (before the deleted backup's own begin_wal when none is left, since a
backup taken later may still need the WAL it started in), except the begin_wal..end_wal range
of each older standalone backup, timeline history files, and the timelines that other
remaining backups are on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from .. import layout
from ..catalog import Catalog
from ..config import BACKUP_ID_PATTERN, StorageConfig
from ..errors import BackupError, ConfigurationError, PgCloudError, StorageError
from ..storage.base import ObjectStore
from ..storage.factory import open_store
from .keep import resolve_backup
from .orphans import DEFAULT_MIN_AGE, abort_orphan_uploads, check_min_age
from .policy import check_minimum_redundancy, judge, obsolete_ids, parse_policy

LOG = logging.getLogger("pgcloud.backup")
# The error recorded in the backup.info of a backup whose deletion has begun.
DELETING_ERROR = "deletion started by pgcloud.backup.backup_delete; run it again to finish"


@dataclass
class BackupDeletion:
    """One backup to delete: its objects (backup.info last) and the WAL objects it leaves unused."""

    fields: Dict[str, Any]
    objects: List[str]
    info_key: str
    wal_keys: List[str] = field(default_factory=list)

    @property
    def backup_id(self) -> str:
        return str(self.fields["backup_id"])

    def describe(self) -> Dict[str, Any]:
        return {"backup_id": self.backup_id, "backup_name": self.fields.get("backup_name"),
                "status": self.fields.get("status"), "end_time": layout.describe_time(self.fields.get("end_time")),
                "objects": self.objects + [self.info_key], "wals": [key.rsplit("/", 1)[-1] for key in self.wal_keys]}


class StoreState:
    """The backups, their objects and keeps, and the archived WAL, from one listing of each folder."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        destination = catalog.destination
        self.objects: Dict[str, List[str]] = {}
        base = destination.key(layout.BASE_FOLDER) + "/"
        for item in catalog.store.list_objects(base):
            backup_id = item.key[len(base):].split("/", 1)[0]
            self.objects.setdefault(backup_id, []).append(item.key)
        self.backups = self._read_backups()
        self.keeps = {backup_id: catalog.keep_target(backup_id, [{"key": key} for key in keys])
                      for backup_id, keys in self.objects.items()}
        self.wals: Dict[str, str] = {}
        for item in catalog.store.list_objects(destination.key(layout.WAL_FOLDER) + "/"):
            name = layout.wal_name_of_key(item.key)
            if name is not None:
                self.wals[item.key] = name

    def _read_backups(self) -> List[Dict[str, Any]]:
        backups = []
        for backup_id in sorted(self.objects):
            if not BACKUP_ID_PATTERN.match(backup_id):
                continue
            fields = self.catalog.read(backup_id)
            if fields is None:
                continue
            if fields.get("status") == "UNREADABLE":
                raise PgCloudError("backup %s has a backup.info that cannot be read (%s): nothing is deleted "
                                   "until it is repaired or removed" % (backup_id, fields.get("error")))
            backups.append(fields)
        return backups


def delete_backups(storage: StorageConfig, backup_id: Optional[str] = None, retention_policy: Optional[str] = None,
                   minimum_redundancy: Any = 0, check_mode: bool = False,
                   now: Optional[datetime] = None, abort_uploads_older_than: Any = DEFAULT_MIN_AGE) -> Dict[str, Any]:
    """Delete one backup (backup_id: id, name or shortcut) or apply a retention policy.

    Returns what was deleted (or would be, in check mode): changed, deleted (one entry per
    backup with its objects and WAL files) and, for a policy, the verdict on every backup and
    the uploads left open for abort_uploads_older_than seconds or more, aborted (orphans.py).
    """
    if (backup_id is None) == (retention_policy is None):
        raise ConfigurationError("give either backup_id (one backup) or retention_policy, not %s"
                                 % ("both" if backup_id is not None else "neither"),
                                 "backup_id" if backup_id is not None else "retention_policy")
    minimum = check_minimum_redundancy(minimum_redundancy)
    policy = parse_policy(retention_policy) if retention_policy is not None else None
    min_age = check_min_age(abort_uploads_older_than)
    now = now or datetime.now(timezone.utc)
    catalog = Catalog(open_store(storage))
    state = StoreState(catalog)
    verdicts: Optional[Dict[str, str]] = None
    if policy is not None:
        verdicts = judge(state.backups, state.keeps, policy, minimum, now)
        targets = obsolete_ids(verdicts) + _interrupted(state.backups)
    else:
        targets = [_one_backup(catalog, state, str(backup_id), minimum)]
    plan = _plan(state, sorted(set(targets)))
    if not check_mode:
        _execute(catalog.store, plan)
    result: Dict[str, Any] = {"changed": bool(plan), "deleted": [step.describe() for step in plan]}
    if verdicts is not None:
        result["retention"] = [{"backup_id": key, "verdict": value} for key, value in sorted(verdicts.items())]
        # After the backups: a store that refuses the deletions is reported before this is tried.
        result["aborted_uploads"] = abort_orphan_uploads(catalog.store, catalog.destination.key() + "/", min_age, now,
                                                         check_mode)
        result["changed"] = result["changed"] or bool(result["aborted_uploads"])
    return result


def _interrupted(backups: List[Dict[str, Any]]) -> List[str]:
    """Backups whose deletion was interrupted: a policy run finishes them."""
    return [fields["backup_id"] for fields in backups
            if fields.get("status") == layout.FAILED and fields.get("error") == DELETING_ERROR]


def _one_backup(catalog: Catalog, state: StoreState, wanted: str, minimum: int) -> str:
    fields = resolve_backup(catalog, wanted, "backup_id")
    backup_id = fields["backup_id"]
    keep = state.keeps.get(backup_id)
    if keep:
        raise ConfigurationError(
            "backup_id: backup %s is kept (%s); release it first (pgcloud.backup.backup_keep with state=absent)"
            % (backup_id, keep), "backup_id")
    counted = [item for item in state.backups if item.get("status") != layout.STARTED]
    if minimum > 0 and minimum >= len(counted):
        raise ConfigurationError(
            "minimum_redundancy=%d: the server has %d backups that are not running; deleting %s would leave "
            "fewer than minimum_redundancy" % (minimum, len(counted), backup_id), "minimum_redundancy")
    return str(backup_id)


def _plan(state: StoreState, targets: List[str]) -> List[BackupDeletion]:
    """The deletions in order (oldest first), each with the WAL it frees once the older ones are gone."""
    by_id = {fields["backup_id"]: fields for fields in state.backups}
    snapshots = [backup_id for backup_id in targets if by_id[backup_id].get("snapshots_info")]
    if snapshots:
        raise PgCloudError("backups %s are snapshot backups, whose disk snapshots this module does not delete; "
                           "delete them with barman-cloud-backup-delete" % ", ".join(snapshots))
    remaining = list(state.backups)
    wals = dict(state.wals)
    plan = []
    for backup_id in targets:
        fields = by_id[backup_id]
        info_key = state.catalog.info_key(backup_id)
        objects = sorted(key for key in state.objects.get(backup_id, []) if key != info_key)
        wal_keys = _unused_wal(fields, remaining, state.keeps, wals)
        for key in wal_keys:
            del wals[key]
        remaining = [item for item in remaining if item["backup_id"] != backup_id]
        plan.append(BackupDeletion(fields, objects, info_key, wal_keys))
    return plan


def _unused_wal(deleted: Dict[str, Any], remaining: List[Dict[str, Any]], keeps: Dict[str, Optional[str]],
                wals: Dict[str, str]) -> List[str]:
    """The WAL objects no remaining backup needs once `deleted` is gone (see the module's doc)."""
    deleted_id = deleted["backup_id"]
    restorable = [item for item in remaining
                  if item.get("status") in layout.RESTORABLE_STATUSES and item["backup_id"] != deleted_id]
    protected_ranges = _standalone_ranges_or_none(deleted_id, restorable, keeps)
    if protected_ranges is None:
        return []
    later = [item for item in restorable if item["backup_id"] > deleted_id]
    boundary = later[0] if later else deleted
    until = boundary.get("begin_wal")
    if not until:
        return []
    protected_timelines = {item.get("timeline") for item in remaining if item["backup_id"] != deleted_id}
    protected_timelines.discard(boundary.get("timeline"))
    return sorted(key for key, name in wals.items()
                  if name < until and _removable(name, protected_timelines, protected_ranges))


def _standalone_ranges_or_none(deleted_id: str, restorable: List[Dict[str, Any]],
                               keeps: Dict[str, Optional[str]]) -> Optional[List[Tuple[str, str]]]:
    """The WAL ranges of the older standalone backups, or None when an older backup needs all later WAL."""
    ranges = []
    for item in reversed([item for item in restorable if item["backup_id"] < deleted_id]):
        if keeps.get(item["backup_id"]) != layout.KEEP_STANDALONE:
            return None
        ranges.append((item.get("begin_wal") or "", item.get("end_wal") or item.get("begin_wal") or ""))
    return ranges


def _removable(name: str, protected_timelines: set, protected_ranges: List[Tuple[str, str]]) -> bool:
    if layout.is_history(name) or layout.timeline_of(name) in protected_timelines:
        return False
    segment = name[:24]  # a .backup or .partial file belongs to its segment
    return not any(begin <= segment <= end for begin, end in protected_ranges)


def _execute(store: ObjectStore, plan: List[BackupDeletion]) -> None:
    for step in plan:
        LOG.info("deleting backup %s (%d objects, %d WAL files)", step.backup_id, len(step.objects) + 1,
                 len(step.wal_keys))
        try:
            _mark_deleting(store, step)
            store.delete_objects(step.objects)
            store.delete_objects([step.info_key])
        except StorageError as error:
            raise BackupError("deleting backup %s failed: %s; it is listed as FAILED until backup_delete is run "
                              "again" % (step.backup_id, error), step.backup_id)
        try:
            store.delete_objects(step.wal_keys)
        except StorageError as error:
            raise BackupError("backup %s is deleted, but deleting the %d WAL files it leaves unused failed: %s; "
                              "the next deletion removes them" % (step.backup_id, len(step.wal_keys), error),
                              step.backup_id)


def _mark_deleting(store: ObjectStore, step: BackupDeletion) -> None:
    """backup.info as FAILED first: a backup with some objects gone must never be listed as DONE."""
    if step.fields.get("status") == layout.FAILED and step.fields.get("error") == DELETING_ERROR:
        return
    known = {name: value for name, value in step.fields.items() if name in layout.FIELDS}
    known.update(status=layout.FAILED, error=DELETING_ERROR)
    store.put_object(step.info_key, layout.render(known))
