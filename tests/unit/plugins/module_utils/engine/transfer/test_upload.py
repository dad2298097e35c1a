# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""uploader.py: parts, parallelism, memory bound, bandwidth limit and abort on failure."""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import StorageError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.transfer.upload import (
    Throttle, UploadPool, WrittenObject, chunk_size_for, freeze_long_lived_objects, release_free_heap)

KEY = "some/path/db1/base/20261125T023350/data.tar"


def write_in_pieces(writer, data, piece):
    for offset in range(0, len(data), piece):
        writer.write(data[offset:offset + piece])


# --- chunk size ---------------------------------------------------------------------------------


def test_chunk_size_for_the_default_archive_size(store):
    # Reference: max(2 * int(max_archive_size / 10000), 5 MiB, min_chunk_size); 100GB gives ~21.5 MB.
    assert chunk_size_for(store, 100 * 1024 ** 3, None) == 2 * (100 * 1024 ** 3 // 10000) == 21474836


def test_chunk_size_is_at_least_the_provider_minimum_and_min_chunk_size(store):
    assert chunk_size_for(store, 1024 ** 2, None) == 5 << 20
    assert chunk_size_for(store, 1024 ** 2, 64 << 20) == 64 << 20
    assert chunk_size_for(store, 100 * 1024 ** 3, 10 << 20) == 21474836


# --- parts --------------------------------------------------------------------------------------


def test_parts_are_at_least_the_chunk_size_except_the_last(store):
    pool = UploadPool(store, jobs=2, chunk_size=1000)
    data = os.urandom(10 * 1000 + 123)
    writer = pool.open(KEY)
    write_in_pieces(writer, data, 333)
    written = writer.close()
    pool.close()
    assert written == WrittenObject(KEY, len(data))
    assert store.objects[KEY] == data
    ((_kind, key, upload),) = store.calls_of("create")
    sizes = store.part_sizes(upload)
    assert key == KEY
    assert all(size >= 1000 for size in sizes[:-1]), sizes
    assert 0 < sizes[-1]
    assert sum(sizes) == len(data)
    numbers = sorted(call[3] for call in store.calls_of("part"))
    assert numbers == list(range(1, len(sizes) + 1))
    ((_kind, _key, _upload, completed),) = store.calls_of("complete")
    assert completed == numbers
    assert store.calls_of("put") == []
    assert pool.bytes_uploaded == len(data)


def test_a_write_larger_than_the_chunk_is_cut_into_chunk_size_parts(store):
    pool = UploadPool(store, jobs=2, chunk_size=1000)
    writer = pool.open(KEY)
    writer.write(b"a" * 5000)
    writer.write(b"b" * 10)
    writer.close()
    pool.close()
    (upload,) = store.uploads
    assert store.part_sizes(upload) == [1000] * 5 + [10]
    assert store.objects[KEY] == b"a" * 5000 + b"b" * 10


def test_part_buffers_are_reused_not_reallocated(store, monkeypatch):
    """Memory stays at (writers + jobs) buffers however big the object: the same few
    buffers carry every part, and the content of each part is still its own."""
    sent = []  # held, so that no id is reused by a later object
    upload_part = store.upload_part

    def spy(key, upload, number, data):
        sent.append(data)
        return upload_part(key, upload, number, data)

    monkeypatch.setattr(store, "upload_part", spy)
    pool = UploadPool(store, jobs=2, chunk_size=1000)
    writer = pool.open(KEY)
    data = bytes(range(256)) * 200
    for start in range(0, len(data), 700):
        writer.write(data[start:start + 700])
    writer.close()
    pool.close()
    (upload,) = store.uploads
    assert len(store.part_sizes(upload)) == 52
    assert len({id(buffer) for buffer in sent}) <= 1 + 2 + 1  # the writer's, `jobs` in flight, the short last
    assert store.objects[KEY] == data


def test_small_object_is_a_single_put(store):
    pool = UploadPool(store, jobs=2, chunk_size=1000)
    writer = pool.open(KEY)
    writer.write(b"abc")
    writer.write(b"def")
    assert writer.close() == WrittenObject(KEY, 6)
    pool.close()
    assert store.calls_of("put") == [("put", KEY, 6)]
    assert store.calls_of("create") == [] and store.uploads == {}
    assert store.objects[KEY] == b"abcdef"


def test_empty_object_is_a_single_put(store):
    pool = UploadPool(store, jobs=2, chunk_size=1000)
    assert pool.open(KEY).close() == WrittenObject(KEY, 0)
    assert store.objects[KEY] == b""
    assert store.calls_of("create") == []


def test_put_of_a_whole_object(store):
    pool = UploadPool(store, jobs=1, chunk_size=1000)
    pool.put(KEY, b"x" * 5000)
    assert store.objects[KEY] == b"x" * 5000
    assert store.calls_of("create") == []


# --- bounded parallelism ------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_at_most_jobs_parts_in_flight(store, jobs):
    store.part_delay = 0.05
    pool = UploadPool(store, jobs=jobs, chunk_size=100)
    writers = [pool.open("%s.%d" % (KEY, number)) for number in range(2)]
    threads = [threading.Thread(target=write_in_pieces, args=(writer, os.urandom(1200), 100)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    pool.close()
    assert store.max_in_flight == jobs
    assert len(store.calls_of("part")) == 24


def test_writer_blocks_while_jobs_parts_are_pending(store):
    """Memory stays bounded: with `jobs` parts pending, the writer waits for a free slot."""
    store.part_gate = threading.Event()
    pool = UploadPool(store, jobs=2, chunk_size=100)
    writer = pool.open(KEY)
    written = []

    def produce():
        for number in range(6):
            writer.write(b"x" * 100)  # each write makes a full part
            written.append(number)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.3)
    try:
        assert len(written) == 2, "parts pending while uploads are stuck: %d" % len(written)
    finally:
        store.part_gate.set()
        producer.join()
    writer.close()
    pool.close()
    assert len(written) == 6
    assert store.objects[KEY] == b"x" * 600


# --- failures and abort ---------------------------------------------------------------------------


def test_failing_part_makes_close_raise_and_abort_aborts_the_upload(store):
    store.fail_part = lambda key, number: number == 3  # the last part, sent by close()
    store.part_delay = 0.05
    pool = UploadPool(store, jobs=2, chunk_size=100)
    writer = pool.open(KEY)
    write_in_pieces(writer, os.urandom(250), 50)
    with pytest.raises(StorageError, match="part 3"):
        writer.close()
    assert store.calls_of("complete") == []
    pool.abort()
    ((_kind, _key, upload),) = store.calls_of("create")
    assert store.calls_of("abort") == [("abort", KEY, upload)]
    assert store.uploads[upload]["state"] == "aborted"
    assert KEY not in store.objects


def test_failure_of_an_earlier_part_stops_the_writer(store):
    store.fail_part = lambda key, number: number == 1
    pool = UploadPool(store, jobs=2, chunk_size=100)
    writer = pool.open(KEY)
    writer.write(b"x" * 100)
    deadline = time.monotonic() + 5
    while not store.calls_of("part") and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    with pytest.raises(StorageError, match="part 1"):
        writer.write(b"y" * 100)
    pool.abort()
    assert len(store.calls_of("abort")) == 1


def test_abort_aborts_every_open_upload_and_not_the_completed_ones(store):
    pool = UploadPool(store, jobs=2, chunk_size=100)
    done, left_a, left_b = pool.open(KEY + ".done"), pool.open(KEY + ".a"), pool.open(KEY + ".b")
    for writer in (done, left_a, left_b):
        writer.write(b"x" * 250)
    done.close()
    pool.abort()
    aborted = sorted(call[1] for call in store.calls_of("abort"))
    assert aborted == [KEY + ".a", KEY + ".b"]
    assert store.objects[KEY + ".done"] == b"x" * 250


def test_upload_created_while_abort_runs_is_aborted_too(store):
    """abort() takes its list between a builder's create_multipart and its track (issue 18, item 14)."""
    pool = UploadPool(store, jobs=2, chunk_size=100)
    create = store.create_multipart

    def create_then_abort(key):
        upload = create(key)
        pool.abort()  # the failure path runs now, in another thread in a backup
        return upload

    store.create_multipart = create_then_abort
    writer = pool.open(KEY)
    with pytest.raises(StorageError, match="started after the backup was aborted"):
        writer.write(b"x" * 100)
    ((_kind, _key, upload),) = store.calls_of("create")
    assert store.calls_of("abort") == [("abort", KEY, upload)]
    assert store.uploads[upload]["state"] == "aborted"
    assert pool.buffers.in_use == 0


def test_nothing_starts_after_abort(store):
    pool = UploadPool(store, jobs=2, chunk_size=100)
    pool.abort()
    with pytest.raises(StorageError, match="started after the backup was aborted"):
        pool.open(KEY).write(b"x" * 100)
    assert [upload["state"] for upload in store.uploads.values()] == ["aborted"]
    with pytest.raises(StorageError, match="the backup was aborted"):
        pool.open(KEY + ".small").close()
    assert KEY + ".small" not in store.objects


def test_abort_never_raises(store):
    store.fail_abort = True
    pool = UploadPool(store, jobs=1, chunk_size=100)
    pool.open(KEY).write(b"x" * 100)
    pool.abort()  # the failure of the abort is logged, not raised
    assert len(store.calls_of("abort")) == 1


def test_abort_with_nothing_open_does_nothing(store):
    pool = UploadPool(store, jobs=1, chunk_size=100)
    writer = pool.open(KEY)
    writer.write(b"x" * 300)
    writer.close()
    pool.abort()
    assert store.calls_of("abort") == []


# --- bandwidth -----------------------------------------------------------------------------------


def test_throttle_spaces_parts_by_size_over_bandwidth():
    throttle = Throttle(100000)  # 100 kB/s
    started = time.monotonic()
    for _part in range(5):
        throttle.wait(10000)  # each 10 kB part takes 0.1 s of the budget
    elapsed = time.monotonic() - started
    assert 0.38 <= elapsed < 1.5  # the first part goes at once, then four of 0.1 s


def test_throttle_without_limit_does_not_wait():
    throttle = Throttle(None)
    started = time.monotonic()
    for _part in range(100):
        throttle.wait(1 << 30)
    assert time.monotonic() - started < 0.1


def test_pool_uploads_respect_max_bandwidth(store):
    pool = UploadPool(store, jobs=4, chunk_size=10000, max_bandwidth=50000)
    writer = pool.open(KEY)
    started = time.monotonic()
    write_in_pieces(writer, b"z" * 50000, 10000)  # five parts of 0.2 s each at 50 kB/s
    writer.close()
    pool.close()
    elapsed = time.monotonic() - started
    assert 0.75 <= elapsed < 3
    assert store.objects[KEY] == b"z" * 50000


# --- buffer budget ------------------------------------------------------------------------------


def test_filling_buffers_count_against_jobs(store):
    """Memory bound: writers filling a part and parts in flight share `jobs` buffers."""
    store.part_delay = 0.02
    pool = UploadPool(store, jobs=2, chunk_size=100)
    writers = [pool.open("%s.%d" % (KEY, number)) for number in range(2)]
    threads = [threading.Thread(target=write_in_pieces, args=(writer, os.urandom(2050), 30)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.close()
    pool.close()
    assert pool.buffers.peak == 2
    assert pool.buffers.in_use == 0


def test_an_idle_writer_holds_no_buffer(store):
    pool = UploadPool(store, jobs=1, chunk_size=100)
    idle = pool.open(KEY + ".idle")
    busy = pool.open(KEY)
    busy.write(b"x" * 250)
    assert pool.buffers.in_use == 1
    busy.close()
    idle.close()
    assert pool.buffers.in_use == 0
    assert store.objects[KEY + ".idle"] == b""


def test_discard_gives_the_buffer_back(store):
    pool = UploadPool(store, jobs=1, chunk_size=100)
    writer = pool.open(KEY)
    writer.write(b"x" * 50)
    writer.discard()
    assert pool.buffers.in_use == 0


def test_write_from_reads_a_file_straight_into_parts(store, tmp_path):
    path = tmp_path / "file"
    data = os.urandom(1234)
    path.write_bytes(data)
    pool = UploadPool(store, jobs=2, chunk_size=100)
    writer = pool.open(KEY)
    with open(path, "rb") as source:
        assert writer.write_from(source, 2000) == 1234  # the file ended first
    writer.close()
    pool.close()
    assert store.objects[KEY] == data
    assert pool.buffers.peak <= 2


def resident_anonymous_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def test_release_free_heap_gives_freed_heap_pages_back():
    """64 MiB freed in the middle of the heap, which glibc keeps resident on its own."""
    blocks = [b"%05d" % number * 3277 for number in range(4096)]
    kept = blocks[::64]  # live blocks between the freed ones: the heap cannot shrink from its top
    del blocks
    before = resident_anonymous_mib()
    assert release_free_heap()
    assert before - resident_anonymous_mib() > 32
    assert len(kept) == 64


def test_freeze_long_lived_objects_spares_them_and_still_collects_later_cycles():
    class Node:
        pass

    collected = []
    alive_before = len(gc.get_objects())
    try:
        freeze_long_lived_objects()
        assert gc.get_freeze_count() >= alive_before
        cycle = Node()
        cycle.self = cycle
        weakref.finalize(cycle, collected.append, True)
        del cycle
        gc.collect()
        assert collected == [True]
    finally:
        gc.unfreeze()
