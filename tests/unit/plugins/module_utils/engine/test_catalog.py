# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""catalog.py: the backups of one server, found and resolved the way the barman-cloud readers do.

Reference (section a): every folder under P/S/base/ is a backup id, read from its backup.info;
a folder without one is skipped; ids sort lexically; latest/last and first/oldest skip
STARTED backups, last-failed is the newest FAILED one; a name matching several backups is an error.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.catalog import Catalog, check_objects
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import BackupNotFoundError, PgCloudError


def add_backup(store, backup_id, status="DONE", name=None, server=None, extra_objects=()):
    destination = store.destination
    server = server or destination.server_name
    base = "/".join(part for part in (destination.prefix, server, "base", backup_id) if part)
    fields = {"status": status, "backup_name": name, "begin_wal": "000000010000000000000002", "timeline": 1,
              "end_time": datetime(2026, 11, 25, 2, 33, 54, 716105, tzinfo=timezone.utc), "version": 150018}
    store.put_object(base + "/backup.info", layout.render(fields))
    for object_name, size in extra_objects:
        store.put_object(base + "/" + object_name, b"x" * size)


@pytest.fixture
def catalog(store):
    add_backup(store, "20261125T010000", "DONE", name="first-one")
    add_backup(store, "20261123T010000", "DONE")
    add_backup(store, "20261124T010000", "FAILED")
    add_backup(store, "20261126T010000", "FAILED", name="broken")
    add_backup(store, "20261127T010000", "DONE", name="nightly")
    add_backup(store, "20261128T010000", "STARTED")
    return Catalog(store)


def test_backup_ids_are_sorted(catalog):
    assert catalog.backup_ids() == ["20261123T010000", "20261124T010000", "20261125T010000", "20261126T010000",
                                    "20261127T010000", "20261128T010000"]


def test_keys_of_a_backup(catalog):
    assert catalog.info_key("20261125T010000") == "some/path/db1/base/20261125T010000/backup.info"
    assert catalog.folder_key("20261125T010000") == "some/path/db1/base/20261125T010000"


def test_folder_without_backup_info_is_skipped(store, catalog):
    store.put_object("some/path/db1/base/20261129T010000/data.tar", b"orphan")
    assert "20261129T010000" in catalog.backup_ids()
    assert catalog.read("20261129T010000") is None
    assert "20261129T010000" not in [fields["backup_id"] for fields in catalog.all()]


def test_folders_that_are_not_backup_ids_are_ignored(store, catalog):
    store.put_object("some/path/db1/base/tmp/backup.info", layout.render({"status": "DONE"}))
    store.put_object("some/path/db1/base/20261129T01000/backup.info", layout.render({"status": "DONE"}))
    assert "tmp" not in catalog.backup_ids()
    assert "20261129T01000" not in catalog.backup_ids()


def test_other_servers_and_prefixes_are_not_listed(store, catalog):
    add_backup(store, "20261130T010000", server="db10")
    add_backup(store, "20261130T020000", server="db")
    store.put_object("other/path/db1/base/20261130T030000/backup.info", layout.render({"status": "DONE"}))
    assert catalog.backup_ids()[-1] == "20261128T010000"


def test_all_reads_each_backup_info_with_its_id(catalog):
    backups = catalog.all()
    assert [(fields["backup_id"], fields["status"]) for fields in backups] == [
        ("20261123T010000", "DONE"), ("20261124T010000", "FAILED"), ("20261125T010000", "DONE"),
        ("20261126T010000", "FAILED"), ("20261127T010000", "DONE"), ("20261128T010000", "STARTED")]
    assert backups[2]["backup_name"] == "first-one"
    assert backups[2]["end_time"] == datetime(2026, 11, 25, 2, 33, 54, 716105, tzinfo=timezone.utc)
    assert backups[2]["version"] == 150018
    assert "backup_name" not in backups[0]


def test_unreadable_backup_info_is_reported_not_raised(store, catalog):
    store.put_object("some/path/db1/base/20261129T010000/backup.info", b"status=DONE\ntablespaces=[('ts1', \n")
    fields = catalog.read("20261129T010000")
    assert fields["backup_id"] == "20261129T010000"
    assert fields["status"] == "UNREADABLE"
    assert fields["error"]


# --- resolve ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("wanted, backup_id", [
    ("20261124T010000", "20261124T010000"),
    ("20261128T010000", "20261128T010000"),  # an id may name a STARTED backup
    ("latest", "20261127T010000"),  # the STARTED 20261128T010000 is skipped
    ("last", "20261127T010000"),
    ("oldest", "20261123T010000"),
    ("first", "20261123T010000"),
    ("last-failed", "20261126T010000"),
    ("nightly", "20261127T010000"),
    ("first-one", "20261125T010000"),
    ("broken", "20261126T010000"),
])
def test_resolve(catalog, wanted, backup_id):
    assert catalog.resolve(wanted)["backup_id"] == backup_id


