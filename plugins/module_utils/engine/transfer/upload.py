# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Objects written in parts by a pool of upload threads.

A backup holds at most `jobs` part buffers, whether being filled, queued or in flight: a
writer that needs one waits until an upload gives one back. Memory is then bounded by
jobs x chunk size whatever the number of writers. Part buffers are reused from part to
part: a fresh 20 MiB buffer per part would leave freed ones in the allocator's arenas of each
thread and double the resident memory. Every multipart upload that was started and not
completed is aborted when the pool is aborted.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..errors import StorageError
from ..storage.base import ObjectStore

LOG = logging.getLogger("pgcloud.backup")


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the OS, before the part buffers are taken.

    Building a store's SDK client parses large JSON models: with botocore's S3 client, 1.9 MiB
    of what that freed stays in glibc's heap, resident, under the jobs x chunk size of part
    buffers that come next. Only glibc has malloc_trim; False where there is none.
    """
    import ctypes  # only here: the modules that never back up do not load it

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False
    trim(0)
    return True


def freeze_long_lived_objects() -> None:
    """Exempt every object alive now (modules, the SDK client and its models) from the cyclic
    garbage collector, before the copy.

    They live until the process ends. Left to the collector, they are walked by each of its
    full passes, and by its last one when the interpreter exits: 0.1 s of a 1.8 s backup with
    botocore's S3 client loaded, against 0.01 s frozen. In a process that takes one backup, as
    a module does, nothing is lost: frozen objects are still freed when nothing refers to them.
    """
    gc.freeze()


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


class PartBuffers:
    """At most `count` part buffers of `size` bytes in use at once; take() waits for one.

    The filling buffers of the writers count too: with `jobs` buffers in all, a writer that
    has sent a full part waits for an upload to finish before it fills the next one. A writer
    waits only while some part is being sent, since only a sent part frees a buffer: when
    every buffer is held by a writer still filling it, one more is lent rather than wait
    forever (never the case in a backup, where each builder fills one object at a time and
    builders are at most `jobs`).
    """

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self.count = count
        self.in_use = 0
        self.peak = 0
        self._sending = 0
        self._free: List[bytearray] = []
        self._changed = threading.Condition()

    def take(self) -> bytearray:
        with self._changed:
            while self.in_use >= self.count and self._sending:
                self._changed.wait()
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

    def sending(self) -> None:
        with self._changed:
            self._sending += 1

    def give_back(self, buffer: Optional[bytearray], sent: bool = False) -> None:
        """Frees the slot; a buffer still whole is kept for the next part (None: none to keep)."""
        with self._changed:
            self.in_use -= 1
            if sent:
                self._sending -= 1
            if buffer is not None and len(buffer) == self.size:
                self._free.append(buffer)
            self._changed.notify_all()


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
        # Set by abort(), under _lock: an upload created after it aborts itself (see track).
        self._aborted = False
        self._lock = threading.Lock()
        self.buffers = PartBuffers(jobs, chunk_size)
        self.bytes_uploaded = 0

    def open(self, key: str) -> "ObjectWriter":
        return ObjectWriter(self, key)

    def submit_part(self, key: str, upload: Any, number: int, data: bytearray) -> "Future[Any]":
        """Queue a part; the pool owns `data` from here on and gives it back once sent."""
        self._slots.acquire()
        self.buffers.sending()
        try:
            self._throttle.wait(len(data))
            future = self._executor.submit(self._upload_part, key, upload, number, data)
        except BaseException:
            self.buffers.give_back(data, sent=True)
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
            self.buffers.give_back(data, sent=True)
            self._slots.release()

    def put(self, key: str, data: bytearray) -> None:
        self._refuse_if_aborted(key)
        self._throttle.wait(len(data))
        self.store.put_object(key, data)
        with self._lock:
            self.bytes_uploaded += len(data)

    def track(self, key: str, upload: Any, is_open: bool) -> None:
        """Note a multipart upload created (is_open) or completed. One created once abort() has
        taken its list of open uploads is aborted here at once, and the writer gets an error."""
        with self._lock:
            if not is_open:
                self._open_uploads.pop((key, upload), None)
                return
            if not self._aborted:
                self._open_uploads[(key, upload)] = True
                return
        self._abort_upload(key, upload)
        raise StorageError("the upload of %s started after the backup was aborted; it was aborted too" % key)

    def _refuse_if_aborted(self, key: str) -> None:
        with self._lock:
            if self._aborted:
                raise StorageError("not uploading %s: the backup was aborted" % key)

    def abort(self) -> None:
        """Stop uploading and abort every multipart upload left open; never raises."""
        with self._lock:
            self._aborted = True
            pending = list(self._open_uploads)
            self._open_uploads.clear()
        # Parts in flight end before their uploads are aborted; queued ones are dropped.
        self._executor.shutdown(wait=True, cancel_futures=True)
        for key, upload in pending:
            self._abort_upload(key, upload)

    def _abort_upload(self, key: str, upload: Any) -> None:
        try:
            self.store.abort_multipart(key, upload)
            LOG.info("aborted the incomplete upload of %s", key)
        except Exception as error:  # the backup has failed already; report and go on
            LOG.warning("could not abort the upload of %s: %s", key, error)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class ObjectWriter:
    """A file-like sink for one object: parts of chunk_size, or one PUT if it stays small.

    The part buffer is taken from the pool's budget at the first byte, not when the writer
    is opened, so that an idle writer holds no memory.
    """

    def __init__(self, pool: UploadPool, key: str) -> None:
        self.pool = pool
        self.key = key
        self.size = 0
        self._buffer: Optional[bytearray] = None
        self._filled = 0
        self._upload: Any = None
        self._parts: List["Future[Any]"] = []
        self._failure: Optional[BaseException] = None

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        chunk_size = self.pool.chunk_size
        while view:
            if self._buffer is None:
                self._buffer = self.pool.buffers.take()
            taken = view[:chunk_size - self._filled]
            self._buffer[self._filled:self._filled + len(taken)] = taken
            self._filled += len(taken)
            view = view[len(taken):]
            if self._filled == chunk_size:
                self._send_part(self._take_filled())

    def write_from(self, source, size: int) -> int:
        """Up to `size` bytes read from a file straight into the part buffers, with no copy in
        between (uncompressed archives); returns the bytes read, fewer if the file ended."""
        done = 0
        chunk_size = self.pool.chunk_size
        while done < size:
            if self._buffer is None:
                self._buffer = self.pool.buffers.take()
            wanted = min(chunk_size - self._filled, size - done)
            with memoryview(self._buffer) as whole, whole[self._filled:self._filled + wanted] as view:
                count = source.readinto(view)
            if not count:
                break
            self._filled += count
            self.size += count
            done += count
            if self._filled == chunk_size:
                self._send_part(self._take_filled())
        return done

    def _send_part(self, data: bytearray) -> None:
        if self._failure is not None:
            self.pool.buffers.give_back(data)
            raise self._failure
        if self._upload is None:
            try:
                self._upload = self.pool.store.create_multipart(self.key)
                self.pool.track(self.key, self._upload, True)
            except BaseException:
                self.pool.buffers.give_back(data)
                raise
        # The buffer itself goes to the upload, which gives it back once sent: no copy.
        part = self.pool.submit_part(self.key, self._upload, len(self._parts) + 1, data)
        part.add_done_callback(self._note_failure)
        self._parts.append(part)

    def _note_failure(self, part: "Future[Any]") -> None:
        if not part.cancelled() and part.exception() is not None and self._failure is None:
            self._failure = part.exception()

    def _take_filled(self) -> bytearray:
        """The buffer, cut to its filled length when short (it is then not reused)."""
        data, self._buffer = self._buffer, None
        if data is None:  # callers check first; a bytearray() would hide the slot it never took
            raise RuntimeError("no part buffer to send")
        if self._filled < len(data):
            del data[self._filled:]
        self._filled = 0
        return data

    def discard(self) -> None:
        """Give the part buffer back without sending it (the object is abandoned on failure)."""
        if self._buffer is not None:
            self._buffer = None
            self._filled = 0
            self.pool.buffers.give_back(None)

    def close(self) -> WrittenObject:
        if self._upload is None and self._buffer is None:
            self.pool.put(self.key, bytearray())
        elif self._upload is None:
            data = self._take_filled()
            try:
                self.pool.put(self.key, data)
            finally:
                self.pool.buffers.give_back(data)
        else:
            if self._filled:
                self._send_part(self._take_filled())
            records = [part.result() for part in self._parts]
            self.pool.store.complete_multipart(self.key, self._upload, records)
            self.pool.track(self.key, self._upload, False)
        return WrittenObject(self.key, self.size)
