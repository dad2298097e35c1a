# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_job.py: the order and the objects of one base backup, without a live server.

The PostgreSQL side is a small recording stand-in for PostgresSession (the methods the job
calls, returning the values a PostgreSQL 15 server returns); the files are a real directory
shaped like a PGDATA and a tablespace; the store is the in-memory ObjectStore. The same flow
against a live server is in the integration suite.

Reference (section b): backup.info STARTED as soon as the backup starts, tablespaces then
PGDATA then pg_control then external config files, backup_label after the stop as the last
member of the last data archive, DONE last; on failure FAILED with
`failure uploading data (<first line>)`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import tarfile
import threading
import time
from datetime import datetime, timezone

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.jobs import base_backup as backup_job
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.jobs.base_backup import BaseBackupJob, check_readable, new_backup_id
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive import manifest as manifest_module
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.catalog import Catalog
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive.manifest import FileChecksum
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import BackupConfig, PostgresConfig, StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import (
    BackupError,
    BucketNotFoundError,
    ConfigurationError,
    MissingDependencyError,
    PostgresError,
    StorageError,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.postgres import session as pg_session
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.postgres.session import ArchiverStatus, BackupPoint
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.transfer import progress as progress_module
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.conftest import InMemoryStore

UTC = timezone.utc
BEGIN = datetime(2026, 11, 25, 2, 33, 50, 633943, tzinfo=UTC)
END = datetime(2026, 11, 25, 2, 33, 54, 716105, tzinfo=UTC)
LABEL = ("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000098\n"
         "BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-25 02:33:53 UTC\n"
         "LABEL: Barman backup cloud 20261125T023350\nSTART TIMELINE: 1\n")
ID_PATTERN = re.compile(r"^\d{8}T\d{6}$")


class RecordingSession:
    """Stands in for PostgresSession: records the calls, answers like PostgreSQL 15."""

    def __init__(self, stop_error=None, lost=None, archived="000000010000000000000002"):
        self.events = []
        self.stop_error = stop_error
        self.lost = lost
        # pg_stat_archiver's last archived WAL file: by default the one that ends the backup
        self.archiver = ArchiverStatus(archived, None, None)

    def archiver_status(self):
        self.events.append(("archiver_status",))
        return self.archiver

    def ensure_alive(self):
        if self.lost:
            raise PostgresError("the PostgreSQL session was lost during the backup (%s)" % self.lost)

    def start_backup(self, label, fast):
        self.events.append(("start_backup", label, fast))
        return BackupPoint("0/2000028", 1, BEGIN)

    def start_keepalive(self, interval):
        self.events.append(("start_keepalive", interval))

    def stop_keepalive(self):
        self.events.append(("stop_keepalive",))

    def stop_backup(self, wait_for_archive=True):
        self.events.append(("stop_backup", wait_for_archive))
        if self.stop_error is not None:
            raise self.stop_error
        return BackupPoint("0/2000138", 1, END, LABEL)

    def create_restore_point(self, name):
        self.events.append(("create_restore_point", name))

    def close(self):
        self.events.append(("close",))

    def names(self):
        return [event[0] for event in self.events]


def make_job(store, compression_name="gzip", backup_name=None, jobs=2, max_archive_size="100GB", **storage):
    config = StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1", jobs=jobs, **storage)
    return BaseBackupJob(config, PostgresConfig(keepalive_interval=0),
                         BackupConfig(compression=compression_name, backup_name=backup_name,
                                      max_archive_size=max_archive_size), store=store)


def info_puts(store, reservations=False):
    """The backup.info written, in order; without the reservation of the id unless asked."""
    infos = [layout.parse(data) for key, data in store.put_history if key.endswith("/backup.info")]
    return [info for info in infos if reservations or not is_reservation(info)]


def is_reservation(info):
    return (info.get("error") or "").startswith("backup id reserved by run ")


def tar_members(data, decode):
    with tarfile.open(fileobj=io.BytesIO(decode(data)), mode="r:") as archive:
        return [(member, archive.extractfile(member).read() if member.isfile() else None) for member in archive.getmembers()]


# --- a backup that works ------------------------------------------------------------------------------


def test_backup_objects_and_backup_info(store, facts, restore_decoders):
    session = RecordingSession()
    result = make_job(store, backup_name="nightly", jobs=1)._take(session, facts).as_dict()  # one builder: one data archive
    backup_id = result["backup_id"]
    assert ID_PATTERN.match(backup_id)
    folder = "some/path/db1/base/%s/" % backup_id
    assert sorted(store.objects) == [folder + name for name in ("16384.tar.gz", "backup.info", "data.tar.gz")]

    # backup.info: STARTED first, DONE last
    started, done = info_puts(store)
    assert store.put_history[0][0] == folder + "backup.info"
    assert started["status"] == "STARTED" and done["status"] == "DONE"
    assert (started["begin_wal"], started["begin_offset"], started["begin_xlog"], started["begin_time"]) == (
        "000000010000000000000002", 40, "0/2000028", BEGIN)
    assert started["end_wal"] is None and started["end_time"] is None and started["backup_label"] is None
    assert "backup_name" not in started
    assert (done["end_wal"], done["end_offset"], done["end_xlog"], done["end_time"]) == (
        "000000010000000000000002", 312, "0/2000138", END)
    assert done["backup_label"] == LABEL
    assert done["backup_name"] == "nightly"
    assert (done["server_name"], done["timeline"], done["version"], done["xlog_segment_size"], done["systemid"]) == (
        "cloud", 1, 150018, 16 << 20, "7711931547866333808")
    assert done["tablespaces"] == [("ts1", 16384, facts.tablespaces[0][2])]
    assert done["compression"] is None  # always None for cloud backups, whatever the compression
    assert (done["pgdata"], done["data_checksums"], done["cluster_size"]) == (facts.data_directory, "on", 123456)
    assert set(done["copy_stats"]) >= {"total_time", "copy_time"}
    assert set(done) - {"backup_name"} == set(layout.FIELDS) - {"backup_name", "snapshots_info"}

    # the archives
    decode = restore_decoders["gzip"]
    tablespace = [member.name for member, _content in tar_members(store.objects[folder + "16384.tar.gz"], decode)]
    assert tablespace == ["PG_15_202209061", "PG_15_202209061/5", "PG_15_202209061/5/16385"]
    # PGDATA's walk, then the members added after it, in the same object
    final = tar_members(store.objects[folder + "data.tar.gz"], decode)
    assert [member.name for member, _content in final] == [
        ".", "./PG_VERSION", "./pg_hba.conf", "base", "base/5", "base/5/1259", "global", "global/1262", "pg_tblspc",
        "global/pg_control", "postgresql.conf", "backup_label", "backup_manifest"]
    assert final[-4][1] == open(os.path.join(facts.data_directory, "global", "pg_control"), "rb").read()
    assert final[-2][1] == LABEL.encode("utf-8")

    # the manifest: every regular file where a restore puts it, with the checksum of what was archived
    manifest = json.loads(final[-1][1])
    archived = {}
    for key in store.objects:
        if key.endswith(".tar.gz"):
            prefix = "pg_tblspc/16384/" if "/16384" in key else ""
            for member, content in tar_members(store.objects[key], decode):
                if member.isfile() and member.name != "backup_manifest":
                    archived[prefix + member.name.replace("./", "", 1)] = content
    assert sorted(archived) == ["PG_VERSION", "backup_label", "base/5/1259", "global/1262", "global/pg_control",
                                "pg_hba.conf", "pg_tblspc/16384/PG_15_202209061/5/16385", "postgresql.conf"]
    listed = {item["Path"]: item for item in manifest["Files"]}
    assert sorted(listed) == sorted(archived)
    # The default algorithm: CRC32C where google-crc32c runs in C (the test requirements install it).
    assert manifest_module.default_algorithm() == "CRC32C"
    for path, content in archived.items():
        expected = FileChecksum("CRC32C")
        expected.update(content)
        assert (listed[path]["Size"], listed[path]["Checksum-Algorithm"], listed[path]["Checksum"]) == (
            len(content), "CRC32C", expected.hexdigest()), path
    assert manifest["WAL-Ranges"] == [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000138"}]

    # the session
    assert session.events[0] == ("start_backup", "Barman backup cloud %s" % backup_id, False)
    assert ("create_restore_point", "barman_%s" % backup_id) in session.events
    assert session.names().index("stop_backup") < session.names().index("create_restore_point")

    # the result
    assert result["changed"] is True and result["status"] == "DONE"
    assert result["keys"] == sorted(key for key in store.objects if not key.endswith("backup.info")) + [folder + "backup.info"]
    assert result["destination"] == "s3://test-bucket/some/path/db1/base/%s/" % backup_id
    assert (result["begin_wal"], result["end_wal"]) == ("000000010000000000000002", "000000010000000000000002")
    assert result["bytes_written"] == sum(len(data) for key, data in store.objects.items() if not key.endswith("backup.info"))
    assert result["tablespaces"] == [{"name": "ts1", "oid": 16384, "location": facts.tablespaces[0][2]}]
    assert result["begin_time"] == "2026-11-25T02:33:50.633943+00:00"


def test_tablespaces_are_uploaded_before_pgdata(store, facts):
    make_job(store, compression_name=None)._take(RecordingSession(), facts)
    order = [key.rsplit("/", 1)[1] for key, _data in store.put_history]
    assert order[0] == "backup.info" and order[-1] == "backup.info"
    data = [index for index, name in enumerate(order) if name.startswith("data")]
    # One data archive per builder that took an entry: two, or one when a builder took every
    # entry before the other started (as on a loaded machine); the last holds backup_label.
    assert len(data) >= 1
    assert order.index("16384.tar") < min(data)


def test_no_restore_point_on_a_standby(store, facts):
    facts.in_recovery = True
    store.objects[END_WAL_KEY] = b"archived"
    session = RecordingSession()
    make_job(store)._take(session, facts)
    assert "create_restore_point" not in session.names()


# --- a backup from a standby -----------------------------------------------------------------------------

# The WAL file that holds the end (0/2000138) of RecordingSession's backups, as barman-cloud-wal-archive stores it.
END_WAL_KEY = "some/path/db1/wals/0000000100000000/000000010000000000000002.gz"


def standby_job(store, **postgres):
    config = StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1", jobs=1)
    return BaseBackupJob(config, PostgresConfig(keepalive_interval=0, **postgres), BackupConfig(), store=store)


def test_standby_backup_switches_wal_on_the_primary_until_its_last_wal_file_is_archived(store, facts, monkeypatch):
    facts.in_recovery = True
    switches = []

    def switch_primary_wal(conninfo):
        switches.append(conninfo)
        if len(switches) == 2:  # the primary's archiver stores it after the second switch
            store.objects[END_WAL_KEY] = b"archived"
        return "000000010000000000000002"

    monkeypatch.setattr(backup_job, "switch_primary_wal", switch_primary_wal)
    monkeypatch.setattr(backup_job, "WAL_POLL_INTERVAL", 0.01)
    monkeypatch.setattr(backup_job, "WAL_SWITCH_INTERVAL", 0)
    session = RecordingSession()
    result = standby_job(store, primary_conninfo="host=db0")._take(session, facts).as_dict()

    assert result["status"] == "DONE"
    assert switches == ["host=db0", "host=db0"]
    # The standby's own wait for archiving could last forever: the job waits on the store instead.
    assert ("stop_backup", False) in session.events
    assert [fields["status"] for fields in info_puts(store)] == ["STARTED", "DONE"]


def test_standby_backup_fails_when_its_last_wal_file_is_not_archived_in_time(store, facts, monkeypatch):
    facts.in_recovery = True
    monkeypatch.setattr(backup_job, "WAL_POLL_INTERVAL", 0.01)
    with pytest.raises(BackupError) as raised:
        standby_job(store, wal_archive_timeout=1)._take(RecordingSession(), facts)
    message = str(raised.value)
    assert "000000010000000000000002" in message and "primary_conninfo" in message and "archive_timeout" in message
    assert info_puts(store)[-1]["status"] == "FAILED"


# What barman-cloud-wal-archive stores under the end segment's name that is not that whole segment:
# a partial segment (from a promotion) or a backup history file, compressed or not. A restore
# cannot replay the end of the backup from these; barman-cloud-wal-restore never serves a
# .backup file for a segment, and a .partial one holds only what the old timeline wrote.
NOT_THE_SEGMENT = (".partial", ".partial.gz", ".partial.zst", ".00000028.backup", ".00000028.backup.gz",
                   ".gz.tmp", ".history")


@pytest.mark.parametrize("suffix", NOT_THE_SEGMENT)
def test_standby_backup_does_not_take_other_files_of_its_last_segment_for_it(store, facts, monkeypatch, suffix):
    facts.in_recovery = True
    store.objects[END_WAL_KEY.replace(".gz", suffix)] = b"not the whole segment"
    monkeypatch.setattr(backup_job, "WAL_POLL_INTERVAL", 0.01)
    with pytest.raises(BackupError) as raised:
        standby_job(store, wal_archive_timeout=1)._take(RecordingSession(), facts)
    assert "000000010000000000000002" in str(raised.value)
    assert info_puts(store)[-1]["status"] == "FAILED"


# Every compression barman-cloud-wal-archive writes, and none.
SEGMENT_SUFFIXES = ("", ".gz", ".bz2", ".xz", ".snappy", ".zst", ".lz4")


@pytest.mark.parametrize("suffix", SEGMENT_SUFFIXES)
def test_standby_backup_takes_its_last_segment_in_any_compression(store, facts, suffix):
    facts.in_recovery = True
    store.objects[END_WAL_KEY.replace(".gz", suffix)] = b"archived"
    result = standby_job(store, wal_archive_timeout=5)._take(RecordingSession(), facts).as_dict()
    assert result["status"] == "DONE"


def test_standby_backup_without_wait(store, facts):
    facts.in_recovery = True
    result = standby_job(store, wal_archive_timeout=0)._take(RecordingSession(), facts).as_dict()
    assert result["status"] == "DONE"


def test_split_data_archives(store, facts, restore_decoders):
    store.min_chunk_size = 1024
    result = make_job(store, compression_name=None, max_archive_size="4KB", jobs=1)._take(RecordingSession(), facts).as_dict()
    names = [key.rsplit("/", 1)[1] for key in result["keys"]]
    data = [name for name in names if name.startswith("data")]
    assert data[0] == "data.tar"
    assert data[1:] == ["data_%04d.tar" % number for number in range(1, len(data))]
    assert len(data) >= 3
    members = []
    for name in data:
        key = result["keys"][names.index(name)]
        members += [member.name for member, _content in tar_members(store.objects[key], restore_decoders[None])]
    assert sorted(members) == sorted([".", "./PG_VERSION", "./pg_hba.conf", "base", "base/5", "base/5/1259", "global",
                                      "global/1262", "pg_tblspc", "global/pg_control", "postgresql.conf", "backup_label",
                                      "backup_manifest"])
    assert members[-2:] == ["backup_label", "backup_manifest"]


def test_several_builders_start_with_the_largest_files(store, facts, restore_decoders):
    """The largest file of PGDATA opens one of the two builders' archives, and every file is stored once."""
    job = make_job(store, compression_name=None, jobs=2)
    job.builders = 2  # whatever the cores of the machine running the test
    result = job._take(RecordingSession(), facts).as_dict()
    names = [key.rsplit("/", 1)[1] for key in result["keys"]]
    walk_archives = [key for key, name in zip(result["keys"], names) if name in ("data.tar", "data_0001.tar")]
    members = [[member.name for member, _content in tar_members(store.objects[key], restore_decoders[None])]
               for key in walk_archives]
    assert "base/5/1259" in [archive[0] for archive in members]  # 20000 bytes, the largest
    assert sorted(name for archive in members for name in archive) == sorted(
        [".", "./PG_VERSION", "./pg_hba.conf", "base", "base/5", "base/5/1259", "global", "global/1262", "pg_tblspc",
         "global/pg_control", "postgresql.conf", "backup_label", "backup_manifest"])
    # the builder that ended last kept its archive open for the members added after the walk
    assert [archive[-1] for archive in members].count("backup_manifest") == 1


# --- failures ------------------------------------------------------------------------------------------


def test_failure_after_start_records_failed_and_aborts_open_uploads(store, facts):
    store.min_chunk_size = 1024  # the last data archive is a multipart upload when the stop fails
    session = RecordingSession(stop_error=PostgresError("PostgreSQL refused SELECT: connection lost\nDETAIL: x"))
    with pytest.raises(BackupError) as caught:
        make_job(store, compression_name=None, max_archive_size="1MB")._take(session, facts)
    backup_id = caught.value.backup_id
    assert ID_PATTERN.match(backup_id)
    assert str(caught.value) == "backup %s failed: PostgreSQL refused SELECT: connection lost" % backup_id
    started, failed = info_puts(store)
    assert started["status"] == "STARTED"
    assert failed["status"] == "FAILED"
    assert failed["error"].startswith("failure uploading data (PostgreSQL refused SELECT: connection lost)")
    assert failed["end_wal"] is None and failed["end_time"] is None
    assert store.calls_of("abort"), "the open multipart upload of the last archive was not aborted"
    assert [upload for upload, state in store.uploads.items() if state["state"] == "open"] == []
    assert "close" in session.names()


def test_failure_of_an_upload_fails_the_backup(store, facts):
    store.min_chunk_size = 1024
    store.fail_part = lambda key, number: "/data" in key and number == 2
    session = RecordingSession()
    with pytest.raises(BackupError, match="simulated failure of part 2"):
        make_job(store, compression_name=None, max_archive_size="1MB")._take(session, facts)
    assert info_puts(store)[-1]["status"] == "FAILED"
    assert "stop_backup" not in session.names()
    assert "close" in session.names()
    assert [upload for upload, state in store.uploads.items() if state["state"] == "open"] == []


def test_failure_to_write_backup_info_still_raises_backup_error(store, facts, caplog):
    # The reservation of the id gets through; every later write of backup.info fails.
    store.fail_put = lambda key: key.endswith("backup.info") and bool(info_puts(store, reservations=True))
    with caplog.at_level(logging.ERROR, logger="pgcloud.backup"):
        with pytest.raises(BackupError, match="simulated failure of the upload"):
            make_job(store)._take(RecordingSession(), facts)
    assert "could not record backup" in caplog.text
    assert info_puts(store) == []


def test_store_that_refuses_backup_info_fails_before_the_servers_backup_starts(store, facts):
    store.fail_put = lambda key: key.endswith("backup.info")
    session = RecordingSession()
    with pytest.raises(StorageError, match="simulated failure of the upload"):
        make_job(store)._take(session, facts)
    assert "start_backup" not in session.names()


def test_missing_pg_control_fails_with_a_clear_message(store, facts):
    os.remove(os.path.join(facts.data_directory, "global", "pg_control"))
    with pytest.raises(BackupError, match="global/pg_control is missing"):
        make_job(store)._take(RecordingSession(), facts)
    assert info_puts(store)[-1]["status"] == "FAILED"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_symlink_loop_in_pgdata_fails_the_backup_clearly(store, facts, jobs):
    os.symlink(facts.data_directory, os.path.join(facts.data_directory, "base", "loop"))
    session = RecordingSession()
    with pytest.raises(BackupError, match="base/loop is a symbolic link to .*, which contains it"):
        make_job(store, jobs=jobs)._take(session, facts)
    assert info_puts(store)[-1]["status"] == "FAILED"
    assert "close" in session.names()
    assert [upload for upload, state in store.uploads.items() if state["state"] == "open"] == []


def stored_names(store, decode):
    return {member.name for key, data in store.objects.items() if "/data" in key
            for member, _content in tar_members(data, decode)}


def test_stale_backup_files_in_pgdata_give_way_to_the_backups_own(store, facts, restore_decoders):
    for name in ("backup_label", "backup_manifest", "tablespace_map", "backup_label.old"):
        with open(os.path.join(facts.data_directory, name), "w") as stale:
            stale.write("stale\n")
    make_job(store, compression_name=None, jobs=2)._take(RecordingSession(), facts)
    final = [tar_members(data, restore_decoders[None]) for key, data in store.objects.items() if "/data" in key]
    members = [(member.name, content) for archive in final for member, content in archive]
    names = [name for name, _content in members]
    assert names.count("backup_label") == 1 and names.count("backup_manifest") == 1
    assert "tablespace_map" not in names and "./tablespace_map" not in names and "./backup_label.old" not in names
    assert dict(members)["backup_label"] == LABEL.encode("utf-8")


@pytest.mark.parametrize("setting", ["stats", "{pgdata}/stats"])
def test_contents_of_the_stats_temp_directory_are_left_out(store, facts, restore_decoders, setting):
    os.makedirs(os.path.join(facts.data_directory, "stats"))
    with open(os.path.join(facts.data_directory, "stats", "global.stat"), "w") as stats:
        stats.write("transient")
    facts.stats_temp_directory = setting.format(pgdata=facts.data_directory)
    make_job(store, compression_name=None)._take(RecordingSession(), facts)
    names = stored_names(store, restore_decoders[None])
    assert "stats" in names and "stats/global.stat" not in names


# --- before the server is touched --------------------------------------------------------------------


def unreachable_postgres(closed_port):
    return PostgresConfig(host="127.0.0.1", port=closed_port, user="nobody", keepalive_interval=0)


def test_run_checks_the_store_first(store, closed_port):
    store.check_error = BucketNotFoundError("bucket 'test-bucket' does not exist")
    job = BaseBackupJob(StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1"),
                        unreachable_postgres(closed_port), BackupConfig(), store=store)
    with pytest.raises(BucketNotFoundError):
        job.run()


def test_run_checks_the_compression_library_first(store, closed_port, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)
    job = BaseBackupJob(StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1"),
                        unreachable_postgres(closed_port), BackupConfig(compression="zstd"), store=store)
    with pytest.raises(MissingDependencyError, match="zstandard"):
        job.run()


class FactsSession(RecordingSession):
    """A session whose facts are given, for run()."""

    def __init__(self, facts):
        super().__init__()
        self._facts = facts

    def facts(self):
        return self._facts

    def archive_settings(self):
        return dict(ARCHIVING)


def test_run_passes_the_warnings_of_the_server_on_as_log_warnings(store, facts, monkeypatch, caplog):
    # The adapter turns the engine's log warnings into the module's warnings (test_ansible_adapter.py).
    facts.version = 190002
    facts.warnings = [pg_session.untested_version_warning(facts.version)]
    monkeypatch.setattr(backup_job, "PostgresSession", lambda config: FactsSession(facts))
    with caplog.at_level(logging.WARNING, logger="pgcloud.backup"):
        result = make_job(store).run(check_mode=True).as_dict()
    assert result["changed"] is True and result["backup_id"] is None
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [facts.warnings[0]]
    assert warnings[0].startswith("PostgreSQL 19 is newer than the newest major")


def test_run_with_the_name_of_a_done_backup_changes_nothing(store, closed_port):
    info = layout.render({"status": "DONE", "backup_name": "nightly", "begin_wal": "000000010000000000000002",
                          "end_wal": "000000010000000000000002", "begin_time": BEGIN, "end_time": END,
                          "tablespaces": [("ts1", 16384, "/srv/ts1")]})
    store.put_object("some/path/db1/base/20261125T023350/backup.info", info)
    job = BaseBackupJob(StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1"),
                        unreachable_postgres(closed_port), BackupConfig(backup_name="nightly"), store=store)
    result = job.run().as_dict()
    assert result["changed"] is False
    assert (result["backup_id"], result["status"], result["backup_name"]) == ("20261125T023350", "DONE", "nightly")
    assert result["end_time"] == "2026-11-25T02:33:54.716105+00:00"
    assert result["tablespaces"] == [{"name": "ts1", "oid": 16384, "location": "/srv/ts1"}]
    assert store.calls_of("put") == [("put", "some/path/db1/base/20261125T023350/backup.info", len(info))]


def test_run_with_the_name_of_a_failed_backup_tries_again(store, closed_port):
    store.put_object("some/path/db1/base/20261125T023350/backup.info",
                     layout.render({"status": "FAILED", "backup_name": "nightly"}))
    job = BaseBackupJob(StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1"),
                        unreachable_postgres(closed_port), BackupConfig(backup_name="nightly"), store=store)
    with pytest.raises(PostgresError, match="cannot connect to PostgreSQL"):
        job.run()


# --- helpers -----------------------------------------------------------------------------------------


def test_chunk_size_and_archive_size_cap(store, caplog):
    job = make_job(store, max_archive_size="2TB", min_chunk_size="8MB")
    assert job.max_archive_size == 1 << 40  # capped at the provider's limit
    assert job.chunk_size == 2 * ((2 << 40) // 10000)  # computed from the uncapped size, as the reference
    assert make_job(store, max_archive_size="1GB", min_chunk_size="8MB").chunk_size == 8 << 20
    assert make_job(store, max_archive_size="1GB").chunk_size == 5 << 20


def test_builders_follow_jobs_and_cores(store):
    assert make_job(store, jobs=1).builders == 1
    assert make_job(store, jobs=64).builders == min(64, os.cpu_count() or 1)


def test_new_backup_id_is_the_local_time_and_never_reused(store):
    before = datetime.now().strftime("%Y%m%dT%H%M%S")
    store.put_object("some/path/db1/base/%s/backup.info" % before, b"status=DONE\n")
    backup_id = new_backup_id(Catalog(store))
    assert ID_PATTERN.match(backup_id)
    assert backup_id > before
    assert backup_id <= datetime.now().strftime("%Y%m%dT%H%M%S")


def test_check_readable(facts, monkeypatch):
    check_readable(facts)
    location = facts.tablespaces[0][2]
    # Tests run as root, whom file modes do not stop.
    monkeypatch.setattr(os, "access", lambda path, mode: path != location)
    with pytest.raises(PostgresError) as caught:
        check_readable(facts)
    assert str(caught.value).startswith("cannot read %s as OS user " % location)
    assert "become_user" in str(caught.value)


def test_check_readable_names_a_missing_tablespace_directory(facts, tmp_path):
    facts.tablespaces = [("ts1", 16384, str(tmp_path / "gone"))]
    with pytest.raises(PostgresError, match="tablespace ts1 is at %s, which is not a directory" % (tmp_path / "gone")):
        check_readable(facts)


def test_tablespace_without_its_version_directory_fails_the_backup(store, facts):
    location = facts.tablespaces[0][2]
    os.rename(os.path.join(location, "PG_15_202209061"), os.path.join(location, "moved_away"))
    with pytest.raises(BackupError, match="tablespace ts1 at %s holds no PG_15_ directory" % location):
        make_job(store)._take(RecordingSession(), facts)
    assert info_puts(store)[-1]["status"] == "FAILED"
    assert [key for key, _data in store.put_history if not key.endswith("backup.info")] == []


def test_check_readable_needs_backup_privileges(facts):
    facts.backup_privileges = False
    with pytest.raises(PostgresError, match="GRANT EXECUTE on pg_backup_start and pg_backup_stop"):
        check_readable(facts)


def test_check_readable_needs_the_data_directory_setting(facts):
    facts.role = "backup_operator"
    facts.data_directory = None
    with pytest.raises(PostgresError, match="GRANT pg_read_all_settings TO backup_operator"):
        check_readable(facts)


def test_plan_of_check_mode(store, facts):
    plan = make_job(store, compression_name="lz4", backup_name="nightly", jobs=3)._plan_result(facts).as_dict()
    assert (plan["changed"], plan["backup_id"], plan["keys"]) == (True, None, [])
    assert plan["plan"] == {"data_directory": facts.data_directory,
                            "tablespaces": [{"name": "ts1", "oid": 16384, "location": facts.tablespaces[0][2]}],
                            "compression": "lz4", "jobs": 3, "chunk_size": 21474836, "max_archive_size": 100 << 30,
                            "cluster_size": 123456}
    assert store.put_history == []


def test_progress_is_logged(store, monkeypatch, caplog):
    monkeypatch.setattr(progress_module, "PROGRESS_INTERVAL", 0.0)
    progress = backup_job.Progress("20261125T023350", backup_job.UploadPool(store, 1, 1 << 20), RecordingSession())
    with caplog.at_level(logging.INFO, logger="pgcloud.backup"):
        progress.add(3 << 20)
    assert progress.bytes_read == 3 << 20
    assert "backup 20261125T023350: 3 MiB read" in caplog.text


def test_lost_session_fails_the_backup_and_aborts_uploads(store, facts):
    """The server ends a backup whose session dies: the copy stops, FAILED is recorded, nothing stays open."""
    store.min_chunk_size = 1024
    session = RecordingSession(lost="server closed the connection unexpectedly")
    with pytest.raises(BackupError) as caught:
        make_job(store, compression_name=None, max_archive_size="1MB")._take(session, facts)
    assert "session was lost" in str(caught.value)
    assert "stop_backup" not in session.names()
    started, failed = info_puts(store)
    assert (started["status"], failed["status"]) == ("STARTED", "FAILED")
    assert [upload for upload, state in store.uploads.items() if state["state"] == "open"] == []


def test_storage_error_in_a_group_is_reported_with_the_backup(store, facts):
    store.fail_put = lambda key: key.endswith("16384.tar.gz")
    with pytest.raises(BackupError) as caught:
        make_job(store)._take(RecordingSession(), facts)
    assert isinstance(caught.value.__cause__, StorageError)


# --- WAL archiving on a primary (issue 18, item 3) --------------------------------------------------

ARCHIVING = {"archive_mode": "on", "archive_command": "barman-cloud-wal-archive s3://b/p db1 %p", "archive_library": ""}


@pytest.mark.parametrize("settings, words", [
    (dict(ARCHIVING, archive_mode="off"), "archive_mode=off"),
    (dict(ARCHIVING, archive_command=""), "neither archive_command nor archive_library is set"),
    (dict(ARCHIVING, archive_mode="always", archive_command="", archive_library=None), "archive_mode is always"),
])
def test_a_primary_that_archives_no_wal_is_refused(facts, settings, words):
    with pytest.raises(ConfigurationError) as caught:
        backup_job.check_wal_archiving(settings, facts, required=True)
    assert caught.value.parameter == "require_wal_archiving"
    message = str(caught.value)
    assert words in message and "require_wal_archiving: false" in message and "archive_command" in message


@pytest.mark.parametrize("settings, in_recovery, required", [
    (ARCHIVING, False, True),
    (dict(ARCHIVING, archive_command="", archive_library="basic_archive"), False, True),
    ({"archive_mode": "on"}, False, True),  # archive_command hidden from the role: the bounded wait judges
    (dict(ARCHIVING, archive_mode="off"), True, True),  # a standby: its primary archives
    (dict(ARCHIVING, archive_mode="off"), False, False),  # the user ships WAL another way
])
def test_wal_archiving_accepted(facts, settings, in_recovery, required):
    facts.in_recovery = in_recovery
    backup_job.check_wal_archiving(settings, facts, required=required)


def test_refusal_comes_before_anything_is_written(store, facts, monkeypatch):
    class OffSession(RecordingSession):
        def __init__(self, config):
            super().__init__()

        def facts(self):
            return facts

        def archive_settings(self):
            return dict(ARCHIVING, archive_mode="off")

    monkeypatch.setattr(backup_job, "PostgresSession", OffSession)
    with pytest.raises(ConfigurationError, match="archive_mode=off"):
        make_job(store).run()
    assert store.calls_of("put") == [] and store.calls_of("create") == []


def test_primary_backup_waits_for_the_archiver_without_the_servers_unbounded_wait(store, facts, monkeypatch):
    monkeypatch.setattr(backup_job, "WAL_POLL_INTERVAL", 0.01)
    session = RecordingSession(archived="000000010000000000000001")
    polls = []

    def archiver_status():
        polls.append(1)
        if len(polls) == 3:
            session.archiver = ArchiverStatus("000000010000000000000002", None, None)
        return session.archiver

    session.archiver_status = archiver_status
    result = make_job(store)._take(session, facts).as_dict()
    assert result["status"] == "DONE"
    assert ("stop_backup", False) in session.events
    assert len(polls) == 3


def test_primary_backup_fails_with_the_archivers_last_failure_when_wal_is_not_archived(store, facts, monkeypatch):
    monkeypatch.setattr(backup_job, "WAL_POLL_INTERVAL", 0.01)
    failed_at = datetime(2026, 11, 25, 2, 33, 55, tzinfo=UTC)
    session = RecordingSession()
    session.archiver = ArchiverStatus("000000010000000000000001", "000000010000000000000002", failed_at, 7)
    job = make_job(store)
    job.postgres.wal_archive_timeout = 1
    started = time.monotonic()
    with pytest.raises(BackupError) as caught:
        job._take(session, facts)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "000000010000000000000002" in message and "wal_archive_timeout (1 s)" in message
    assert ("the archiver last failed to archive 000000010000000000000002 at 2026-11-25 02:33:55+00:00 (7 failures; "
            "the last WAL file archived is 000000010000000000000001)") in message
    failed = info_puts(store)[-1]
    assert failed["status"] == "FAILED" and "archiver last failed" in failed["error"]
    # The server left backup mode before the wait: nothing to stop on the way out.
    assert session.names().index("stop_backup") < session.names().index("archiver_status")


def test_primary_without_archiving_by_choice_does_not_wait(store, facts):
    facts.archive_mode = "off"
    session = RecordingSession(archived=None)
    result = make_job(store)._take(session, facts).as_dict()
    assert result["status"] == "DONE" and "archiver_status" not in session.names()


# --- runs that overlap (issue 18, item 2) --------------------------------------------------------------


class ConditionalStore(InMemoryStore):
    """An in-memory store whose create honours the condition, as S3, Azure and GCS do."""

    def create_object(self, key, data):
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = bytes(data)
            self.put_history.append((key, bytes(data)))
            return True


def test_two_runs_in_one_second_reserve_different_ids(facts, monkeypatch):
    store = ConditionalStore()
    clock = {"second": 0}
    monkeypatch.setattr(backup_job, "_id_of_now", lambda: "20261205T0000%02d" % clock["second"])
    monkeypatch.setattr(backup_job, "_sleep_to_next_second", lambda: clock.update(second=clock["second"] + 1))
    # Both runs list the folders before either reserves: the check-then-act race.
    listed = threading.Barrier(2, timeout=10)
    list_folders = store.list_folders

    calls = []

    def list_together(prefix):
        folders = list(list_folders(prefix))
        calls.append(prefix)
        if len(calls) <= 2:  # the first look of each run
            listed.wait()
        return iter(folders)

    store.list_folders = list_together
    ids = []
    info = make_job(store)._initial_info(facts)
    threads = [threading.Thread(target=lambda: ids.append(backup_job.reserve_backup_id(Catalog(store), info)))
               for _thread in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == ["20261205T000000", "20261205T000001"]
    reservations = info_puts(store, reservations=True)
    assert len(reservations) == 2 and all(is_reservation(item) for item in reservations)
    assert len({item["error"] for item in reservations}) == 2  # each run's own nonce


def test_reservation_gives_up_when_every_id_is_taken(facts, monkeypatch):
    store = ConditionalStore()
    monkeypatch.setattr(backup_job, "_sleep_to_next_second", lambda: None)
    monkeypatch.setattr(store, "create_object", lambda key, data: False)
    with pytest.raises(StorageError, match="could not reserve a backup id"):
        backup_job.reserve_backup_id(Catalog(store), make_job(store)._initial_info(facts))


class LiveSession(RecordingSession):
    """A RecordingSession that run() can open: facts, archive settings and the server's lock."""

    locked_by_other = False
    on_lock = None

    def __init__(self, config, facts=None):
        super().__init__()
        self._facts = facts

    def facts(self):
        return LiveSession.server_facts

    def archive_settings(self):
        return dict(ARCHIVING)

    def try_lock_server(self, server_name):
        self.events.append(("try_lock_server", server_name))
        if LiveSession.on_lock is not None:
            LiveSession.on_lock()
        return not LiveSession.locked_by_other

    def lock_holder(self, server_name):
        return "pid 4242 (pgcloud_backup, connected since 2026-12-05 00:00:00+00)"


@pytest.fixture
def live_session(facts, monkeypatch):
    monkeypatch.setattr(LiveSession, "server_facts", facts, raising=False)
    monkeypatch.setattr(LiveSession, "locked_by_other", False)
    monkeypatch.setattr(LiveSession, "on_lock", None)
    monkeypatch.setattr(backup_job, "PostgresSession", LiveSession)
    return LiveSession


def test_second_run_on_one_server_is_refused_before_anything_is_written(store, live_session):
    live_session.locked_by_other = True
    with pytest.raises(PostgresError) as caught:
        make_job(store).run()
    assert str(caught.value).startswith("another backup of server_name 'db1' is running on this PostgreSQL server, "
                                        "into s3://test-bucket/some/path/db1/base (pid 4242 (pgcloud_backup")
    assert store.calls_of("put") == [] and store.calls_of("create") == []


def test_named_backup_taken_by_the_run_that_held_the_lock_is_not_taken_again(store, live_session):
    done = layout.render({"status": "DONE", "backup_name": "nightly", "begin_time": BEGIN, "end_time": END})
    live_session.on_lock = lambda: store.put_object("some/path/db1/base/20261125T023350/backup.info", done)
    result = make_job(store, backup_name="nightly").run().as_dict()
    assert (result["changed"], result["backup_id"]) == (False, "20261125T023350")
    assert [key for key, _data in store.put_history] == ["some/path/db1/base/20261125T023350/backup.info"]


# --- DONE only after the store lists what was written (issue 18, item 4) ---------------------------------


class LossyStore(InMemoryStore):
    """Acknowledges every write, and keeps archives short by `lost` bytes (None: keeps none of them)."""

    lost = 1

    def _lose(self, key):
        if key.endswith("backup.info") or key not in self.objects:
            return
        if self.lost is None:
            del self.objects[key]
        else:
            self.objects[key] = self.objects[key][:-self.lost]

    def put_object(self, key, data):
        super().put_object(key, data)
        with self._lock:
            self._lose(key)

    def complete_multipart(self, key, upload, parts):
        super().complete_multipart(key, upload, parts)
        with self._lock:
            self._lose(key)


@pytest.mark.parametrize("lost, words", [(1, "holds %d bytes where %d were written"), (None, "is missing")])
@pytest.mark.parametrize("multipart", [False, True])
def test_store_that_acknowledges_what_it_does_not_hold_gives_failed(facts, lost, words, multipart):
    store = LossyStore()
    store.lost = lost
    if multipart:
        store.min_chunk_size = 1024
    session = RecordingSession()
    with pytest.raises(BackupError) as caught:
        make_job(store, compression_name=None, max_archive_size="1MB" if multipart else "100GB")._take(session, facts)
    message = str(caught.value)
    assert "the store does not hold what it acknowledged" in message
    if lost:
        key, listed, written = re.search(r"(\S+/data\.tar) holds (\d+) bytes where (\d+) were written", message).groups()
        assert int(written) - int(listed) == 1
    else:
        assert re.search(r"\S+/data\.tar is missing", message), message
    statuses = [info["status"] for info in info_puts(store)]
    assert statuses == ["STARTED", "FAILED"]
    if multipart:
        assert store.calls_of("complete")


def test_name_taken_elsewhere_while_the_backup_ran_gives_failed(store, facts):
    """Another host with this server_name took the name meanwhile: two DONE of one name cannot be restored by name."""
    class OtherHostSession(RecordingSession):
        def stop_backup(self, wait_for_archive=True):
            store.put_object("some/path/db1/base/20261125T023350/backup.info",
                             layout.render({"status": "DONE", "backup_name": "nightly"}))
            return super().stop_backup(wait_for_archive)

    with pytest.raises(BackupError, match="backup_name 'nightly' was taken by backup 20261125T023350 while this"):
        make_job(store, backup_name="nightly")._take(OtherHostSession(), facts)
    assert [info["status"] for info in info_puts(store)][-1] == "FAILED"
    assert Catalog(store).resolve("nightly")["backup_id"] == "20261125T023350"


def test_backup_info_the_store_does_not_return_gives_failed(facts):
    class ForgetfulStore(InMemoryStore):
        def get_object(self, key):
            data = super().get_object(key)
            return None if data is not None and b"status=DONE" in data else data

    store = ForgetfulStore()
    with pytest.raises(BackupError, match="does not return the backup.info it acknowledged"):
        make_job(store)._take(RecordingSession(), facts)
    assert info_puts(store)[-1]["status"] == "FAILED"


def test_object_of_another_run_in_the_backups_folder_gives_failed(store, facts):
    """A folder shared with another run would restore that run's archives too."""
    class SharingSession(RecordingSession):
        def stop_backup(self, wait_for_archive=True):
            (folder,) = {key.rsplit("/", 1)[0] for key in store.objects if key.endswith("/backup.info")}
            store.put_object(folder + "/data_0007.tar.gz", b"another run's archive")
            return super().stop_backup(wait_for_archive)

    with pytest.raises(BackupError, match=r"/data_0007\.tar\.gz was not written by this backup"):
        make_job(store)._take(SharingSession(), facts)
    assert info_puts(store)[-1]["status"] == "FAILED"
