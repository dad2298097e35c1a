# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""layout.py's WAL names and object paths, judged by barman's own xlog functions."""

from __future__ import annotations

import os

import pytest
from barman import xlog

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout

VALID = [
    "000000010000000000000001",
    "00000001000000A2000000FF",
    "0000000a000000b2000000c3",
    "000000010000000000000002.partial",
    "000000010000000000000002.00000028.backup",
    "00000002.history",
    "0000000A.history",
]
INVALID = [
    "", "00000001000000000000001", "0000000100000000000000011", "00000001000000000000000G",
    "000000010000000000000001\n", "000000010000000000000001.gz", "000000010000000000000001.backup",
    "000000010000000000000001.0000028.backup", "00000002.history.tmp", "0000002.history", "RECOVERYXLOG",
    "archive_status", "../000000010000000000000001", "000000010000000000000001/x", ".000000010000000000000001",
    "00000001.partial", "backup_label",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_go_where_the_reference_puts_them(name: str) -> None:
    assert layout.is_wal_name(name)
    assert xlog.is_any_xlog_file(name)
    parts = layout.wal_path(name)
    # barman-cloud-wal-archive: os.path.join(path, server, "wals", hash_dir(name), name)
    assert "/".join(parts) == os.path.join("wals", xlog.hash_dir(name), name)


@pytest.mark.parametrize("name", INVALID)
def test_anything_else_is_refused(name: str) -> None:
    assert not layout.is_wal_name(name)
    with pytest.raises(ValueError, match="is not a WAL file name"):
        layout.wal_path(name)


@pytest.mark.parametrize("compression, extension", [
    (None, ""), ("gzip", ".gz"), ("bzip2", ".bz2"), ("xz", ".xz"), ("snappy", ".snappy"), ("zstd", ".zst"),
    ("lz4", ".lz4"),
])
def test_compression_extensions_round_trip(compression: str, extension: str) -> None:
    for name in VALID:
        parts = layout.wal_path(name, compression)
        assert parts[-1] == name + extension
        assert layout.wal_object_name(parts[-1]) == (name, compression)


def test_hash_folder_is_upper_case_and_history_has_none() -> None:
    assert layout.wal_path("0000000a000000b2000000c3") == ("wals", "0000000A000000B2", "0000000a000000b2000000c3")
    assert layout.wal_path("00000002.history", "gzip") == ("wals", "00000002.history.gz")
    parsed = layout.parse_wal_name("000000030000000400000005.00000028.backup")
    assert (parsed.kind, parsed.timeline, parsed.folder, parsed.segment) == (
        "backup", 3, "0000000300000004", "000000030000000400000005")
    assert layout.parse_wal_name("00000003000000040000000A.partial").kind == "partial"
    assert layout.parse_wal_name("00000010.history").timeline == 16


@pytest.mark.parametrize("object_name", ["000000010000000000000001.tar", "000000010000000000000001.gz.gz",
                                         "x.gz", "000000010000000000000001.zstd", "backup.info"])
def test_objects_that_are_not_wal(object_name: str) -> None:
    assert layout.wal_object_name(object_name) == (None, None)
