# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retention/delete.py: the backups and WAL barman-cloud-backup-delete removes, removed safely.

The integration tests (tests/integration/test_retention.py) compare with barman itself on real
backups; these cover the cases that are long to build there.
"""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import (
    BackupError, ConfigurationError, PgCloudError)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention import delete
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.retention.stores import (
    put_backup, put_wals, wal_name)

BASE = "some/path/db1/base/"
WALS = "some/path/db1/wals/"


@pytest.fixture
def run(store, monkeypatch):
    monkeypatch.setattr(delete, "open_store", lambda config: store)

    def run_delete(backup_id=None, retention_policy=None, minimum_redundancy=0, check_mode=False):
        return delete.delete_backups(store.config, backup_id, retention_policy, minimum_redundancy, check_mode)

    return run_delete


def backup_ids(store):
    return sorted({key[len(BASE):].split("/")[0] for key in store.objects if key.startswith(BASE)})


def wal_names(store):
    return sorted(key.rsplit("/", 1)[1] for key in store.objects if key.startswith(WALS))


@pytest.fixture
def five(store):
    """The reference's worked example: 01..05, 03 FAILED, 05 on timeline 2; WAL 1..12 on timeline 1."""
    put_backup(store, "20261101T000000", begin=2, end=2)
    put_backup(store, "20261102T000000", begin=4, end=4)
    put_backup(store, "20261103T000000", status="FAILED", begin=6)
    put_backup(store, "20261104T000000", begin=8, end=8)
    put_backup(store, "20261105T000000", begin=0x10, end=0x10, timeline=2)
    put_wals(store, 1, 12)
    put_wals(store, 0x10, 0x11, timeline=2)
    store.put_object(WALS + "00000002.history", b"h")
    store.put_object(WALS + "0000000100000000/000000010000000000000004.00000028.backup.gz", b"b")
    return store


def test_redundancy_follows_the_reference_example(five, run):
    result = run(retention_policy="REDUNDANCY 2")
    assert [step["backup_id"] for step in result["deleted"]] == ["20261101T000000", "20261102T000000"]
    assert backup_ids(five) == ["20261103T000000", "20261104T000000", "20261105T000000"]
    # 01 frees what is below 02's begin_wal, then 02 what is below 04's (the FAILED 03 is no boundary).
    assert result["deleted"][0]["wals"] == [wal_name(n) for n in (1, 2, 3)]
    assert result["deleted"][1]["wals"] == [wal_name(n) for n in (4,)] + [
        "000000010000000000000004.00000028.backup.gz"] + [wal_name(n) for n in (5, 6, 7)]
    assert wal_names(five) == sorted([wal_name(n) for n in range(8, 13)] + [wal_name(n, 2) for n in (0x10, 0x11)] + [
        "00000002.history"])
    assert result["changed"] is True
    assert {item["backup_id"]: item["verdict"] for item in result["retention"]}["20261103T000000"] == "-"


def test_backup_info_goes_last_and_in_its_own_batch(five, run):
    run(retention_policy="REDUNDANCY 3")
    batches = [batch for batch in five.delete_batches if any(key.startswith(BASE) for key in batch)]
    assert batches == [[BASE + "20261101T000000/16385.tar", BASE + "20261101T000000/data.tar"],
                       [BASE + "20261101T000000/backup.info"]]


def test_check_mode_deletes_nothing_and_says_what_would_go(five, run):
    before = dict(five.objects)
    planned = run(retention_policy="REDUNDANCY 2", check_mode=True)
    assert five.objects == before and five.delete_batches == []
    assert planned["changed"] is True
    assert planned == run(retention_policy="REDUNDANCY 2")
    assert run(retention_policy="REDUNDANCY 2", check_mode=True) == {
        "changed": False, "deleted": [], "retention": planned["retention"][2:], "aborted_uploads": []}


def test_full_keep_stops_wal_cleanup_and_standalone_protects_its_range(store, run):
    put_backup(store, "20261101T000000", begin=2, end=3, keep="standalone")
    put_backup(store, "20261102T000000", begin=5, end=5)
    put_backup(store, "20261103T000000", begin=7, end=7, keep="full")
    put_backup(store, "20261104T000000", begin=9, end=9)
    put_backup(store, "20261105T000000", begin=11, end=11)
    put_wals(store, 1, 12)
    result = run(retention_policy="REDUNDANCY 1")
    assert [step["backup_id"] for step in result["deleted"]] == ["20261102T000000", "20261104T000000"]
    # 02: the older 01 is standalone, so WAL below 03's begin goes but 01's 2..3; 04: 03 is kept full.
    assert result["deleted"][0]["wals"] == [wal_name(n) for n in (1, 4, 5, 6)]
    assert result["deleted"][1]["wals"] == []
    assert backup_ids(store) == ["20261101T000000", "20261103T000000", "20261105T000000"]


