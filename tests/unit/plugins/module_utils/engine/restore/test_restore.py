# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore engine: decoders, ranged reads, safe extraction, options, recovery settings,
and a whole restore from an in-memory store (the integration tests restore real backups)."""

from __future__ import annotations

import io
import logging
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import snappy

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive import compression
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError, StorageError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore import job, recovery
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.download import PrefetchReader
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.extract import (
    Folder,
    RestoreError,
    UnsafeArchiveError,
    extract_stream,
    finish_directories,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.options import RestoreConfig, parse_target_time
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.base import ObjectStream
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.s3 import S3Store
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import parse_destination
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.transfer import progress

COMPRESSIONS = [None, "gzip", "bzip2", "snappy", "lz4", "zstd"]


def compress(name, data):
    compressor = compression.new_compressor(name)
    pieces = [compressor.compress(data[start:start + 100000]) for start in range(0, len(data), 100000)]
    return b"".join(pieces) + compressor.finish()


def read_all(reader, size=1 << 20):
    pieces = []
    while True:
        piece = reader.read(size)
        if not piece:
            return pieces
        pieces.append(piece)


# --- decoders ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPRESSIONS)
def test_decoders_give_back_the_data_in_bounded_pieces(name):
    data = os.urandom(200000) + bytes(30 << 20) + b"end"
    stored = compress(name, data)
    pieces = read_all(compression.open_decoded(name, io.BytesIO(stored).read), size=1 << 20)
    assert b"".join(pieces) == data
    # 30 MiB of zeros compress to almost nothing: the decoder must still hand them out piecewise.
    assert max(len(piece) for piece in pieces) <= 1 << 20


@pytest.mark.parametrize("name", [name for name in COMPRESSIONS if name not in (None, "zstd")])
def test_decoders_refuse_a_stream_cut_short(name):
    stored = compress(name, os.urandom(300000))
    with pytest.raises(ValueError, match="truncated"):
        read_all(compression.open_decoded(name, io.BytesIO(stored[:len(stored) // 2]).read))


def test_snappy_decoder_reads_what_barman_cloud_backup_writes():
    data = os.urandom(100000) + b"x" * 500000
    stored = io.BytesIO()
    snappy.stream_compress(io.BytesIO(data), stored)
    assert b"".join(read_all(compression.open_decoded("snappy", io.BytesIO(stored.getvalue()).read))) == data


def test_extensions_map_back_to_compressions():
    for name, extension in compression.EXTENSIONS.items():
        assert compression.compression_of_extension(extension) == name
    with pytest.raises(KeyError):
        compression.compression_of_extension("tar.xz")


# --- ranged reads --------------------------------------------------------------------------------


def readable(store):
    """Give an InMemoryStore open_read, recording the pieces asked for and how far reads ran ahead."""
    store.opened = []

    def open_read(key):
        store.opened.append(key)
        data = io.BytesIO(store.objects[key])
        return ObjectStream(data.read, data.close)

    store.open_read = open_read
    return store


def test_prefetch_reader_reads_the_whole_object(memory_store):
    store = readable(memory_store())
    data = os.urandom(1000003)
    store.objects["k"] = data
    with ThreadPoolExecutor(1) as pool:
        reader = PrefetchReader(store, "k", len(data), pool, depth=3, piece_size=65536)
        assert b"".join(read_all(reader, 10000)) == data
        reader.close()
    assert store.opened == ["k"]


def test_prefetch_reader_hands_whole_pieces_over_uncopied_and_splits_the_rest(memory_store):
    store = readable(memory_store())
    data = os.urandom(3 * 4096 + 100)
    store.objects["k"] = data
    pieces = []
    original_open = store.open_read

    def recording_open(key):
        stream = original_open(key)
        read = stream.read

        def read_piece(size):
            pieces.append(read(size))
            return pieces[-1]
        stream.read = read_piece
        return stream

    store.open_read = recording_open
    with ThreadPoolExecutor(1) as pool:
        reader = PrefetchReader(store, "k", len(data), pool, piece_size=4096)
        first = reader.read(4096)
        assert first is pieces[0]  # the piece itself: no copy of a whole piece
        assert reader.read(1000) + reader.read(-1) == data[4096:8192]
        assert reader.read(1 << 20) is pieces[2]
        assert reader.read(1 << 20) == data[12288:]
        assert reader.read(1 << 20) == b""
        reader.close()


def test_prefetch_reader_reads_ahead_only_depth_pieces(memory_store):
    store = readable(memory_store())
    store.objects["k"] = b"x" * (100 * 1024)
    with ThreadPoolExecutor(1) as pool:
        reader = PrefetchReader(store, "k", 100 * 1024, pool, depth=3, piece_size=1024)
        time.sleep(0.3)
        assert reader._pieces.qsize() == 3  # pylint: disable=protected-access
        reader.close()


def test_prefetch_reader_refuses_an_object_whose_size_changed(memory_store):
    store = readable(memory_store())
    store.objects["k"] = b"x" * 1000
    with ThreadPoolExecutor(1) as pool, pytest.raises(StorageError, match="changed during the restore"):
        read_all(PrefetchReader(store, "k", 2000, pool, piece_size=512))


def test_s3_open_read_on_moto(s3_config, s3_bucket):
    bucket, client = s3_bucket
    config = s3_config()
    store = S3Store(parse_destination(config), config)
    client.put_object(Bucket=bucket, Key="some/key", Body=b"0123456789")
    stream = store.open_read("some/key")
    assert [stream.read(4), stream.read(4), stream.read(4), stream.read(4)] == [b"0123", b"4567", b"89", b""]
    stream.close()
    with pytest.raises(StorageError):
        store.open_read("some/other")


# --- extraction ----------------------------------------------------------------------------------


def tar_bytes(*members, tar_format=tarfile.PAX_FORMAT):
    """members: (TarInfo, data or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name, kind=tarfile.REGTYPE, linkname="", mode=0o600):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, linkname, mode, 1700000000
    return info


