# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""wal/archiving.py: which settings `pgcloud-backup archiving enable|disable` changes (the
server side is tested on real clusters in tests/integration/test_wal_archiving_role.py)."""

from __future__ import annotations

from typing import Dict

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal.archiving import (
    Setting,
    disable_changes,
    enable_changes,
    record_of,
)

OURS = "/opt/pgcloud-backup-job/bin/pgcloud-backup --job pgcloud-backup wal-archive %p"


def server(mode: str = "off", command: str = "", library: str = "", auto: bool = False) -> Dict[str, Setting]:
    return {"archive_mode": Setting(mode, mode, auto), "archive_command": Setting(command, command, auto),
            "archive_library": Setting(library, library, False)}


def test_a_fresh_server_gets_mode_and_command() -> None:
    assert enable_changes(server(), OURS, False) == {"archive_mode": "on", "archive_command": OURS}


@pytest.mark.parametrize("mode", ["on", "always"])
def test_archive_mode_on_or_always_is_kept(mode: str) -> None:
    assert enable_changes(server(mode, "(disabled)"), OURS, False) == {"archive_command": OURS}
    assert enable_changes(server(mode, OURS), OURS, False) == {}


@pytest.mark.parametrize("found, words", [
    (server("on", "cp %p /mnt/wal/%f"), "archive_command = 'cp %p /mnt/wal/%f'"),
    (server("on", "", "basic_archive"), "archive_library = 'basic_archive'"),
])
def test_another_archiver_is_refused_unless_replace(found: Dict[str, Setting], words: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        enable_changes(found, OURS, False)
    assert words in str(refused.value) and "pgcloud_backup_wal_archiving_replace: true" in str(refused.value)
    assert refused.value.parameter == "pgcloud_backup_wal_archiving_replace"
    changes = enable_changes(found, OURS, True)
    assert changes["archive_command"] == OURS
    assert changes.get("archive_library", "") == ""


def test_disable_puts_back_values_and_resets_what_was_not_in_auto_conf() -> None:
    record = record_of({"archive_mode": Setting("on", "on", False),
                        "archive_command": Setting("cp %p /x", "cp %p /x", True),
                        "archive_library": Setting("", "", False)}, OURS)
    now = {"archive_mode": Setting("on", "on", False), "archive_command": Setting(OURS, OURS, True),
           "archive_library": Setting("", "", False)}
    assert disable_changes(now, record) == {"archive_command": "cp %p /x"}
    fresh = record_of(server(), OURS)
    assert disable_changes(server("on", OURS, auto=True), fresh) == {"archive_mode": None, "archive_command": None}


def test_disable_leaves_a_command_changed_since_alone() -> None:
    record = record_of(server(), OURS)
    assert disable_changes(server("on", "other %p", auto=True), record) == {}
