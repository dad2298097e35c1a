# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""wal/worker.py: the archive worker stores the caller's file first, then the rest; a store it
cannot open stops it, with every file it had claimed given back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import StorageError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal import worker
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal.spool import ArchiveState

NAMES = ["0000000100000000000000%02X" % number for number in range(1, 7)]


def pg_wal(tmp_path: Path) -> Path:
    """A pg_wal folder whose six segments are all ready, as after a burst of writes."""
    folder = tmp_path / "pg_wal"
    (folder / "archive_status").mkdir(parents=True)
    for number, name in enumerate(NAMES):
        (folder / name).write_bytes(bytes([number]) * 4096)
        (folder / "archive_status" / (name + ".ready")).touch()
    return folder


@pytest.fixture(autouse=True)
def short_idle(monkeypatch):
    monkeypatch.setattr(worker, "IDLE_SECONDS", 0.2)


def test_the_callers_file_is_stored_before_the_others(tmp_path, memory_store):
    folder, store = pg_wal(tmp_path), memory_store()
    state = ArchiveState(str(tmp_path / "spool"), "target")
    loaded = threading.Event()

    def open_store():
        loaded.wait(5)  # the SDK loading: the other files are ready all along
        return store

    caller = folder / NAMES[2]  # not the oldest: the order must come from the caller, not the names
    timer = threading.Timer(0.2, loaded.set)
    timer.start()
    worker.run_worker(open_store, str(caller), "gzip", 4, state)
    timer.join()
    puts = [key.rsplit("/", 1)[-1] for key, _data in store.put_history]
    assert puts[0] == NAMES[2] + ".gz"
    assert sorted(puts) == sorted(name + ".gz" for name in NAMES)
    assert all(state.has(str(folder / name)) for name in NAMES)


def test_a_store_that_cannot_be_opened_stops_the_worker_and_gives_the_files_back(tmp_path):
    folder = pg_wal(tmp_path)
    state = ArchiveState(str(tmp_path / "spool"), "target")

    def open_store():
        raise StorageError("cannot reach S3")

    with pytest.raises(StorageError, match="cannot reach S3"):
        worker.run_worker(open_store, str(folder / NAMES[0]), "gzip", 4, state)
    assert not any(state.claimed(name) or state.has(str(folder / name)) for name in NAMES)
