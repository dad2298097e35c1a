# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL archiving: one WAL file into the barman-cloud layout, idempotently.

PostgreSQL calls the archive command for one file at a time and waits; the files it has ready
next are stored ahead by the worker (worker.py), which uses store_wal too.

A WAL file already in the store is success if its content is the same (in any compression),
an error if it differs: a second cluster archiving into the same destination must not pass.
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Tuple

from .. import layout
from ..errors import PgCloudError
from ..storage.base import ObjectStore
from . import codec

LOG = logging.getLogger("pgcloud.backup.wal")

STORED, PRESENT = "stored", "present"
# (key, compression) of each object already stored for a WAL name.
Stored = Dict[str, List[Tuple[str, Optional[str]]]]


class WalConflictError(PgCloudError):
    """The destination holds another content under the name of the WAL file to archive."""


def wal_name_of(path: str) -> str:
    """The WAL file name of a path; ValueError if it is not one (it is the object's name)."""
    name = os.path.basename(path)
    layout.parse_wal_name(name)
    return name


def stored_objects(store: ObjectStore, names: List[str]) -> Stored:
    """The objects already stored for names, from one listing of each name's own keys.

    The uncompressed key is the start of every compressed one. Not the name's folder: it grows
    to 256 segments, whose listing costs more each time than a request of its own.
    """
    prefixes = {store.destination.key(*layout.wal_path(wanted)) for wanted in names}
    found: Stored = {}
    for prefix in sorted(prefixes):
        for item in store.list_objects(prefix):
            stored_name, compression = layout.wal_object_name(item.key.rsplit("/", 1)[-1])
            if stored_name is not None and stored_name in names:
                found.setdefault(stored_name, []).append((item.key, compression))
    return found


def archive_one(store: ObjectStore, path: str, compression: Optional[str],
                stored: List[Tuple[str, Optional[str]]]) -> str:
    """Store one WAL file unless the same content is there already; STORED or PRESENT."""
    name = os.path.basename(path)
    with open(path, "rb") as handle:
        data = handle.read()
    for key, stored_compression in stored:
        body = store.get_object(key)
        if body is None:
            continue
        try:
            same = codec.decompress(stored_compression, body) == data
        except Exception as error:  # pylint: disable=broad-except  # any codec's error means unreadable
            raise WalConflictError("%s is already archived as %s, which cannot be decompressed (%s): "
                                   "check the destination" % (name, key, error)) from None
        if not same:
            raise WalConflictError(
                "%s is already archived as %s with a different content: another cluster may archive to the "
                "same destination and server_name; give each cluster its own server_name" % (name, key))
        return PRESENT
    key = store.destination.key(*layout.wal_path(name, compression))
    store.put_object(key, codec.compress(compression, data))
    return STORED


def store_wal(store: ObjectStore, path: str, compression: Optional[str] = None) -> str:
    """Archive one WAL file: STORED or PRESENT, or an exception (WalConflictError, the store's).

    Returns only after the store acknowledged the whole object (or held the same content).
    """
    name = wal_name_of(path)
    return archive_one(store, path, compression, stored_objects(store, [name]).get(name, []))
