# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory store that also deletes, in batches, with a fault to inject; backups to put in it."""

from __future__ import annotations

from datetime import datetime, timezone

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import StorageError
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.conftest import InMemoryStore


class DeletingStore(InMemoryStore):
    """InMemoryStore with delete_objects: every batch recorded; fail_delete(key) fails the batch holding key."""

    delete_batch_size = 3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.delete_batches = []
        self.fail_delete = None

    def delete_objects(self, keys):
        for start in range(0, len(keys), self.delete_batch_size):
            batch = list(keys[start:start + self.delete_batch_size])
            if self.fail_delete is not None and any(self.fail_delete(key) for key in batch):
                raise StorageError("simulated failure of a delete of %d objects" % len(batch))
            self.delete_batches.append(batch)
            with self._lock:
                for key in batch:
                    self.objects.pop(key, None)


def wal_name(segment, timeline=1):
    return "%08X%08X%08X" % (timeline, segment >> 8, segment & 0xFF)


def put_backup(store, backup_id, status="DONE", begin=2, end=None, end_time=None, timeline=1, keep=None,
               files=("data.tar", "16385.tar"), **extra):
    """A backup whose WAL goes from segment begin to end (begin_wal/end_wal), and its files."""
    folder = store.destination.key("base", backup_id) + "/"
    fields = {"status": status, "begin_wal": wal_name(begin, timeline), "timeline": timeline, "version": 150018,
              "end_wal": wal_name(end if end is not None else begin, timeline) if status == "DONE" else None,
              "end_time": end_time or datetime.strptime(backup_id, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)}
    fields.update(extra)
    store.put_object(folder + "backup.info", layout.render(fields))
    for name in files:
        store.put_object(folder + name, b"t" * 1024)
    if keep is not None:
        store.put_object(folder + "annotations/keep", keep.encode())
    return folder


def put_wals(store, first, last, timeline=1, suffix=""):
    keys = []
    for segment in range(first, last + 1):
        name = wal_name(segment, timeline)
        key = store.destination.key("wals", name[:16], name + suffix)
        store.put_object(key, b"w")
        keys.append(key)
    return keys
