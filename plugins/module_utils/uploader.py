# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Objects written in parts by a pool of upload threads.

At most `jobs` parts are queued or in flight at any time, so memory stays bounded by
jobs x chunk size plus the part each writer is filling. Part buffers are reused from part to
part: a fresh 20 MiB buffer per part would leave freed ones in the allocator's arenas of each
thread and double the resident memory. Every multipart upload that was started and not
completed is aborted when the pool is aborted.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .storage import ObjectStore

LOG = logging.getLogger("pgcloud.backup")


def chunk_size_for(store: ObjectStore, max_archive_size: int, min_chunk_size: Optional[int]) -> int:
    """Parts big enough that the largest archive fits in the provider's part count limit."""
    return max(2 * (max_archive_size // store.max_chunks), store.min_chunk_size, min_chunk_size or 0)


class Throttle:
    """Spaces out parts so that the average upload rate stays under max_bandwidth bytes/s."""

    def __init__(self, max_bandwidth: Optional[int]) -> None:
        self.max_bandwidth = max_bandwidth
        self._next_start = 0.0
        self._lock = threading.Lock()

    def wait(self, size: int) -> None:
        if not self.max_bandwidth:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + size / self.max_bandwidth
        if start > now:
            time.sleep(start - now)


@dataclass
class WrittenObject:
    key: str
    size: int


class UploadPool:
    """Upload threads shared by every object of one backup."""

    def __init__(self, store: ObjectStore, jobs: int, chunk_size: int, max_bandwidth: Optional[int] = None) -> None:
        self.store = store
        self.chunk_size = chunk_size
        self._executor = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pgcloud-upload")
        self._slots = threading.BoundedSemaphore(jobs)
        self._throttle = Throttle(max_bandwidth)
        self._open_uploads: Dict[Tuple[str, Any], bool] = {}
        self._lock = threading.Lock()
        self._free_buffers: List[bytearray] = []
        self.bytes_uploaded = 0

    def open(self, key: str) -> "ObjectWriter":
        return ObjectWriter(self, key)

    def take_buffer(self) -> bytearray:
        """A recycled part buffer (chunk_size bytes), or an empty one that grows as it fills,
        so that the small objects of compressed backups never take a whole chunk."""
        with self._lock:
            if self._free_buffers:
                return self._free_buffers.pop()
        return bytearray()

    def recycle(self, buffer: bytearray) -> None:
        if len(buffer) == self.chunk_size:
            with self._lock:
                self._free_buffers.append(buffer)

    def submit_part(self, key: str, upload: Any, number: int, data: bytearray) -> "Future[Any]":
        self._slots.acquire()
        self._throttle.wait(len(data))
        try:
            future = self._executor.submit(self._upload_part, key, upload, number, data)
        except BaseException:
            self._slots.release()
            raise
        return future

    def _upload_part(self, key: str, upload: Any, number: int, data: bytearray) -> Any:
        try:
            record = self.store.upload_part(key, upload, number, data)
            with self._lock:
                self.bytes_uploaded += len(data)
            return record
        finally:
            self.recycle(data)
            self._slots.release()

    def put(self, key: str, data: bytearray) -> None:
        self._throttle.wait(len(data))
        self.store.put_object(key, data)
        with self._lock:
            self.bytes_uploaded += len(data)

    def track(self, key: str, upload: Any, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._open_uploads[(key, upload)] = True
            else:
                self._open_uploads.pop((key, upload), None)

    def abort(self) -> None:
        """Stop uploading and abort every multipart upload left open; never raises."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            pending = list(self._open_uploads)
            self._open_uploads.clear()
        for key, upload in pending:
            try:
                self.store.abort_multipart(key, upload)
                LOG.info("aborted the incomplete upload of %s", key)
            except Exception as error:  # the backup has failed already; report and go on
                LOG.warning("could not abort the upload of %s: %s", key, error)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class ObjectWriter:
    """A file-like sink for one object: parts of chunk_size, or one PUT if it stays small."""

    def __init__(self, pool: UploadPool, key: str) -> None:
        self.pool = pool
        self.key = key
        self.size = 0
        self._buffer = pool.take_buffer()
        self._filled = 0
        self._upload: Any = None
        self._parts: List["Future[Any]"] = []
        self._failure: Optional[BaseException] = None

    def write(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        while view:
            taken = view[:self.pool.chunk_size - self._filled]
            # Overwrites a recycled buffer in place; extends a new one.
            self._buffer[self._filled:self._filled + len(taken)] = taken
            self._filled += len(taken)
            view = view[len(taken):]
            if self._filled == self.pool.chunk_size:
                self._send_part(self._buffer)
                self._buffer, self._filled = self.pool.take_buffer(), 0

    def _send_part(self, data: bytearray) -> None:
        if self._failure is not None:
            raise self._failure
        if self._upload is None:
            self._upload = self.pool.store.create_multipart(self.key)
            self.pool.track(self.key, self._upload, True)
        # The buffer itself goes to the upload, which recycles it once sent: no copy.
        part = self.pool.submit_part(self.key, self._upload, len(self._parts) + 1, data)
        part.add_done_callback(self._note_failure)
        self._parts.append(part)

    def _note_failure(self, part: "Future[Any]") -> None:
        if not part.cancelled() and part.exception() is not None and self._failure is None:
            self._failure = part.exception()

    def _take_filled(self) -> bytearray:
        """The filled part of the buffer, cut to size in place (not recycled: it is short now)."""
        data, self._buffer = self._buffer, bytearray()
        del data[self._filled:]
        self._filled = 0
        return data

    def close(self) -> WrittenObject:
        if self._upload is None:
            self.pool.put(self.key, self._take_filled())
        else:
            if self._filled:
                self._send_part(self._take_filled())
            records = [part.result() for part in self._parts]
            self.pool.store.complete_multipart(self.key, self._upload, records)
            self.pool.track(self.key, self._upload, False)
        self.pool.recycle(self._buffer)
        self._buffer = bytearray()
        return WrittenObject(self.key, self.size)