def test_oldest_skips_started_backups(store):
    add_backup(store, "20261120T010000", "STARTED")
    add_backup(store, "20261121T010000", "FAILED")
    assert Catalog(store).resolve("oldest")["backup_id"] == "20261121T010000"


def test_latest_skips_an_unreadable_backup_info(store, catalog):
    # The reference catalog leaves backups whose backup.info cannot be read out of its list,
    # so `latest` is the last readable, non-STARTED backup, the one barman-cloud-restore takes.
    store.put_object("some/path/db1/base/20261129T010000/backup.info", b"tablespaces=[(\n")
    assert catalog.resolve("latest")["backup_id"] == "20261127T010000"


def test_duplicate_name_is_an_error_listing_the_ids(store, catalog):
    add_backup(store, "20261129T010000", "DONE", name="nightly")
    with pytest.raises(PgCloudError) as caught:
        catalog.resolve("nightly")
    assert not isinstance(caught.value, BackupNotFoundError)
    message = str(caught.value)
    assert "'nightly' matches 2 backups" in message
    assert "20261127T010000, 20261129T010000" in message
    assert "use a backup id" in message


@pytest.mark.parametrize("wanted", ["20261101T000000", "no-such-name", "latest-full"])
def test_not_found_names_the_server_and_url(catalog, wanted):
    with pytest.raises(BackupNotFoundError) as caught:
        catalog.resolve(wanted)
    assert str(caught.value) == "no backup %r of server 'db1' at s3://test-bucket/some/path" % wanted


@pytest.mark.parametrize("wanted", ["latest", "oldest", "last-failed"])
def test_shortcuts_on_an_empty_catalog(store, wanted):
    with pytest.raises(BackupNotFoundError, match="server 'db1'"):
        Catalog(store).resolve(wanted)


def test_last_failed_without_failures(store):
    add_backup(store, "20261120T010000", "DONE")
    with pytest.raises(BackupNotFoundError):
        Catalog(store).resolve("last-failed")


def test_find_done_by_name_ignores_failed_and_started(store):
    add_backup(store, "20261120T010000", "FAILED", name="weekly")
    add_backup(store, "20261121T010000", "STARTED", name="weekly")
    catalog = Catalog(store)
    assert catalog.find_done_by_name("weekly") is None
    add_backup(store, "20261122T010000", "DONE", name="weekly")
    assert catalog.find_done_by_name("weekly")["backup_id"] == "20261122T010000"


def test_objects_of_a_backup(store):
    add_backup(store, "20261120T010000", extra_objects=[("data.tar", 2048), ("data_0001.tar", 512), ("16384.tar", 1024)])
    add_backup(store, "20261120T010001", extra_objects=[("data.tar", 7)])
    objects = Catalog(store).objects("20261120T010000")
    base = "some/path/db1/base/20261120T010000/"
    assert sorted((item["key"], item["size"]) for item in objects) == sorted([
        (base + "16384.tar", 1024), (base + "backup.info", len(store.objects[base + "backup.info"])),
        (base + "data.tar", 2048), (base + "data_0001.tar", 512)])


# --- the objects of a backup, checked from a listing ------------------------------------------------------

FOLDER = "some/path/db1/base/20261201T010000/"
COMPLETE = {"data.tar.zst": 3000, "data_0001.tar.zst": 2000, "data_0002.tar.zst": 1000, "16385.tar.zst": 700}


COMPLETE_SIZE = sum(COMPLETE.values())


def stored_backup(store, objects, size=COMPLETE_SIZE, tablespaces=(("ts", 16385, "/srv/ts"),), **fields):
    info = {"status": "DONE", "size": size, "tablespaces": list(tablespaces), "timeline": 1, "version": 150018}
    info.update(fields)
    store.put_object(FOLDER + "backup.info", layout.render(info))
    for name, length in objects.items():
        store.put_object(FOLDER + name, b"x" * length)
    catalog = Catalog(store)
    return check_objects(catalog, catalog.resolve("20261201T010000"))


def test_a_complete_backup_checks_ok(store):
    report = stored_backup(store, COMPLETE)
    assert report["ok"] is True and report["missing"] == [] and report["mismatched"] == []
    assert (report["objects"], report["stored_size"], report["recorded_size"]) == (5, 6700, 6700)


