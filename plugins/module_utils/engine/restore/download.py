# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An archive object read ahead of its decoder, with bounded memory.

A thread of the download pool reads the object's stream (ObjectStore.open_read) in pieces
into a queue of at most `depth` pieces, while the archive's extractor takes them: the
transfer of the next pieces overlaps the decoding and writing of the current one. Memory is
depth x PIECE_SIZE per archive being restored, whatever the object's size.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional

from ..errors import StorageError
from ..storage.base import ObjectStore
from ..transfer.progress import MIB, ProgressCounter

LOG = logging.getLogger("pgcloud.backup")

PIECE_SIZE = 1 << 20
# Pieces read ahead per archive.
DEPTH = 8
_END = b""


class PrefetchReader:
    """read(n) of an object of a known size, read ahead by a thread of `pool`."""

    def __init__(self, store: ObjectStore, key: str, size: int, pool: ThreadPoolExecutor, depth: int = DEPTH,
                 piece_size: int = PIECE_SIZE) -> None:
        self.key = key
        self.size = size
        self.bytes_read = 0
        self._store = store
        self._piece_size = piece_size
        self._pieces: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, depth))
        self._stopped = threading.Event()
        self._piece = b""  # the piece being read, from _offset on
        self._offset = 0
        self._ended = False
        self._fetch: Future = pool.submit(self._read_ahead)

    def _read_ahead(self) -> None:
        try:
            stream = self._store.open_read(self.key)
            try:
                received = self._copy(stream)
            finally:
                stream.close()
            if received != self.size and not self._stopped.is_set():
                raise StorageError("%s: %d bytes read where the listing gave %d; the object changed during the "
                                   "restore" % (self.key, received, self.size))
            self._put(_END)
        except BaseException as error:  # handed to the reader, which raises it
            self._put(error)

    def _copy(self, stream: Any) -> int:
        received = 0
        while not self._stopped.is_set():
            piece = stream.read(self._piece_size)
            if not piece:
                break
            received += len(piece)
            self._put(piece)
        return received

    def _put(self, item: Any) -> None:
        while not self._stopped.is_set():
            try:
                self._pieces.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        if self._offset == len(self._piece) and not self._ended:
            item = self._pieces.get()
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            self._ended = item == _END
            self._piece, self._offset = item, 0
        start, left = self._offset, len(self._piece) - self._offset
        if size is None or size < 0 or size >= left:
            # The decoders ask for whole pieces: handed over as they came, not copied.
            piece = self._piece if start == 0 else self._piece[start:]
        else:
            piece = self._piece[start:start + size]
        self._offset = start + len(piece)
        self.bytes_read += len(piece)
        return piece

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop reading ahead; the thread ends at its next piece."""
        self._stopped.set()
        self._fetch.cancel()


class FetchProgress:
    """The stored bytes of a backup fetched so far, of all its archives: a line for the journal
    every PROGRESS_INTERVAL seconds (a restore of one large archive says nothing else for long)."""

    def __init__(self, backup_id: str, total: int) -> None:
        self.backup_id = backup_id
        self.total = total
        self.counter = ProgressCounter()

    def add(self, size: int) -> None:
        if self.counter.add(size):
            LOG.info("restore of backup %s: %.0f of %.0f MiB fetched (%.0f%%), %.1f MiB/s", self.backup_id,
                     self.counter.count / MIB, self.total / MIB, 100.0 * self.counter.count / max(self.total, 1),
                     self.counter.mib_per_second())
