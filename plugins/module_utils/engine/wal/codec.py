# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""WAL files compressed and decompressed whole, in memory, in each format that
barman-cloud-wal-archive writes (the object's extension names the format, see layout.py).

A segment is 16 MiB by default (at most 1 GiB): the whole file in memory is what the reference
tools do too. Compression reuses the base backup's streams (archive/compression.py); xz is
WAL-only. Decompression is whole-object here, not a stream as a base backup's restore needs.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from typing import Callable, Dict, Optional

from ..archive.compression import _library, new_compressor

# The reference tool's medium xz preset: xz is slow, and WAL segments are small.
XZ_PRESET = 3


def compress(compression: Optional[str], data: bytes) -> bytes:
    """data as one stream of compression (None: as is)."""
    if compression is None:
        return data
    if compression == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=XZ_PRESET)
    compressor = new_compressor(compression)
    return compressor.compress(data) + compressor.finish()


def _zstd(data: bytes) -> bytes:
    # A stream decoder: frames written by a stream compressor carry no content size.
    zstandard = _library("zstandard", "zstandard", "WAL compression: zstd")
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def _lz4(data: bytes) -> bytes:
    return _library("lz4.frame", "lz4", "WAL compression: lz4").decompress(data)


def _snappy(data: bytes) -> bytes:
    # The framing format, as python-snappy's stream_compress and cramjam's framed compress write it.
    return bytes(_library("cramjam", "cramjam", "WAL compression: snappy").snappy.decompress(data))


_DECOMPRESSORS: Dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "bzip2": bz2.decompress,
    "xz": lzma.decompress,
    "zstd": _zstd,
    "lz4": _lz4,
    "snappy": _snappy,
}


def decompress(compression: Optional[str], data: bytes) -> bytes:
    """The WAL file of an object's bytes; raises ValueError (or the library's error) if corrupt."""
    if compression is None:
        return data
    return _DECOMPRESSORS[compression](data)
