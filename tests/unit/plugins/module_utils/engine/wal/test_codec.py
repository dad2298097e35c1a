# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""wal/codec.py against barman's own WAL compression: each reads what the other writes."""

from __future__ import annotations

import io
import os

import pytest
from barman.clients import cloud_compression

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal import codec

# A WAL-like file: pages of records, then the zeroes of a switched segment's end.
WAL = (os.urandom(3000) + bytes(5192)) * 64 + bytes(1 << 20)


@pytest.mark.parametrize("compression", layout.WAL_COMPRESSIONS)
def test_barman_reads_what_the_engine_writes(compression: str) -> None:
    out = io.BytesIO()
    cloud_compression.decompress_to_file(io.BytesIO(codec.compress(compression, WAL)), out, compression)
    assert out.getvalue() == WAL


@pytest.mark.parametrize("compression", layout.WAL_COMPRESSIONS)
def test_the_engine_reads_what_barman_writes(compression: str) -> None:
    written = cloud_compression.compress(io.BytesIO(WAL), compression, None).getvalue()
    assert codec.decompress(compression, written) == WAL


def test_no_compression_is_the_file_itself() -> None:
    assert codec.compress(None, WAL) is WAL
    assert codec.decompress(None, WAL) is WAL