def extract(tmp_path, archive):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    folder = Folder(str(root))
    counts = extract_stream(io.BytesIO(archive).read, folder, "data.tar")
    finish_directories(folder)
    return root, counts


def test_extracts_files_directories_and_inside_links(tmp_path):
    archive = tar_bytes((member(".", tarfile.DIRTYPE, mode=0o755), None),
                        (member("base/1", tarfile.DIRTYPE, mode=0o700), None),
                        (member("base/1/1234", mode=0o600), b"page" * 5000),
                        (member("./PG_VERSION", mode=0o600), b"15\n"),
                        (member("pg_tblspc/16385", tarfile.SYMTYPE, "/elsewhere/space"), None),
                        (member("base/1/link", tarfile.SYMTYPE, "1234"), None),
                        (member("base/1/hard", tarfile.LNKTYPE, "base/1/1234"), None))
    root, counts = extract(tmp_path, archive)
    assert (root / "base/1/1234").read_bytes() == b"page" * 5000
    assert (root / "PG_VERSION").read_text() == "15\n"
    assert os.readlink(root / "base/1/link") == "1234"
    assert (root / "base/1/hard").read_bytes() == b"page" * 5000
    # pg_tblspc links are made by the restore, towards the new locations
    assert not (root / "pg_tblspc/16385").exists()
    assert oct((root / "base/1/1234").stat().st_mode & 0o777) == oct(0o600)
    assert oct(root.stat().st_mode & 0o777) == oct(0o700)
    assert (root / "base/1").stat().st_mtime == 1700000000
    assert counts.files == 4 and counts.bytes == 20003


@pytest.mark.parametrize("bad, words", [
    ((member("/etc/evil"), b"x"), "absolute path"),
    ((member("base/../../evil"), b"x"), "'..'"),
    ((member("evil", tarfile.SYMTYPE, "/etc/passwd"), None), "absolute path"),
    ((member("base/evil", tarfile.SYMTYPE, "../../outside"), None), "outside"),
    ((member("evil", tarfile.LNKTYPE, "../outside"), None), "'..'"),
    ((member("evil", tarfile.FIFOTYPE), None), "FIFO"),
    ((member("evil", tarfile.CHRTYPE), None), "device"),
])
def test_refuses_members_that_would_write_outside(tmp_path, bad, words):
    with pytest.raises(UnsafeArchiveError, match=words):
        extract(tmp_path, tar_bytes((member("base", tarfile.DIRTYPE, mode=0o700), None), bad))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_refuses_writing_through_a_link_made_inside(tmp_path):
    """A link that resolves inside may not become a way out for the members after it."""
    (tmp_path / "outside").mkdir()
    archive = tar_bytes((member("up", tarfile.SYMTYPE, "."), None),
                        (member("up2", tarfile.SYMTYPE, "up/.."), None))
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract(tmp_path, archive)


