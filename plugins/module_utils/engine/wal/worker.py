# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The archive worker: stores the WAL files PostgreSQL has ready before it asks for them.

A call of `wal-archive` that finds no marker for its file starts the worker (one per
destination: it holds a lock in the spool) and waits for the file's marker. The worker keeps
`parallel` files in flight, oldest first as PostgreSQL's archiver takes them (so the caller's
own file first), and writes a marker for each once the store has acknowledged its whole object;
it stays while files keep coming ready, with its SDK loaded, and leaves after IDLE_SECONDS
without any, or at the first failure. A call whose file the worker did not store (it failed,
or left) stores the file itself, and reports the store's error if there is one.

Each file being stored is claimed (spool.ArchiveState.claim) by the process storing it, so a
file is never stored twice at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from .. import layout
from ..storage.base import ObjectStore
from .archive import EncodedWal, store_encoded
from .spool import ArchiveState, file_identity, ready_files

LOG = logging.getLogger("pgcloud.backup.wal")

IDLE_SECONDS = 5.0
POLL_SECONDS = 0.05
# A file stored by the worker is left alone this long: PostgreSQL marks it done right after
# the call for it returns, and it is not stored again in between.
HANDLED_SECONDS = 30.0

InFlight = Dict["Future[str]", Tuple[str, str, List[int]]]


def next_ready(path: str, handled: Dict[str, float], state: ArchiveState, count: int) -> Iterable[Tuple[str, str]]:
    """Up to count ready files (name, path) that no one has stored or is storing."""
    if count <= 0:
        return []
    folder = os.path.dirname(os.path.abspath(path))
    ready = prune_done(path, state)
    found = []
    for name in ready:
        other = os.path.join(folder, name)
        if time.monotonic() - handled.get(name, -HANDLED_SECONDS) < HANDLED_SECONDS or state.has(other) \
                or not os.path.exists(other):
            continue
        if state.claim(name):
            found.append((name, other))
            if len(found) == count:
                break
    return found


def prune_done(path: str, state: ArchiveState) -> List[str]:
    """The WAL files ready next to path; the markers of the others (done since) are removed."""
    ready = [name for name in ready_files(path) if layout.is_wal_name(name)]
    state.prune(ready)
    return ready


def _settle(done: Iterable["Future[str]"], in_flight: InFlight, state: ArchiveState) -> bool:
    """Record the markers of the files stored; False if one failed."""
    succeeded = True
    for future in done:
        name, other, identity = in_flight.pop(future)
        try:
            LOG.info("%s %s by the archive worker", name, future.result())
            state.record(other, identity)
        except Exception as error:  # pylint: disable=broad-except  # any failure: logged, the claim released
            LOG.warning("the archive worker could not archive %s: %s", name, error)
            succeeded = False
        finally:
            state.release(name)
    return succeeded


def run_worker(open_store: Callable[[], ObjectStore], path: str, compression: Optional[str], parallel: int,
               state: ArchiveState) -> None:
    """Store the ready files next to path until none come for IDLE_SECONDS, or one fails.

    The lock is taken before the store is opened (the SDK loaded): the call that started the
    worker waits for the lock, then for its file's marker. That file is read and compressed on
    the pool while this thread loads the SDK (the compressors release the GIL: a second core
    works during the start-up), and goes to the store before the others.
    """
    os.makedirs(state.folder, mode=0o700, exist_ok=True)
    with open(state.lock_path(), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        opened: "Future[ObjectStore]" = Future()
        first = CallerFirst(path)
        handled: Dict[str, float] = {}
        in_flight: InFlight = {}
        healthy, idle_since = True, time.monotonic()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            # The caller's file only: more threads reading and compressing would slow this
            # thread's loading of the SDK, which the caller waits for too.
            if not state.has(first.path) and os.path.exists(first.path) and state.claim(first.name):
                _submit(pool, opened, first, first.name, first.path, compression, handled, in_flight)
            else:
                first.stored.set()
            try:
                opened.set_result(open_store())
            except BaseException as error:  # the files in flight fail with it, and release their claims
                opened.set_exception(error)
                healthy = False
            while healthy or in_flight:
                if healthy and first.stored.is_set():
                    _submit_ready(pool, opened, first, compression, parallel, state, handled, in_flight)
                if not in_flight:
                    if time.monotonic() - idle_since > IDLE_SECONDS:
                        break
                    time.sleep(POLL_SECONDS)
                    continue
                done, _pending = wait(list(in_flight), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                healthy = _settle(done, in_flight, state) and healthy
                idle_since = time.monotonic()
        opened.result()  # a store that could not be opened stops the worker with its error
        prune_done(path, state)




class CallerFirst:
    """The file of the call that started the worker is stored before the others: that call is
    waiting for it, and the calls for the others come later. Stored among them, it waited for
    all their requests to the store too."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path)
        self.stored = threading.Event()


def _submit_ready(pool: ThreadPoolExecutor, opened: "Future[ObjectStore]", first: CallerFirst,
                  compression: Optional[str], parallel: int, state: ArchiveState, handled: Dict[str, float],
                  in_flight: InFlight) -> None:
    for name, other in next_ready(first.path, handled, state, parallel - len(in_flight)):
        _submit(pool, opened, first, name, other, compression, handled, in_flight)


def _submit(pool: ThreadPoolExecutor, opened: "Future[ObjectStore]", first: CallerFirst, name: str, path: str,
            compression: Optional[str], handled: Dict[str, float], in_flight: InFlight) -> None:
    """Store one claimed file on the pool."""
    handled[name] = time.monotonic()
    in_flight[pool.submit(_store_when_open, opened, first, path, compression)] = (name, path, file_identity(path))


def _store_when_open(opened: "Future[ObjectStore]", first: CallerFirst, path: str, compression: Optional[str]) -> str:
    mine = os.path.basename(path) == first.name
    try:
        encoded = EncodedWal(path, compression)
        store = opened.result()
        if not mine:
            first.stored.wait()
        return store_encoded(store, encoded)
    finally:
        if mine:
            first.stored.set()