def test_deleting_every_backup_keeps_the_wal_of_the_last_one(store, run):
    put_backup(store, "20261101T000000", begin=2)
    put_backup(store, "20261102T000000", begin=4)
    put_wals(store, 1, 6)
    run(retention_policy="REDUNDANCY 0")
    assert backup_ids(store) == [] and wal_names(store) == [wal_name(n) for n in (4, 5, 6)]


def test_one_backup_that_is_not_the_oldest_frees_no_wal(five, run):
    result = run(backup_id="20261102T000000")
    assert [step["wals"] for step in result["deleted"]] == [[]]
    assert "retention" not in result
    assert backup_ids(five) == ["20261101T000000", "20261103T000000", "20261104T000000", "20261105T000000"]
    result = run(backup_id="oldest")
    # 01 is the oldest now: everything below the next restorable backup (04) goes.
    assert result["deleted"][0]["backup_id"] == "20261101T000000"
    assert wal_names(five)[0] == wal_name(8)


def test_one_failed_backup_by_shortcut(five, run):
    assert run(backup_id="last-failed")["deleted"][0]["backup_id"] == "20261103T000000"
    assert "20261103T000000" not in backup_ids(five)


@pytest.mark.parametrize("call, parameter, words", [
    (dict(), "retention_policy", "give either backup_id (one backup) or retention_policy, not neither"),
    (dict(backup_id="20261101T000000", retention_policy="REDUNDANCY 1"), "backup_id", "not both"),
    (dict(retention_policy="REDUNDANCY"), "retention_policy", "is not a policy"),
    (dict(retention_policy="REDUNDANCY 1", minimum_redundancy=-1), "minimum_redundancy", "0 or more"),
    (dict(backup_id="20261130T000000"), "backup_id", "no backup '20261130T000000'"),
    (dict(backup_id="nightly"), "backup_id", "no backup 'nightly'"),
    (dict(backup_id="20261102T000000", minimum_redundancy=5), "minimum_redundancy", "5 backups that are not running"),
])
def test_bad_input_fails_naming_the_option_before_deleting(five, run, call, parameter, words):
    before = dict(five.objects)
    with pytest.raises(ConfigurationError) as caught:
        run(**call)
    assert caught.value.parameter == parameter and words in str(caught.value)
    assert five.objects == before


def test_a_kept_backup_is_refused_by_id(five, run):
    five.put_object(BASE + "20261102T000000/annotations/keep", b"standalone")
    with pytest.raises(ConfigurationError, match="kept \\(standalone\\); release it first") as caught:
        run(backup_id="20261102T000000")
    assert caught.value.parameter == "backup_id"
    assert "20261102T000000" in backup_ids(five)


def test_refusals_before_anything_is_deleted(five, run):
    before = dict(five.objects)
    five.put_object(BASE + "20261103T000000/backup.info", b"status=DONE\ntablespaces=[(\n")
    with pytest.raises(PgCloudError, match="20261103T000000 has a backup.info that cannot be read"):
        run(retention_policy="REDUNDANCY 1")
    five.objects = dict(before)
    put_backup(five, "20261031T000000", snapshots_info={"provider": "gcp", "provider_info": {}, "snapshots": []},
               files=("backup_label",))
    snapshot_state = dict(five.objects)
    with pytest.raises(PgCloudError, match="20261031T000000 are snapshot backups"):
        run(retention_policy="REDUNDANCY 1")
    assert five.objects == snapshot_state


def test_an_interrupted_deletion_leaves_no_done_backup_with_missing_objects(five, run):
    five.fail_delete = lambda key: key.endswith("20261102T000000/data.tar")
    five.delete_batch_size = 1
    with pytest.raises(BackupError, match="deleting backup 20261102T000000 failed") as caught:
        run(retention_policy="REDUNDANCY 2")
    assert caught.value.backup_id == "20261102T000000"
    assert "20261101T000000" not in backup_ids(five)
    info = layout.parse(five.objects[BASE + "20261102T000000/backup.info"])
    assert info["status"] == "FAILED" and info["error"] == delete.DELETING_ERROR
    assert BASE + "20261102T000000/16385.tar" not in five.objects  # deleted before data.tar failed
    # Retried: the policy finishes the interrupted backup, with its WAL.
    five.fail_delete = None
    result = run(retention_policy="REDUNDANCY 2")
    assert [step["backup_id"] for step in result["deleted"]] == ["20261102T000000"]
    assert backup_ids(five) == ["20261103T000000", "20261104T000000", "20261105T000000"]
    assert wal_names(five)[0] == wal_name(8)


def test_a_failed_mark_deletes_nothing(five, run):
    five.fail_put = lambda key: key.endswith("backup.info")
    before = dict(five.objects)
    with pytest.raises(BackupError):
        run(retention_policy="REDUNDANCY 2")
    assert five.objects == before
