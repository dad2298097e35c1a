# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL restore: one WAL file from the barman-cloud layout, and the next segments prefetched.

PostgreSQL asks for one file at a time and waits. A call that does not find its file in the
spool lists the file's folder once, fetches the file and, in parallel, the `prefetch - 1`
segments that follow it into the spool (spool.RestoreSpool); the calls for those move the
prefetched file into place and return without loading an SDK. A prefetched file answers only
for its exact name, and a miss clears the spool of everything it does not fetch anew.

A request for segment X is answered by X, or by X.partial when only that was archived (the
last segment of a timeline), as the reference tool does. The file reaches its destination
whole or not at all (written beside it, then renamed).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from .. import layout
from ..errors import PgCloudError
from ..storage.base import ObjectStore
from . import codec
from .spool import RestoreSpool, write_file

LOG = logging.getLogger("pgcloud.backup.wal")

# WAL object name (compression removed) -> (key, compression); one per name.
Listing = Dict[str, Tuple[str, Optional[str]]]


def _folder_prefix(store: ObjectStore, wal: layout.WalName) -> str:
    parts = layout.wal_path(wal.name)
    if not wal.folder:
        return store.destination.key(*parts)
    return store.destination.key(*parts[:-1]) + "/"


def list_folder(store: ObjectStore, prefix: str) -> Listing:
    listing: Listing = {}
    for item in sorted(store.list_objects(prefix), key=lambda item: item.key):
        name, compression = layout.wal_object_name(item.key.rsplit("/", 1)[-1])
        if name is not None and name not in listing:
            listing[name] = (item.key, compression)
    return listing


def next_folder(wal: layout.WalName) -> str:
    """The hash folder after wal's (the next log of its timeline)."""
    return "%08X%08X" % (wal.timeline, int(wal.folder[8:], 16) + 1)


def following_segments(listing: Listing, wal: layout.WalName, count: int) -> List[str]:
    """Up to count segment names of wal's timeline after wal, in order."""
    after = []
    for name in listing:
        parsed = layout.parse_wal_name(name)
        if parsed.kind == "segment" and parsed.timeline == wal.timeline and name.upper() > wal.name.upper():
            after.append(name)
    return sorted(after, key=str.upper)[:count]


def fetch(store: ObjectStore, key: str, compression: Optional[str], destination: str) -> None:
    body = store.get_object(key)
    if body is None:
        raise PgCloudError("%s disappeared from the store while it was being restored" % key)
    write_file(destination, codec.decompress(compression, body))


def _prefetch(store: ObjectStore, name: str, key: str, compression: Optional[str], spool: RestoreSpool) -> None:
    try:
        fetch(store, key, compression, spool.path(name))
    except Exception as error:  # pylint: disable=broad-except  # a failed prefetch is fetched again on demand
        LOG.warning("could not prefetch %s: %s", name, error)


def plan(store: ObjectStore, wal: layout.WalName, prefetch: int) -> Tuple[Optional[Tuple[str, Optional[str]]], Listing]:
    """The object of wal (or None), and the objects of the segments to prefetch after it."""
    listing = list_folder(store, _folder_prefix(store, wal))
    wanted = listing.get(wal.name) or (listing.get(wal.name + ".partial") if wal.kind == "segment" else None)
    if wanted is None or wal.kind != "segment" or prefetch <= 1:
        return wanted, {}
    names = following_segments(listing, wal, prefetch - 1)
    if len(names) < prefetch - 1:
        more = list_folder(store, store.destination.key(layout.WAL_FOLDER, next_folder(wal)) + "/")
        names += following_segments(more, wal, prefetch - 1 - len(names))
        listing.update(more)
    return wanted, {name: listing[name] for name in names}


def restore_wal(store: ObjectStore, name: str, destination: str, prefetch: int = 1,
                spool: Optional[RestoreSpool] = None) -> bool:
    """Fetch WAL file name to destination; False if the store does not have it."""
    wal = layout.parse_wal_name(name)
    wanted, ahead = plan(store, wal, prefetch if spool is not None else 1)
    if wanted is None:
        return False
    if spool is not None and wal.kind == "segment":
        # History files are asked for out of order (timeline checks): only a segment's miss
        # means that recovery went past or away from what the spool holds.
        spool.reset(keep=())
    with ThreadPoolExecutor(max_workers=1 + len(ahead)) as pool:
        main = pool.submit(fetch, store, wanted[0], wanted[1], destination)
        if spool is not None:
            for other, (key, compression) in ahead.items():
                pool.submit(_prefetch, store, other, key, compression, spool)
    main.result()
    LOG.info("%s restored from %s%s", name, wanted[0], " (%d following prefetched)" % len(ahead) if ahead else "")
    return True
