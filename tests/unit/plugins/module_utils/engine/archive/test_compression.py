# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""compression.py: each archive object is exactly one stream, readable by the restore tool.

The decoders are the ones barman-cloud-restore uses: zlib/gzip and bz2 of the standard
library, python-snappy's StreamDecompressor, lz4.frame and zstandard's decompressobj. They
decode only the first stream of an object, so a second stream would be silently lost.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive import compression
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import MissingDependencyError


def sample_pieces():
    """Pieces like a tar stream's: headers, compressible and random blocks, some empty writes."""
    generator = random.Random(42)
    pieces = []
    for number in range(60):
        pieces.append(b"")
        pieces.append(("header %d " % number).encode() * 20)
        pieces.append(bytes(generator.getrandbits(8) for _byte in range(generator.randint(0, 3000))))
        pieces.append(b"\0" * generator.randint(0, 200000))
    return pieces


def compress(name, pieces):
    compressor = compression.new_compressor(name)
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.finish())
    return b"".join(out)


def test_extensions_are_the_ones_restore_recognises():
    assert compression.EXTENSIONS == {
        None: "tar",
        "gzip": "tar.gz",
        "bzip2": "tar.bz2",
        "snappy": "tar.snappy",
        "lz4": "tar.lz4",
        "zstd": "tar.zst",
    }


def test_only_the_chosen_library_is_imported():
    code = ("import sys; from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive import compression; "
            "compression.require('lz4'); print(sorted(m for m in ('lz4', 'zstandard', 'cramjam') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert result.stdout.strip() == "['lz4']"


@pytest.mark.parametrize("name", [None, "gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_round_trip_is_one_stream_decoded_by_the_restore_library(name, restore_decoders):
    pieces = sample_pieces()
    data = compress(name, pieces)
    assert restore_decoders[name](data) == b"".join(pieces)
    if name is not None:
        assert len(data) < len(b"".join(pieces))


@pytest.mark.parametrize("name", ["gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_large_single_piece_round_trip(name, restore_decoders):
    piece = os.urandom(1 << 20) + b"x" * (3 << 20)
    assert restore_decoders[name](compress(name, [piece])) == piece


@pytest.mark.parametrize("name", ["gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_each_compressor_is_a_new_stream(name, restore_decoders):
    """Two archives compressed one after the other are two standalone objects."""
    first, second = compress(name, [b"first archive" * 1000]), compress(name, [b"second archive" * 1000])
    assert restore_decoders[name](first) == b"first archive" * 1000
    assert restore_decoders[name](second) == b"second archive" * 1000


def test_gzip_output_is_a_gzip_file():
    data = compress("gzip", [b"hello" * 100])
    assert data[:2] == b"\x1f\x8b"


def test_pass_through_changes_nothing():
    compressor = compression.new_compressor(None)
    assert compressor.compress(b"abc") == b"abc"
    assert compressor.finish() == b""


@pytest.mark.parametrize("name, module, library", [
    ("zstd", "zstandard", "zstandard"),
    ("lz4", "lz4.frame", "lz4"),
    ("snappy", "cramjam", "cramjam"),
])
def test_missing_library_is_reported_before_the_backup(monkeypatch, name, module, library):
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` then raises is ImportError
    with pytest.raises(MissingDependencyError) as caught:
        compression.require(name)
    assert caught.value.library == library
    assert "pip install %s" % library in str(caught.value)
    assert "compression: %s" % name in str(caught.value)


@pytest.mark.parametrize("name", [None, "gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_require_passes_when_the_library_is_there(name):
    compression.require(name)


@pytest.mark.parametrize("name", ["gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_the_one_stream_check_catches_concatenated_streams(name, restore_decoders):
    """What the restore tool would silently truncate is caught by the checks used in these tests."""
    first, second = compress(name, [b"a" * 5000]), compress(name, [b"b" * 5000])
    with pytest.raises(AssertionError, match="more than one"):
        restore_decoders[name](first + second)


def test_lz4_is_one_frame_of_independent_blocks():
    """Blocks independent of each other (frame descriptor FLG bit 5) and at most 256 KB (BD = 5)."""
    import lz4.frame

    out = compression.new_compressor("lz4")
    data = os.urandom(3 << 20) + bytes(3 << 20)
    stream = out.compress(data) + out.finish()
    assert stream[:4] == b"\x04\x22\x4d\x18"
    assert stream[4] & 0x20
    assert (stream[5] >> 4) & 0x7 == 5
    assert lz4.frame.decompress(stream) == data


def test_zstd_is_level_3_with_a_512_kib_window():
    """The window (what a restore needs in memory, and each builder holds) is 512 KiB, not level 3's 2 MiB."""
    import zstandard

    out = compression.new_compressor("zstd")
    data = os.urandom(1 << 20) * 4
    stream = out.compress(data) + out.finish()
    assert zstandard.get_frame_parameters(stream).window_size == 512 << 10
    reference = zstandard.ZstdCompressor(level=3).compress(data)
    assert zstandard.get_frame_parameters(reference).window_size > 512 << 10
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stream) == data


def test_snappy_is_the_stream_compressors_output_byte_for_byte():
    """One stream identifier at the start, then the chunks: what cramjam's stream Compressor writes."""
    import cramjam

    pieces = sample_pieces()
    stream = cramjam.snappy.Compressor()
    expected = []
    for piece in pieces:
        stream.compress(piece)
        expected.append(bytes(stream.flush()))
    expected.append(bytes(stream.finish()))
    assert compress("snappy", pieces) == b"".join(expected)
    assert compress("snappy", [b"", b""]) == b""


def longest_hold(compressor, data):
    """(longest pause of a counting thread during compressor.compress(data), the call's time)."""
    ticks, stop = [], threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    try:
        time.sleep(0.01)
        start = time.perf_counter()
        compressor.compress(data)
        end = time.perf_counter()
    finally:
        stop.set()
        counter.join()
    assert end - start > 0.01, "the call was too short to tell"
    moments = [start] + [tick for tick in ticks if start < tick < end] + [end]
    return max(later - earlier for earlier, later in zip(moments, moments[1:])), end - start


@pytest.mark.parametrize("name", ["gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_compressing_lets_other_threads_run(name):
    """The builders are threads: a compressor that kept the GIL would put them all on one core.

    A thread that only counts runs beside one compress call. While the call holds the GIL the
    counter stands still, so its longest pause spans what the call held; released, the counter
    pauses only when the OS schedules it out. On a loaded machine that can happen once for long:
    three tries, of which one must show it; a compressor that keeps the GIL fails all three.
    """
    half_random = os.urandom(1 << 20) + b"".join(b"row %d, some text\n" % n for n in range(60000))
    data = half_random * {"gzip": 4, "bzip2": 1}.get(name, 32)
    tries = [longest_hold(compression.new_compressor(name), data) for _attempt in range(3)]
    assert any(pause < call / 3 for pause, call in tries), "%s kept the GIL: %s" % (name, ", ".join(
        "%.0f ms of %.0f ms" % (1000 * pause, 1000 * call) for pause, call in tries))