def test_a_whole_stream_is_whole_wherever_its_pieces_end(tmp_path):
    """The decoded stream comes in pieces of any size: one may end between the two zero blocks."""
    archive = tar_bytes((member("a"), b"x" * 512), tar_format=tarfile.GNU_FORMAT)
    whole = io.BytesIO(archive)
    root = tmp_path / "root"
    root.mkdir()
    extract_stream(lambda size: whole.read(512), Folder(str(root)), "data.tar")
    assert (root / "a").read_bytes() == b"x" * 512


def test_a_stream_cut_between_members_is_truncated(tmp_path):
    whole = tar_bytes((member("a"), b"x" * 512), (member("b"), b"y" * 512), tar_format=tarfile.GNU_FORMAT)
    cut = whole[:2 * 512]  # header and data of a, nothing after
    with pytest.raises(RestoreError, match="truncated"):
        extract(tmp_path, cut)
    with pytest.raises(RestoreError, match="not a whole tar archive"):
        extract(tmp_path, whole[:512 + 100])


# --- options and recovery settings ------------------------------------------------------------------


@pytest.mark.parametrize("params, option, words", [
    ({"target_directory": "relative/dir"}, "target_directory", "absolute"),
    ({"tablespaces": {"space": "rel"}}, "tablespaces", "absolute"),
    ({"recovery_target_time": "2026-01-01 10:00:00"}, "recovery_target_time", "no UTC offset"),
    ({"recovery_target_time": "yesterday+00"}, "recovery_target_time", "not a time"),
    ({"recovery_target_lsn": "16B3748"}, "recovery_target_lsn", "not an LSN"),
    ({"recovery_target_xid": "12a"}, "recovery_target_xid", "transaction id"),
    ({"recovery_target_timeline": "newest"}, "recovery_target_timeline", "latest"),
    ({"recovery_target_action": "promote"}, "recovery_target_action", "only with a recovery target"),
    ({"recovery_target_action": "explode", "recovery_target_xid": "5"}, "recovery_target_action", "not one of"),
    ({"recovery_target_xid": "5", "recovery_target_immediate": True}, "recovery_target_immediate", "at most one"),
    ({"restore_command": "  "}, "restore_command", "empty"),
    # Text that would end its line in postgresql.auto.conf, or that PostgreSQL refuses at start-up.
    ({"restore_command": "cp /archive/%f %p\nrecovery_target = 'immediate'"}, "restore_command", "U\\+000A"),
    ({"recovery_target_name": "before-upgrade\r"}, "recovery_target_name", "U\\+000D"),
    ({"recovery_target_time": "2026-01-25 03:15:00+00\n"}, "recovery_target_time", "U\\+000A"),
    ({"recovery_target_lsn": "0/16B3748\u2028"}, "recovery_target_lsn", "U\\+2028"),
    ({"recovery_target_name": "n" * 64}, "recovery_target_name", "64 bytes long"),
    ({"recovery_target_name": "\u00e9" * 32}, "recovery_target_name", "64 bytes long"),
    ({"recovery_target_xid": "\u0661\u0662"}, "recovery_target_xid", "transaction id"),
    ({"recovery_target_xid": str(1 << 64)}, "recovery_target_xid", "at most"),
    ({"recovery_target_timeline": str(1 << 32)}, "recovery_target_timeline", "at most"),
    ({"target_directory": "/srv/restore\nX"}, "target_directory", "U\\+000A"),
    ({"target_directory": "/srv/restore "}, "target_directory", "whitespace"),
    ({"tablespaces": {"space": "/srv/space\t"}}, "tablespaces", "U\\+0009"),
    ({"tablespaces": {"space\u200b": "/srv/space"}}, "tablespaces", "U\\+200B"),
    ({"backup_id": "latest\n"}, "backup_id", "U\\+000A"),
])
def test_options_refuse_bad_input(params, option, words):
    settings = dict(target_directory="/srv/restore")
    settings.update(params)
    with pytest.raises(ConfigurationError, match=words) as error:
        RestoreConfig(**settings)
    assert error.value.parameter == option


