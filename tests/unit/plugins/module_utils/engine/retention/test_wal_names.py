# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""layout.py: the WAL file an archived object holds, as barman-cloud-wal-archive names them."""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout


@pytest.mark.parametrize("key, name", [
    ("p/s/wals/0000000100000000/000000010000000000000002", "000000010000000000000002"),
    ("p/s/wals/0000000100000000/000000010000000000000002.gz", "000000010000000000000002"),
    ("p/s/wals/0000000100000000/000000010000000000000002.zst", "000000010000000000000002"),
    ("p/s/wals/0000000100000000/000000010000000000000002.partial.lz4", "000000010000000000000002.partial"),
    ("p/s/wals/0000000100000000/000000010000000000000002.00000028.backup.xz",
     "000000010000000000000002.00000028.backup"),
    ("p/s/wals/00000002.history.snappy", "00000002.history"),
    ("p/s/wals/00000002.history", "00000002.history"),
    ("p/s/wals/0000000100000000/000000010000000000000002.gz.gz", None),  # one suffix only
    ("p/s/wals/0000000100000000/000000010000000000000002.tmp", None),
    ("p/s/wals/0000000100000000/notes.txt", None),
])
def test_wal_name_of_key(key, name):
    assert layout.wal_name_of_key(key) == name


def test_timelines_and_history():
    assert layout.timeline_of("0000000A0000000000000002") == 10
    assert layout.is_history("0000000A.history") and not layout.is_history("0000000A0000000000000002")


@pytest.mark.parametrize("target", layout.KEEP_TARGETS)
def test_keep_annotation_round_trip(target):
    assert layout.render_keep(target) == target.encode()
    assert layout.parse_keep(layout.render_keep(target)) == target


def test_render_keep_refuses_other_targets():
    with pytest.raises(ValueError):
        layout.render_keep("forever")
