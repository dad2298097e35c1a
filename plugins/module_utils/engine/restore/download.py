# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An archive object read in ranges, several ranges in flight, in order.

Each reader keeps at most `depth` ranges requested or waiting to be read; the restore gives
its readers `depth`s that add up to about twice `jobs`, so memory is bounded by jobs x the
range size whatever the archives' sizes, while the next ranges download as the current one
is decoded and written.
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Optional

from ..errors import StorageError
from ..storage.base import ObjectStore

# Bytes per ranged GET: large enough that a request's latency is small beside its transfer.
RANGE_SIZE = 8 << 20


class RangedReader:
    """read(n) over an object of a known size, fetched in RANGE_SIZE requests through a pool."""

    def __init__(self, store: ObjectStore, key: str, size: int, pool: ThreadPoolExecutor, depth: int,
                 range_size: int = RANGE_SIZE) -> None:
        self.store = store
        self.key = key
        self.size = size
        self.pool = pool
        self.depth = max(1, depth)
        self.range_size = range_size
        self.bytes_read = 0
        self._requested = 0
        self._pending: Deque[Future] = collections.deque()
        self._current: Optional[memoryview] = None
        self._offset = 0

    def _request_more(self) -> None:
        while len(self._pending) < self.depth and self._requested < self.size:
            length = min(self.range_size, self.size - self._requested)
            self._pending.append(self.pool.submit(self._fetch, self._requested, length))
            self._requested += length

    def _fetch(self, offset: int, length: int) -> bytes:
        data = self.store.read_range(self.key, offset, length)
        if len(data) != length:
            raise StorageError("%s: read %d bytes at offset %d where %d were expected; the object changed "
                               "during the restore" % (self.key, len(data), offset, length))
        return data

    def read(self, size: int = -1) -> bytes:
        if self._current is None or self._offset >= len(self._current):
            self._request_more()
            if not self._pending:
                return b""
            self._current = memoryview(self._pending.popleft().result())
            self._offset = 0
            self._request_more()
        end = len(self._current) if size is None or size < 0 else self._offset + size
        piece = bytes(self._current[self._offset:end])
        self._offset += len(piece)
        self.bytes_read += len(piece)
        return piece

    def close(self) -> None:
        """Cancel the ranges not started; the ones running end on their own."""
        while self._pending:
            self._pending.popleft().cancel()
        self._current = None