@pytest.mark.parametrize("lost", sorted(COMPLETE))
def test_each_lost_archive_is_found(store, lost):
    objects = {name: size for name, size in COMPLETE.items() if name != lost}
    report = stored_backup(store, objects)
    assert report["ok"] is False
    if lost == "data_0002.tar.zst":  # the last part: only the recorded size tells
        assert report["missing"] == []
        assert [item["reason"] for item in report["mismatched"]] == [
            "the archives add up to 5700 bytes, backup.info records 6700"]
    else:
        assert report["missing"] == [FOLDER + lost]


def test_a_truncated_archive_is_a_size_mismatch(store):
    report = stored_backup(store, dict(COMPLETE, **{"16385.tar.zst": 10}))
    assert report["missing"] == [] and report["mismatched"][0]["key"] == FOLDER


def test_objects_that_cannot_be_archives(store):
    objects = {"data.tar": 1000, "16385.tar": 0, "data.tar.rar": 5, "notes.txt": 3}
    report = stored_backup(store, objects, size=None)
    reasons = {item["key"][len(FOLDER):]: item["reason"] for item in report["mismatched"]}
    assert set(reasons) == {"data.tar", "16385.tar", "data.tar.rar", "notes.txt"}
    assert "512-byte blocks" in reasons["data.tar"] and reasons["16385.tar"] == "empty"
    assert "unknown extension" in reasons["data.tar.rar"] and "not an object" in reasons["notes.txt"]


def test_a_reference_backup_without_recorded_size_is_checked_by_names(store):
    report = stored_backup(store, {"data.tar.gz": 50}, size=None, tablespaces=())
    assert report["ok"] is True and report["recorded_size"] is None


def test_a_snapshot_backup_needs_its_backup_label(store):
    report = stored_backup(store, {}, size=None, tablespaces=(),
                           snapshots_info={"provider": "gcp", "provider_info": {}, "snapshots": []})
    assert report["missing"] == [FOLDER + "backup_label"] and report["ok"] is False


# --- kept backups: the keep annotation of barman-cloud-backup-keep -------------------------------------


@pytest.mark.parametrize("target", ["full", "standalone"])
def test_a_kept_backup_checks_ok(store, target):
    # barman-cloud-backup-keep writes <folder>annotations/keep; it is neither foreign nor an archive.
    store.put_object(FOLDER + "annotations/keep", target.encode())
    report = stored_backup(store, COMPLETE)
    assert report["ok"] is True and report["missing"] == [] and report["mismatched"] == []
    assert (report["objects"], report["stored_size"], report["recorded_size"]) == (6, 6700, 6700)


def test_a_kept_snapshot_backup_checks_ok(store):
    store.put_object(FOLDER + "annotations/keep", b"full")
    report = stored_backup(store, {"backup_label": 40}, size=None, tablespaces=(),
                           snapshots_info={"provider": "gcp", "provider_info": {}, "snapshots": []})
    assert report["ok"] is True and report["objects"] == 3


def test_an_object_in_another_subfolder_is_still_foreign(store):
    report = stored_backup(store, dict(COMPLETE, **{"extra/data.tar.zst": 512}))
    assert [item["key"] for item in report["mismatched"]][0] == FOLDER + "extra/data.tar.zst"
    assert report["ok"] is False


@pytest.mark.parametrize("content, target", [
    (b"full", "full"), (b"standalone", "standalone"), (b"standalone\n", "standalone"),
    (b"", "full"), (b"something", "full"),
])
def test_keep_target(store, content, target):
    add_backup(store, "20261120T010000")
    catalog = Catalog(store)
    assert catalog.keep_target("20261120T010000") is None
    store.put_object("some/path/db1/base/20261120T010000/annotations/keep", content)
    assert catalog.keep_target("20261120T010000") == target
    assert catalog.keep_target("20261120T010000", catalog.objects("20261120T010000")) == target


def test_keep_target_from_a_listing_reads_nothing_when_none_is_listed(store):
    add_backup(store, "20261120T010000")
    catalog = Catalog(store)
    objects = catalog.objects("20261120T010000")
    store.put_object("some/path/db1/base/20261120T010000/annotations/keep", b"full")
    assert catalog.keep_target("20261120T010000", objects) is None


def test_keep_key_is_barmans():
    # barman: "%s%s/base/%s/annotations/keep" % (path + "/" if path else "", server, id)
    from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.conftest import InMemoryStore
    assert Catalog(InMemoryStore()).keep_key("20261120T010000") == \
        "some/path/db1/base/20261120T010000/annotations/keep"
    assert Catalog(InMemoryStore("s3://bucket")).keep_key("20261120T010000") == \
        "db1/base/20261120T010000/annotations/keep"
