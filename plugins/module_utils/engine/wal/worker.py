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
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from .. import layout
from ..errors import PgCloudError
from ..storage.base import ObjectStore
from .archive import store_wal
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
        except (PgCloudError, OSError) as error:
            LOG.warning("the archive worker could not archive %s: %s", name, error)
            succeeded = False
        finally:
            state.release(name)
    return succeeded


def run_worker(open_store: Callable[[], ObjectStore], path: str, compression: Optional[str], parallel: int,
               state: ArchiveState) -> None:
    """Store the ready files next to path until none come for IDLE_SECONDS, or one fails.

    The lock is taken before the store is opened (the SDK loaded): the call that started the
    worker waits for the lock, then for its file's marker.
    """
    os.makedirs(state.folder, mode=0o700, exist_ok=True)
    with open(state.lock_path(), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        store = open_store()
        handled: Dict[str, float] = {}
        in_flight: InFlight = {}
        healthy, idle_since = True, time.monotonic()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            while healthy or in_flight:
                for name, other in next_ready(path, handled, state, parallel - len(in_flight) if healthy else 0):
                    handled[name] = time.monotonic()
                    in_flight[pool.submit(store_wal, store, other, compression)] = (name, other, file_identity(other))
                if not in_flight:
                    if time.monotonic() - idle_since > IDLE_SECONDS:
                        break
                    time.sleep(POLL_SECONDS)
                    continue
                done, _pending = wait(list(in_flight), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                healthy = _settle(done, in_flight, state) and healthy
                idle_since = time.monotonic()
        prune_done(path, state)
