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


# --- decompression, for restores ---------------------------------------------------------
# A restore reads an archive through `open_decoded(compression, read)`: `read(n)` of the
# stored bytes in, `read(n)` of the tar stream out, never more than n bytes at a time. Output
# is bounded per call because PostgreSQL's empty pages compress a thousandfold: a decoder fed
# a piece of zeros must not return gigabytes of them at once.

# Stored bytes a decoder asks its source for at a time: the restore's download pieces
# (restore/download.py PIECE_SIZE), which it then hands over without a copy.
DECODE_PIECE = 1 << 20


class _Decoder:
    """The bz2/lz4 decompressor interface: decompress(data, max_length), needs_input, eof."""

    needs_input = True
    eof = False

    def decompress(self, data: bytes, max_length: int) -> bytes:
        raise NotImplementedError

    def complete(self) -> bool:
        """At the end of the stored bytes: whether the stream ended where it should."""
        return self.eof


class _Plain(_Decoder):
    def __init__(self) -> None:
        self._pending = b""

    @property
    def needs_input(self) -> bool:  # type: ignore[override]
        return not self._pending

    def decompress(self, data: bytes, max_length: int) -> bytes:
        buffer = self._pending + data if self._pending else data
        self._pending = buffer[max_length:]
        return buffer[:max_length]

    def complete(self) -> bool:
        return not self._pending


class _Zlib(_Decoder):
    """zlib's decompressobj keeps the input it has not decoded in unconsumed_tail."""

    def __init__(self) -> None:
        self._engine = zlib.decompressobj(31)

    @property
    def needs_input(self) -> bool:  # type: ignore[override]
        return not self._engine.unconsumed_tail

    @property
    def eof(self) -> bool:  # type: ignore[override]
        return self._engine.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._engine.decompress(self._engine.unconsumed_tail + data, max_length)


class _SnappyFrames(_Decoder):
    """Snappy's framing format: chunks of a type byte and a 3-byte little-endian length; data
    chunks hold a 4-byte masked CRC32C, then at most 64 KiB, raw-compressed (0x00) or plain
    (0x01); the stream identifier (0xff) and padding (0x80-0xfe) carry no data."""

    def __init__(self) -> None:
        self._raw = _library("cramjam", "cramjam", "compression: snappy").snappy.decompress_raw
        self._pending = b""
        self._decoded = b""

    @property
    def needs_input(self) -> bool:  # type: ignore[override]
        return not self._decoded and not self._next_chunk_whole()

    def _next_chunk_whole(self) -> bool:
        return len(self._pending) >= 4 and len(self._pending) >= 4 + int.from_bytes(self._pending[1:4], "little")

    def decompress(self, data: bytes, max_length: int) -> bytes:
        self._pending = self._pending + data if self._pending else data
        while len(self._decoded) < max_length and self._next_chunk_whole():
            kind, end = self._pending[0], 4 + int.from_bytes(self._pending[1:4], "little")
            body, self._pending = self._pending[8:end], self._pending[end:]
            if kind == 0x00:
                self._decoded += bytes(self._raw(body))
            elif kind == 0x01:
                self._decoded += body
            elif kind <= 0x7F:
                raise ValueError("the snappy stream has a chunk of unknown type 0x%02x" % kind)
        out, self._decoded = self._decoded[:max_length], self._decoded[max_length:]
        return out

    def complete(self) -> bool:
        return not self._pending and not self._decoded


class _Reader:
    """read(n) of a decoded stream over read(n) of the stored one."""

    def __init__(self, decoder: Any, read: Callable[[int], bytes], name: str) -> None:
        self._decoder = decoder
        self._read = read
        self._name = name

    def read(self, size: int = -1) -> bytes:
        size = size if size > 0 else DECODE_PIECE
        while not self._decoder.eof:
            data = b""
            if self._decoder.needs_input:
                data = self._read(DECODE_PIECE)
                if not data:
                    if not getattr(self._decoder, "complete", lambda: self._decoder.eof)():
                        raise ValueError("the %s stream ends early: the archive is truncated" % self._name)
                    return b""
            out = self._decoder.decompress(data, size)
            if out:
                return out
        return b""


class _Source:
    """A file-like face of a read callable, for zstandard's stream_reader."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self.read = read


def _zstd_reader(read: Callable[[int], bytes]) -> Any:
    zstandard = _library("zstandard", "zstandard", "compression: zstd")
    return zstandard.ZstdDecompressor().stream_reader(_Source(read), read_size=DECODE_PIECE, closefd=False)


_DECODERS: Dict[Optional[str], Callable[[], _Decoder]] = {
    None: _Plain,
    "gzip": _Zlib,
    "bzip2": bz2.BZ2Decompressor,  # type: ignore[dict-item]
    "snappy": _SnappyFrames,
}


def open_decoded(compression: Optional[str], read: Callable[[int], bytes]) -> Any:
    """An object whose read(n) returns the decoded stream (b"" at its end; ValueError if it is
    cut short); raises MissingDependencyError if the compression's library is absent."""
    if compression == "zstd":
        return _zstd_reader(read)
    if compression == "lz4":
        decoder = _library("lz4.frame", "lz4", "compression: lz4").LZ4FrameDecompressor()
    else:
        decoder = _DECODERS[compression]()
    return _Reader(decoder, read, compression or "tar")


def compression_of_extension(extension: str) -> Optional[str]:
    """The compression of an archive's extension (`tar.zst` -> zstd); KeyError if unknown."""
    for compression, known in EXTENSIONS.items():
        if known == extension:
            return compression
    raise KeyError(extension)
