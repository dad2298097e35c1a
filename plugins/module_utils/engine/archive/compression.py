# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compression of one archive object as exactly one stream.

The restore tools decode only the first stream of an object, so an archive is never made of
concatenated streams: each archive gets its own compressor from start to finish.
"""

from __future__ import annotations

import bz2
import importlib
import zlib
from typing import Any, Callable, Dict, Optional

from ..errors import MissingDependencyError


def _library(module: str, library: str, purpose: str) -> Any:
    """The compression library, imported on first use: a backup loads only the one it uses
    (cramjam alone adds 2.3 MiB to the process), and a host needs only the libraries it uses."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(library, purpose, error) from None


# Archive name suffixes the restore tools recognise, by compression.
EXTENSIONS: Dict[Optional[str], str] = {
    None: "tar",
    "gzip": "tar.gz",
    "bzip2": "tar.bz2",
    "snappy": "tar.snappy",
    "lz4": "tar.lz4",
    "zstd": "tar.zst",
}

# gzip level 6: the reference tool's fixed level 9 costs five times the CPU for ~2% less size.
GZIP_LEVEL = 6
# zstd level 3, as the reference tool, with a 512 KiB window instead of 2 MiB: PostgreSQL's
# 8 KiB pages repeat at short distances, so the ratio is the same (0.5776 against 0.5780 on
# the benchmark's mixed data set, 0.0268 against 0.0275 on pgbench's) and each archive
# builder's compression context takes 2 MiB instead of 3.5 MiB.
ZSTD_LEVEL = 3
ZSTD_WINDOW_LOG = 19


class Compressor:
    """The interface every stream offers: compress() pieces, then finish() once."""

    def compress(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        raise NotImplementedError


class PassThrough(Compressor):
    def compress(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _CompressObject(Compressor):
    """Adapts compressobj-style objects (zlib, bz2, zstandard, lz4)."""

    def __init__(self, engine, finish: Callable[[], bytes]) -> None:
        self._engine = engine
        self._finish = finish

    def compress(self, data: bytes) -> bytes:
        return self._engine.compress(data)

    def finish(self) -> bytes:
        return self._finish()


class _Lz4Frame(Compressor):
    """One LZ4 frame of independent 256 KB blocks.

    lz4's window is 64 KiB whatever the block, so the ratio is within 1% of the default linked
    64 KB blocks, for 11% less CPU (pgbench data). Not larger blocks: barman-cloud-restore
    keeps what one decompress call returns in a buffer that it copies at every 64 KiB read,
    and with 1 MB blocks it read the stream at 2.3 GiB/s against 3.7 GiB/s with 256 KB ones.
    """

    def __init__(self) -> None:
        lz4_frame = _library("lz4.frame", "lz4", "compression: lz4")
        self._engine = lz4_frame.LZ4FrameCompressor(block_size=lz4_frame.BLOCKSIZE_MAX256KB, block_linked=False)
        self._header = self._engine.begin()

    def compress(self, data: bytes) -> bytes:
        out = self._header + self._engine.compress(data)
        self._header = b""
        return out

    def finish(self) -> bytes:
        out = self._header + self._engine.flush()
        self._header = b""
        return out


class _SnappyFramed(Compressor):
    """Snappy in its framing format, the one python-snappy's stream decompressor reads.

    Each piece is compressed by cramjam's one-shot framed compress, which releases the GIL
    (its stream Compressor holds it, so two builders compressed on one core between them).
    Every one-shot frame starts with the stream identifier; it is kept only at the start of
    the stream, which makes the output byte for byte that of the stream Compressor.
    """

    STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"

    def __init__(self) -> None:
        self._compress = _library("cramjam", "cramjam", "compression: snappy").snappy.compress
        self._started = False

    def compress(self, data: bytes) -> bytes:
        frame = bytes(self._compress(data))
        if self._started and frame.startswith(self.STREAM_IDENTIFIER):
            return frame[len(self.STREAM_IDENTIFIER):]
        self._started = self._started or bool(frame)
        return frame

    def finish(self) -> bytes:
        return b""


def _gzip() -> Compressor:
    engine = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return _CompressObject(engine, engine.flush)


def _bzip2() -> Compressor:
    engine = bz2.BZ2Compressor(9)
    return _CompressObject(engine, engine.flush)


def _zstd() -> Compressor:
    zstandard = _library("zstandard", "zstandard", "compression: zstd")
    parameters = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, window_log=ZSTD_WINDOW_LOG)
    engine = zstandard.ZstdCompressor(compression_params=parameters).compressobj()
    return _CompressObject(engine, engine.flush)


_FACTORIES: Dict[Optional[str], Callable[[], Compressor]] = {
    None: PassThrough,
    "gzip": _gzip,
    "bzip2": _bzip2,
    "snappy": _SnappyFramed,
    "lz4": _Lz4Frame,
    "zstd": _zstd,
}


def new_compressor(compression: Optional[str]) -> Compressor:
    """A fresh stream for one archive; raises MissingDependencyError if its library is absent."""
    return _FACTORIES[compression]()


def require(compression: Optional[str]) -> None:
    """Fail before the backup starts if the chosen compression cannot run on this host."""
    new_compressor(compression).finish()
