# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore drill's tasks (playbooks/tasks/restore_drill_server.yml) read each source's store
with every storage option the restore module takes, from the source's pgcloud_backup_* variables,
as the other playbooks pass them; only options that write (encryption, tags, upload sizes) are left out."""

from __future__ import annotations

import os
from typing import Any, Dict

import pytest
import yaml

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.options import restore_argument_spec
from ansible_collections.pgcloud.backup.plugins.modules import restore

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# Options of the restore module that only matter when writing to the store, or that the drill
# sets itself.
NOT_PASSED = {"encryption", "sse_kms_key_id", "encryption_scope", "kms_key_name", "tags", "min_chunk_size",
              "max_bandwidth", "destination_url", "server_name", "jobs"}


def drill_defaults() -> Dict[str, Any]:
    with open(os.path.join(ROOT, "playbooks", "tasks", "restore_drill_server.yml")) as handle:
        tasks = yaml.safe_load(handle)
    for task in tasks:
        if "module_defaults" in task:
            return task["module_defaults"]["group/pgcloud.backup.all"]
    raise AssertionError("restore_drill_server.yml has no module_defaults")


STORAGE_OPTIONS = sorted(set(restore.argument_spec()) - set(restore_argument_spec()) - NOT_PASSED)


@pytest.mark.parametrize("option", STORAGE_OPTIONS)
def test_the_drill_reads_the_store_with_the_option(option):
    assert "pgcloud_backup_" + option in str(drill_defaults().get(option, "")), (
        "the restore drill does not pass the source's pgcloud_backup_%s as %s" % (option, option))


def test_the_drill_passes_no_unknown_option():
    assert set(drill_defaults()) - set(restore.argument_spec()) == set()