@pytest.mark.parametrize("text", ["2026-01-25 03:15:00+00", "2026-01-25T03:15:00.5+02:00", "2026-01-25 03:15:00Z",
                                  "2026-01-25 03:15:00-0530"])
def test_target_times_with_an_offset_are_accepted(text):
    RestoreConfig(target_directory="/srv/restore", recovery_target_time=text)


@pytest.mark.parametrize("params", [{"recovery_target_name": "n" * 63}, {"recovery_target_name": " spaced name "},
                                    {"recovery_target_xid": str((1 << 64) - 1)},
                                    {"recovery_target_timeline": str((1 << 32) - 1)}])
def test_options_at_postgresql_limits_are_accepted(params):
    RestoreConfig(target_directory="/srv/restore", **params)


def test_recovery_settings_are_quoted_and_the_signal_file_replaced(tmp_path):
    options = RestoreConfig(target_directory=str(tmp_path), recovery_target_immediate=True,
                            recovery_target_action="promote", standby=True)
    (tmp_path / "postgresql.auto.conf").write_text("port = 5432\n")
    (tmp_path / "recovery.signal").write_text("")
    settings = recovery.recovery_settings(options, "cp '/archive/%f' \"%p\"")
    assert settings == {"restore_command": "cp '/archive/%f' \"%p\"", "recovery_target": "immediate",
                        "recovery_target_action": "promote"}
    recovery.write_recovery(str(tmp_path), options, settings, "20260125T031500")
    text = (tmp_path / "postgresql.auto.conf").read_text()
    assert text.startswith("port = 5432\n")
    assert "restore_command = 'cp ''/archive/%f'' \"%p\"'\n" in text
    assert "recovery_target = 'immediate'\n" in text
    assert (tmp_path / "standby.signal").exists() and not (tmp_path / "recovery.signal").exists()


def test_a_copy_without_wal_archiving_gets_archive_mode_off(tmp_path):
    kept = recovery.recovery_settings(RestoreConfig(target_directory=str(tmp_path)), "cp %f %p")
    assert "archive_mode" not in kept
    options = RestoreConfig(target_directory=str(tmp_path), wal_archiving=False)
    settings = recovery.recovery_settings(options, "cp %f %p")
    assert settings == {"restore_command": "cp %f %p", "archive_mode": "off"}
    (tmp_path / "postgresql.auto.conf").write_text("archive_mode = 'on'\narchive_command = 'x %p'\n")
    recovery.write_recovery(str(tmp_path), options, settings, "20260125T031500")
    # The last line wins in postgresql.auto.conf.
    lines = (tmp_path / "postgresql.auto.conf").read_text().splitlines()
    assert [line for line in lines if line.startswith("archive_mode")][-1] == "archive_mode = 'off'"


def test_default_restore_command_has_no_secret():
    storage = StorageConfig(destination_url="s3://bucket/path", server_name="db1", endpoint_url="http://127.0.0.1:9",
                            aws_access_key="AKIDSECRET", aws_secret_key="very-secret")
    command = recovery.default_restore_command(storage)
    assert command.endswith("barman-cloud-wal-restore --cloud-provider aws-s3 --endpoint-url http://127.0.0.1:9 "
                            "s3://bucket/path db1 %f %p")
    assert "SECRET" not in command and "secret" not in command


# --- a whole restore from an in-memory store ------------------------------------------------------


def backup_of(store, backup_id, archives, status=layout.DONE, tablespaces=None, **fields):
    """Put a backup's archives (name -> bytes) and its backup.info in the store."""
    destination = store.destination
    for name, data in archives.items():
        store.objects[destination.key(*layout.backup_folder(backup_id), name)] = data
    info = dict(dict(status=status, version=150000, begin_time=None, end_time=None, tablespaces=tablespaces,
                     end_xlog="0/3000100"), **fields)
    store.objects[destination.key(*layout.info_path(backup_id))] = layout.render(info)


@pytest.fixture
def ranged_store(monkeypatch, memory_store):
    store = readable(memory_store(jobs=2))
    monkeypatch.setattr(job, "open_store", lambda storage: store)
    return store


