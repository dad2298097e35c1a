# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retention/keep.py: the keep annotation of barman-cloud-backup-keep, added, released and shown."""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import keep

from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.retention.stores import put_backup

KEY = "some/path/db1/base/20261120T010000/annotations/keep"


@pytest.fixture
def manage(store, monkeypatch):
    monkeypatch.setattr(keep, "open_store", lambda config: store)
    put_backup(store, "20261120T010000", backup_name="nightly")
    put_backup(store, "20261121T010000", status="FAILED")

    def run(backup="20261120T010000", state="present", target=None, check_mode=False):
        return keep.manage_keep(store.config, backup, state, target, check_mode)

    return run


@pytest.mark.parametrize("target", ["full", "standalone"])
def test_keep_writes_barmans_annotation(store, manage, target):
    result = manage(target=target)
    assert result == {"backup_id": "20261120T010000", "keep": target, "previous_keep": None, "changed": True}
    # The bare target, no newline: what barman-cloud-backup-keep writes.
    assert store.objects[KEY] == target.encode()
    assert manage(target=target)["changed"] is False
    assert manage(state="query") == {"backup_id": "20261120T010000", "keep": target, "previous_keep": target,
                                     "changed": False}


def test_switch_target_and_release(store, manage):
    manage(target="full")
    assert manage(target="standalone") == {"backup_id": "20261120T010000", "keep": "standalone",
                                           "previous_keep": "full", "changed": True}
    assert manage(state="absent") == {"backup_id": "20261120T010000", "keep": None, "previous_keep": "standalone",
                                      "changed": True}
    assert KEY not in store.objects
    assert manage(state="absent")["changed"] is False


def test_check_mode_writes_nothing(store, manage):
    assert manage(target="full", check_mode=True)["changed"] is True
    assert KEY not in store.objects
    manage(target="full")
    before = dict(store.objects)
    assert manage(state="absent", check_mode=True) == {"backup_id": "20261120T010000", "keep": None,
                                                       "previous_keep": "full", "changed": True}
    assert store.objects == before


@pytest.mark.parametrize("stored", [b"", b"standalone\n", b"keep me"])
def test_an_odd_annotation_is_rewritten(store, manage, stored):
    # barman reads these otherwise (an empty one does not stop its retention): write the exact bytes.
    store.objects[KEY] = stored
    assert manage(target="standalone" if stored == b"standalone\n" else "full")["changed"] is True
    assert store.objects[KEY] in (b"full", b"standalone")


def test_by_name_and_shortcut(manage):
    assert manage(backup="nightly", target="full")["backup_id"] == "20261120T010000"
    assert manage(backup="oldest", state="query")["keep"] == "full"


@pytest.mark.parametrize("call, parameter, words", [
    (dict(backup="20261121T010000", target="full"), "backup", "FAILED; only a DONE backup can be kept"),
    (dict(backup="20261122T010000", target="full"), "backup", "no backup '20261122T010000'"),
    (dict(backup="nope", state="absent"), "backup", "no backup 'nope'"),
    (dict(target=None), "target", "state=present needs target full"),
    (dict(target="forever"), "target", "target='forever'"),
    (dict(state="absent", target="full"), "target", "only used with state=present"),
    (dict(state="gone"), "state", "state='gone' is not one of"),
])
def test_bad_requests_fail_before_writing(store, manage, call, parameter, words):
    before = dict(store.objects)
    with pytest.raises(ConfigurationError) as caught:
        manage(**call)
    assert caught.value.parameter == parameter and words in str(caught.value)
    assert store.objects == before
