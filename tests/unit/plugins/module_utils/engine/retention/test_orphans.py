# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retention/orphans.py: open uploads of killed runs aborted by age, under the server's folder only.

moto reports one fixed start time (2010) for every upload, so the age rule is proven here;
tests/integration/test_retention_job.py aborts real uploads on moto and the GCS emulator.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError, StorageError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import delete, orphans
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.base import OpenUpload
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.retention.stores import put_backup

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
SERVER = "some/path/db1/"


class UploadsStore:
    """Mixed into the retention tests' store: open uploads with a start time, and who aborted what."""

    def __init__(self, store):
        self.open = []
        self.aborted = []
        self.fail_abort = False
        store.list_open_uploads = lambda prefix: iter([item for item in self.open if item.key.startswith(prefix)])
        store.abort_open_upload = self.abort

    def add(self, key, age, upload_id=None):
        upload = OpenUpload(key, upload_id or "id-%d" % len(self.open), None if age is None else NOW - age)
        self.open.append(upload)
        return upload

    def abort(self, upload):
        if self.fail_abort:
            raise StorageError("simulated refusal to abort")
        self.aborted.append(upload.upload_id)
        self.open.remove(upload)


@pytest.fixture
def uploads(store):
    return UploadsStore(store)


@pytest.mark.parametrize("age, min_age, orphan", [
    (timedelta(days=1), 86400, True),
    (timedelta(days=1) - timedelta(seconds=1), 86400, False),
    (timedelta(days=30), 86400, True),
    (timedelta(0), 0, True),
    (timedelta(seconds=-5), 0, False),  # a clock ahead of ours: not yet old
])
def test_age_rule(age, min_age, orphan):
    assert orphans.is_orphan(OpenUpload("k", "u", NOW - age), NOW, min_age) is orphan


def test_a_naive_start_time_is_utc_and_none_is_left_alone():
    naive = (NOW - timedelta(hours=25)).replace(tzinfo=None)
    assert orphans.is_orphan(OpenUpload("k", "u", naive), NOW, 86400) is True
    assert orphans.is_orphan(OpenUpload("k", "u", None), NOW, 0) is False


@pytest.mark.parametrize("value", [-1, "86400", 1.5, True, None])
def test_min_age_must_be_whole_seconds(value):
    with pytest.raises(ConfigurationError, match="abort_uploads_older_than=.* whole number of seconds") as raised:
        orphans.check_min_age(value)
    assert raised.value.parameter == "abort_uploads_older_than"


def test_old_uploads_under_the_server_are_aborted_fresh_and_foreign_ones_left(store, uploads):
    old = uploads.add(SERVER + "base/20261101T000000/data.tar", timedelta(days=2))
    uploads.add(SERVER + "wals/0000000100000000/000000010000000000000003", timedelta(hours=1))
    uploads.add("some/path/db10/base/20261101T000000/data.tar", timedelta(days=2))  # another server
    uploads.add(SERVER + "base/x/data.tar", None)
    done = orphans.abort_orphan_uploads(store, SERVER, 86400, NOW)
    assert [item["key"] for item in done] == [old.key]
    assert done[0]["initiated"] == (NOW - timedelta(days=2)).isoformat()
    assert uploads.aborted == [old.upload_id] and len(uploads.open) == 3


def test_check_mode_lists_and_aborts_nothing(store, uploads):
    uploads.add(SERVER + "base/20261101T000000/data.tar", timedelta(days=2))
    assert len(orphans.abort_orphan_uploads(store, SERVER, 86400, NOW, check_mode=True)) == 1
    assert uploads.aborted == [] and len(uploads.open) == 1


def test_a_refused_abort_names_the_upload(store, uploads):
    uploads.add(SERVER + "base/20261101T000000/data.tar", timedelta(days=2))
    uploads.fail_abort = True
    with pytest.raises(StorageError, match="aborting the upload of %sbase/20261101T000000/data.tar left open since "
                                           "2026-12-03T12:00:00\\+00:00 failed: simulated" % SERVER):
        orphans.abort_orphan_uploads(store, SERVER, 86400, NOW)


@pytest.fixture
def run(store, monkeypatch):
    monkeypatch.setattr(delete, "open_store", lambda config: store)

    def run_delete(check_mode=False, **params):
        return delete.delete_backups(store.config, check_mode=check_mode, now=NOW, **params)

    return run_delete


def test_a_policy_run_aborts_orphans_and_reports_them(store, uploads, run):
    put_backup(store, "20261201T000000", end_time=NOW - timedelta(days=4))
    uploads.add(SERVER + "base/20261130T000000/data.tar", timedelta(days=5))
    planned = run(retention_policy="REDUNDANCY 1", check_mode=True)
    assert planned["changed"] is True and [u["key"] for u in planned["aborted_uploads"]] == [
        SERVER + "base/20261130T000000/data.tar"]
    assert uploads.aborted == []
    result = run(retention_policy="REDUNDANCY 1")
    assert result["deleted"] == [] and result["changed"] is True and len(uploads.aborted) == 1
    again = run(retention_policy="REDUNDANCY 1")
    assert (again["changed"], again["aborted_uploads"]) == (False, [])


def test_the_min_age_is_the_parameters_and_checked_before_anything(store, uploads, run):
    put_backup(store, "20261201T000000", end_time=NOW - timedelta(days=4))
    uploads.add(SERVER + "base/20261130T000000/data.tar", timedelta(hours=2))
    assert run(retention_policy="REDUNDANCY 1")["aborted_uploads"] == []
    with pytest.raises(ConfigurationError):
        run(retention_policy="REDUNDANCY 1", abort_uploads_older_than=-1)
    assert uploads.aborted == []
    assert len(run(retention_policy="REDUNDANCY 1", abort_uploads_older_than=3600)["aborted_uploads"]) == 1


def test_deleting_one_backup_leaves_uploads_alone(store, uploads, run):
    put_backup(store, "20261201T000000", end_time=NOW - timedelta(days=4))
    uploads.add(SERVER + "base/20261130T000000/data.tar", timedelta(days=5))
    result = run(backup_id="20261201T000000")
    assert "aborted_uploads" not in result and uploads.aborted == []