def run_restore(store, check_mode=False, **options):
    options.setdefault("verify", False)
    return job.RestoreJob(store.config, RestoreConfig(**options)).run(check_mode=check_mode)


def pgdata_archive(*extra):
    return tar_bytes((member(".", tarfile.DIRTYPE, mode=0o700), None), (member("PG_VERSION"), b"15\n"),
                     (member("global", tarfile.DIRTYPE, mode=0o700), None),
                     (member("global/pg_control"), b"c" * 8192), *extra)


def test_restores_data_and_relocated_tablespace(ranged_store, tmp_path):
    space = tar_bytes((member("PG_15_202209061", tarfile.DIRTYPE, mode=0o700), None),
                      (member("PG_15_202209061/16384/1259"), b"t" * 10000))
    backup_of(ranged_store, "20260125T031500", {
        "data.tar.zst": compress("zstd", pgdata_archive()),
        "data_0001.tar.zst": compress("zstd", tar_bytes((member("base/5", tarfile.DIRTYPE, mode=0o700), None),
                                                        (member("base/5/1249"), b"p" * 9000))),
        "16385.tar.zst": compress("zstd", space),
    }, tablespaces=[("space", 16385, "/nowhere/space")])
    target, relocated = tmp_path / "pgdata", tmp_path / "moved"

    result = run_restore(ranged_store, target_directory=str(target), tablespaces={"space": str(relocated)},
                         restore_command="true")

    assert result["files_written"] == 4 and result["bytes_written"] == 3 + 8192 + 9000 + 10000
    assert (target / "base/5/1249").read_bytes() == b"p" * 9000
    assert os.readlink(target / "pg_tblspc/16385") == str(relocated)
    assert (relocated / "PG_15_202209061/16384/1259").read_bytes() == b"t" * 10000
    assert (target / "pg_wal").is_dir() and (target / "recovery.signal").exists()
    assert "restore_command = 'true'" in (target / "postgresql.auto.conf").read_text()
    assert result["tablespaces"] == [{"name": "space", "oid": 16385, "location": str(relocated)}]


def test_a_restore_logs_how_much_it_has_fetched(ranged_store, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL", 0.0)
    stored = compress("lz4", pgdata_archive())
    backup_of(ranged_store, "20260125T031500", {"data.tar.lz4": stored})
    with caplog.at_level(logging.INFO, logger="pgcloud.backup"):
        run_restore(ranged_store, target_directory=str(tmp_path / "pgdata"), restore_command="true")
    lines = [record.getMessage() for record in caplog.records if "fetched" in record.getMessage()]
    assert lines and lines[-1].startswith("restore of backup 20260125T031500: 0 of 0 MiB fetched (100%), ")
    assert len(stored) < 1 << 20


def test_check_mode_writes_nothing(ranged_store, tmp_path):
    backup_of(ranged_store, "20260125T031500", {"data.tar": pgdata_archive()})
    result = run_restore(ranged_store, check_mode=True, target_directory=str(tmp_path / "pgdata"))
    assert result["changed"] is True and "would restore" in result["msg"]
    assert not (tmp_path / "pgdata").exists() and ranged_store.opened == []


def test_a_failure_midway_removes_what_was_written(ranged_store, tmp_path):
    good = compress("lz4", pgdata_archive())
    bad = compress("lz4", tar_bytes((member("base/5", tarfile.DIRTYPE), None), (member("base/5/1"), b"x" * 90000)))
    backup_of(ranged_store, "20260125T031500", {"data.tar.lz4": good, "data_0001.tar.lz4": bad[:len(bad) // 2]})
    existing = tmp_path / "pgdata"
    existing.mkdir()

    with pytest.raises(RestoreError, match="data_0001.tar.lz4"):
        run_restore(ranged_store, target_directory=str(existing))
    assert existing.is_dir() and list(existing.iterdir()) == []


@pytest.mark.parametrize("status", [layout.FAILED, layout.STARTED])
def test_refuses_a_backup_that_is_not_done(ranged_store, tmp_path, status):
    backup_of(ranged_store, "20260125T031500", {"data.tar": pgdata_archive()}, status=status)
    with pytest.raises(ConfigurationError, match="not DONE|no backup") as error:
        run_restore(ranged_store, target_directory=str(tmp_path / "pgdata"), backup_id="20260125T031500")
    assert error.value.parameter in ("backup_id", None)
    assert not (tmp_path / "pgdata").exists()


def test_refuses_overlapping_folders(ranged_store, tmp_path):
    backup_of(ranged_store, "20260125T031500", {"data.tar": pgdata_archive(), "16385.tar": tar_bytes()},
              tablespaces=[("space", 16385, "/nowhere")])
    with pytest.raises(ConfigurationError, match="overlap") as error:
        run_restore(ranged_store, target_directory=str(tmp_path / "pgdata"),
                    tablespaces={"space": str(tmp_path / "pgdata" / "space")})
    assert error.value.parameter == "tablespaces"


def test_force_replaces_the_contents(ranged_store, tmp_path):
    backup_of(ranged_store, "20260125T031500", {"data.tar": pgdata_archive()})
    target = tmp_path / "pgdata"
    target.mkdir()
    (target / "stale").write_text("old")
    with pytest.raises(ConfigurationError, match="not empty"):
        run_restore(ranged_store, target_directory=str(target))
    run_restore(ranged_store, target_directory=str(target), force=True)
    assert not (target / "stale").exists() and (target / "PG_VERSION").read_text() == "15\n"


def test_an_error_of_the_writing_thread_reaches_the_restore(tmp_path):
    """The files are written on a thread of their own: its failure must not be lost."""
    archive = tar_bytes((member("x", tarfile.DIRTYPE, mode=0o700), None), (member("x"), b"data"))
    with pytest.raises(IsADirectoryError):
        extract(tmp_path, archive)


# --- backup_id=auto ------------------------------------------------------------------------------


@pytest.fixture
def three_backups(ranged_store):
    """Backups ending at 01:00 (timeline 1), 02:00 (FAILED) and 03:00 (timeline 2) of one day."""
    day = "2026-01-25 %s+00"
    for backup_id, end, lsn, status, timeline in (("20260125T005000", "01:00:00", "0/3000100", layout.DONE, 1),
                                                  ("20260125T015000", "02:00:00", "0/5000100", layout.FAILED, 1),
                                                  ("20260125T025000", "03:00:00", "0/7000100", layout.DONE, 2)):
        backup_of(ranged_store, backup_id, {"data.tar": pgdata_archive()}, status=status, timeline=timeline,
                  end_time=parse_target_time(day % end), end_xlog=lsn)
    return ranged_store


@pytest.mark.parametrize("targets, chosen", [
    ({}, "20260125T025000"),
    ({"recovery_target_time": "2026-01-25 02:59:59+00"}, "20260125T005000"),  # the FAILED one never counts
    ({"recovery_target_time": "2026-01-25 03:00:00+00"}, "20260125T025000"),
    ({"recovery_target_time": "2026-01-25 04:30:00+01:00"}, "20260125T025000"),
    ({"recovery_target_lsn": "0/7000000"}, "20260125T005000"),
    ({"recovery_target_lsn": "0/7000100"}, "20260125T025000"),
    ({"recovery_target_timeline": "1"}, "20260125T005000"),
    ({"recovery_target_xid": "900"}, "20260125T025000"),
])
def test_auto_chooses_the_newest_done_backup_that_reaches_the_target(three_backups, tmp_path, targets, chosen):
    result = run_restore(three_backups, check_mode=True, target_directory=str(tmp_path / "pgdata"),
                         backup_id="auto", **targets)
    assert result["backup_id"] == chosen


@pytest.mark.parametrize("targets, words", [
    ({"recovery_target_time": "2026-01-25 00:59:59+00"}, "that ended at or before recovery_target_time"),
    ({"recovery_target_lsn": "0/1000000"}, "recovery_target_lsn 0/1000000"),
    ({"recovery_target_timeline": "3"}, "on timeline 3"),
])
def test_auto_refuses_a_target_no_backup_reaches(three_backups, tmp_path, targets, words):
    with pytest.raises(ConfigurationError, match=words) as error:
        run_restore(three_backups, target_directory=str(tmp_path / "pgdata"), backup_id="auto", **targets)
    assert error.value.parameter == "backup_id" and "2 DONE in all" in str(error.value)
    assert not (tmp_path / "pgdata").exists()
