# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`pgcloud-backup wal-archive` and `wal-restore` (issue 19), with barman's WAL tools as judges.

A cluster of its own archives with the new command; barman-cloud-wal-restore must fetch what
it stored, byte for byte, in every compression; `wal-restore` must fetch what
barman-cloud-wal-archive stored. Idempotence, the batch of ready files stored ahead of their
call, the spool, and a store that does not answer.
"""

from __future__ import annotations

import gzip
import importlib
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import testbed
from testbed import (MotoServer, StorageTarget, barman_cloud, free_port, postgres_dir, reference_backup, remove_tree,
                     restore_and_verify, run, scratch_dir, wait_for)
from wal_host import HostCommand, WalCluster

COMPRESSIONS = [None, "gzip", "bzip2", "xz", "snappy", "zstd", "lz4"]
EXTENSIONS = {None: "", "gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "snappy": ".snappy", "zstd": ".zst", "lz4": ".lz4"}
BARMAN_FLAGS = {None: [], "gzip": ["--gzip"], "bzip2": ["--bzip2"], "xz": ["--xz"], "snappy": ["--snappy"],
                "zstd": ["--zstd"], "lz4": ["--lz4"]}
SEGMENT = 16 << 20


@pytest.fixture(scope="module")
def wal_cluster(moto: MotoServer) -> Iterator[WalCluster]:
    """A cluster archiving with pgcloud-backup, with pgbench data at scale 1 (the fingerprint's)."""
    cluster = WalCluster()
    cluster.host.configure(moto.target(moto.create_bucket(), "wal", "walsrc"))
    with cluster:
        cluster.load_data(1)
        yield cluster


@pytest.fixture
def target(moto: MotoServer) -> Iterator[StorageTarget]:
    bucket = moto.create_bucket()
    yield moto.target(bucket, "wal", "walsrc")
    moto.delete_bucket(bucket)


@pytest.fixture
def host() -> Iterator[HostCommand]:
    """The command with a job folder of its own, for tests that need no cluster."""
    root = scratch_dir("pgcloud-tests-walhost-")
    yield HostCommand(root / "job")
    remove_tree(root)


def wal_files(folder: Path, names: List[str], size: int = SEGMENT) -> Dict[str, bytes]:
    """Files named as WAL, of WAL-like content (records, then zeroes), owned by postgres."""
    contents = {}
    for number, name in enumerate(names):
        data = (os.urandom(size // 4) + bytes([number]) * 16 + bytes(size))[:size]
        (folder / name).write_bytes(data)
        contents[name] = data
    run(["chown", "-R", "postgres:postgres", str(folder)])
    return contents


def pg_wal(root: Path, names: List[str]) -> Dict[str, bytes]:
    """A pg_wal-like folder: the files, and archive_status/<name>.ready for each."""
    postgres_dir(root / "archive_status", 0o755)
    contents = wal_files(root, names)
    for name in names:
        (root / "archive_status" / ("%s.ready" % name)).touch()
    run(["chown", "-R", "postgres:postgres", str(root)])
    return contents


def barman_restore(target: StorageTarget, name: str, destination: Path) -> bytes:
    barman_cloud("wal-restore", target, target.url, target.server_name, name, str(destination))
    return destination.read_bytes()


def wal_keys(moto: MotoServer, target: StorageTarget) -> List[str]:
    return [key[len(target.server_prefix):] for key in moto.list_keys(target.bucket, target.server_prefix)]


def write_segments(cluster: WalCluster, count: int) -> List[str]:
    """count WAL segments completed in a row (so that several are ready at once); wait for all."""
    names = []
    for _attempt in range(count):
        cluster.execute("CREATE TABLE IF NOT EXISTS walt (n int, t text); INSERT INTO walt SELECT g, repeat('x', 200) "
                        "FROM generate_series(1, 2000) g")
        names.append(cluster.scalar("SELECT pg_walfile_name(pg_switch_wal())"))
    last = names[-1]
    wait_for(lambda: (cluster.scalar("SELECT last_archived_wal FROM pg_stat_archiver") or "") >= last, 180,
             interval=0.3, what="%s archived" % last)
    return names


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=[str(item) for item in COMPRESSIONS])
def test_barman_restores_what_wal_archive_stored(
        wal_cluster: WalCluster, moto: MotoServer, target: StorageTarget, compression: str) -> None:
    wal_cluster.host.configure(target, compression=compression, archive_parallel=4)
    names = write_segments(wal_cluster, 3)
    keys = wal_keys(moto, target)
    for name in names:
        assert "wals/%s/%s%s" % (name[:16], name, EXTENSIONS[compression]) in keys
    restored = wal_cluster.root / "restored"
    for name in names:
        data = barman_restore(target, name, restored)
        assert data == (wal_cluster.copies / name).read_bytes()
        assert len(data) == SEGMENT


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=[str(item) for item in COMPRESSIONS])
def test_wal_restore_fetches_what_barman_archived(host: HostCommand, target: StorageTarget, compression: str) -> None:
    source = postgres_dir(host.root / "source", 0o755)
    name = "000000010000000000000007"
    data = wal_files(source, [name])[name]
    barman_cloud("wal-archive", target, *BARMAN_FLAGS[compression], target.url, target.server_name, str(source / name))
    host.configure(target)
    destination = host.root / "RECOVERYXLOG"
    result = host.run("wal-restore", name, str(destination))
    assert result.returncode == 0, result.stderr
    assert destination.read_bytes() == data


def test_wal_restore_partial_history_backup_and_missing(host: HostCommand, target: StorageTarget) -> None:
    source = postgres_dir(host.root / "source", 0o755)
    names = ["000000010000000000000009.partial", "00000002.history", "000000010000000000000003.00000028.backup"]
    contents = wal_files(source, names, size=4096)
    for name in names:
        barman_cloud("wal-archive", target, "--gzip", target.url, target.server_name, str(source / name))
    host.configure(target)
    destination = host.root / "RECOVERYXLOG"
    # A segment archived only as .partial (the end of a timeline) answers for the segment's name.
    for asked, name in [("000000010000000000000009", names[0])] + [(name, name) for name in names]:
        result = host.run("wal-restore", asked, str(destination))
        assert result.returncode == 0, result.stderr
        assert destination.read_bytes() == contents[name]
    for missing in ("00000001000000000000000A", "00000003.history"):
        result = host.run("wal-restore", missing, str(destination))
        assert result.returncode == 1, result.stderr
        assert "is not in the archive" in result.stderr


def test_wal_restore_prefetches_the_following_segments(
        host: HostCommand, moto: MotoServer, target: StorageTarget) -> None:
    source = postgres_dir(host.root / "source", 0o755)
    # The last two segments of log 0 and the first of log 1: the prefetch crosses the hash folder.
    names = ["0000000100000000000000FE", "0000000100000000000000FF", "000000010000000100000000",
             "000000010000000100000001"]
    contents = wal_files(source, names, size=1 << 20)
    host.configure(target, restore_prefetch=3)
    for name in names:
        assert host.run("wal-archive", str(source / name)).returncode == 0
    destination = host.root / "RECOVERYXLOG"
    result = host.run("wal-restore", names[0], str(destination))
    assert result.returncode == 0, result.stderr
    assert destination.read_bytes() == contents[names[0]]
    assert host.spooled() == names[1:3]
    # A file of a name recovery never asks for: it stays until a miss clears the spool.
    stale = next(host.spool_dir.glob("restore-*")) / "0000000100000000000000AA"
    stale.write_bytes(b"stale")
    # The prefetched files answer without the store: their objects are gone, the files come anyway.
    for name in names[1:3]:
        moto.client().delete_object(Bucket=target.bucket, Key=target.server_prefix + "wals/%s/%s" % (name[:16], name))
        result = host.run("wal-restore", name, str(destination))
        assert result.returncode == 0, result.stderr
        assert destination.read_bytes() == contents[name]
    assert host.spooled() == [stale.name]
    # A prefetched file answers for its own name only; a miss clears what recovery went past.
    assert host.run("wal-restore", names[3], str(destination)).returncode == 0
    assert destination.read_bytes() == contents[names[3]]
    assert host.spooled() == []


def test_archive_is_idempotent_and_refuses_other_content(
        host: HostCommand, moto: MotoServer, target: StorageTarget) -> None:
    source = postgres_dir(host.root / "source", 0o755)
    name = "000000010000000000000005"
    wal_files(source, [name])
    host.configure(target, compression="zstd")
    first = host.run("wal-archive", str(source / name))
    # The same content again, from another file (a marker answers for the first one only).
    copy = postgres_dir(host.root / "copy", 0o755) / name
    copy.write_bytes((source / name).read_bytes())
    again = host.run("wal-archive", str(copy))
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert "present" in again.stderr
    key = "wals/0000000100000000/%s.zst" % name
    assert wal_keys(moto, target) == [key]
    stored = moto.get_object(target.bucket, target.server_prefix + key)
    wal_files(source, [name])  # the same name, another content
    other = host.run("wal-archive", str(source / name))
    assert other.returncode == 1
    assert "different content" in other.stderr
    assert moto.get_object(target.bucket, target.server_prefix + key) == stored


def test_archive_finds_the_reference_tools_object(host: HostCommand, moto: MotoServer, target: StorageTarget) -> None:
    """Stored by barman-cloud-wal-archive in gzip: the same content is success, in any compression."""
    source = postgres_dir(host.root / "source", 0o755)
    name = "000000010000000000000006"
    wal_files(source, [name])
    barman_cloud("wal-archive", target, "--gzip", target.url, target.server_name, str(source / name))
    host.configure(target, compression="lz4")
    result = host.run("wal-archive", str(source / name))
    assert result.returncode == 0, result.stderr
    assert wal_keys(moto, target) == ["wals/0000000100000000/%s.gz" % name]


def engine_wal_archive(tmp_path: Path, monkeypatch: Any, target: StorageTarget) -> Tuple[Any, Any]:
    """wal/archive.py of this checkout, imported here, and an engine store of target."""
    link = tmp_path / "lib" / "ansible_collections" / "pgcloud" / "backup"
    link.parent.mkdir(parents=True)
    link.symlink_to(testbed.COLLECTION_ROOT)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    for name in [name for name in sys.modules if name.startswith("ansible_collections")]:
        monkeypatch.delitem(sys.modules, name)
    engine = "ansible_collections.pgcloud.backup.plugins.module_utils.engine."
    config = importlib.import_module(engine + "config")
    factory = importlib.import_module(engine + "storage.factory")
    for name, value in dict(target.module_env(), **testbed.FAKE_AWS_ENV).items():
        monkeypatch.setenv(name, value)
    return importlib.import_module(engine + "wal.archive"), factory.open_store(config.StorageConfig(**target.module_params()))


def test_a_file_is_looked_up_under_its_own_name_not_its_folder(
        tmp_path: Path, monkeypatch: Any, moto: MotoServer, target: StorageTarget) -> None:
    """A folder of wals/ grows to 256 segments: each file lists only its own keys (its compressed
    forms), and a .backup or .partial file of the same segment is not taken for it."""
    archive, store = engine_wal_archive(tmp_path, monkeypatch, target)
    name = "000000010000000000000042"
    data = wal_files(tmp_path, [name], size=1 << 16)[name]
    folder = target.server_prefix + "wals/0000000100000000/"
    client = moto.client()
    for other in ("000000010000000000000041", "000000010000000000000043", name + ".00000028.backup", name + ".partial"):
        client.put_object(Bucket=target.bucket, Key=folder + other, Body=b"another file")
    client.put_object(Bucket=target.bucket, Key=folder + name + ".gz", Body=gzip.compress(data))
    listed: List[str] = []
    list_objects = store.list_objects
    monkeypatch.setattr(store, "list_objects", lambda prefix: listed.append(prefix) or list_objects(prefix))
    assert archive.store_wal(store, str(tmp_path / name), "lz4") == archive.PRESENT
    assert listed == [folder + name]
    client.delete_object(Bucket=target.bucket, Key=folder + name + ".gz")
    assert archive.store_wal(store, str(tmp_path / name), "lz4") == archive.STORED
    assert moto.get_object(target.bucket, folder + name + ".lz4")


def test_ready_files_are_stored_ahead_and_answered_from_the_spool(
        host: HostCommand, moto: MotoServer, target: StorageTarget) -> None:
    folder = host.root / "pg_wal"
    names = ["00000001000000000000001%d" % number for number in range(4)] + ["00000002.history"]
    contents = pg_wal(folder, names)
    host.configure(target, archive_parallel=3)
    result = host.run("wal-archive", str(folder / names[0]))
    assert result.returncode == 0, result.stderr
    # The worker the call started stores every other ready file, and marks each once the store has it.
    wait_for(lambda: host.markers() == sorted(names[1:]), 120, what="the worker's markers")
    assert len(wal_keys(moto, target)) == 5
    wait_for(lambda: not host.worker_running(), 60, what="the worker to leave")
    # Stored ahead: the call answers from the spool without the store (the object is gone).
    key = target.server_prefix + "wals/0000000100000000/%s" % names[1]
    moto.client().delete_object(Bucket=target.bucket, Key=key)
    assert host.run("wal-archive", str(folder / names[1])).returncode == 0
    assert names[1] not in host.markers()
    # Without a marker, the same file goes to the store again.
    assert host.run("wal-archive", str(folder / names[1])).returncode == 0
    assert moto.get_object(target.bucket, key) == contents[names[1]]
    wait_for(lambda: not host.worker_running(), 60, what="the worker to leave")
    # A marker answers for the very file it was written for: a file rewritten since is checked again.
    host.configure(target, archive_parallel=1)
    (folder / names[2]).write_bytes(contents[names[2]])
    again = host.run("wal-archive", str(folder / names[2]))
    assert again.returncode == 0 and "present" in again.stderr, again.stderr


def test_a_call_waits_for_the_file_the_worker_stores(
        host: HostCommand, moto: MotoServer, target: StorageTarget) -> None:
    """PostgreSQL's calls in a row, each marking its file done: all answered, each file stored once."""
    folder = host.root / "pg_wal"
    names = ["00000001000000000000003%d" % number for number in range(6)]
    contents = pg_wal(folder, names)
    host.configure(target, archive_parallel=4)
    outputs = []
    for name in names:
        result = host.run("wal-archive", str(folder / name))
        assert result.returncode == 0, result.stderr
        outputs.append(result.stderr)
        (folder / "archive_status" / ("%s.ready" % name)).rename(folder / "archive_status" / ("%s.done" % name))
    # The first call started the worker (whose log went to that call's stderr) and waited for it;
    # the others found their markers, or waited for the worker too: no call stored its file itself.
    assert "%s stored by the archive worker" % names[0] in outputs[0]
    for output in outputs:
        assert not re.search(r"^INFO pgcloud-backup: \S+ (stored|present)$", output, re.MULTILINE), output
    for name in names:
        assert moto.get_object(target.bucket, target.server_prefix + "wals/0000000100000000/" + name) == contents[name]
    wait_for(lambda: not host.worker_running(), 60, what="the worker to leave")
    assert host.markers() == []


def test_store_outage_fails_the_archive_and_marks_nothing(
        host: HostCommand, moto: MotoServer, target: StorageTarget) -> None:
    folder = host.root / "pg_wal"
    names = ["00000001000000000000002%d" % number for number in range(3)]
    pg_wal(folder, names)
    host.configure(target, endpoint_url="http://127.0.0.1:%d" % free_port(), archive_parallel=3)
    result = host.run("wal-archive", str(folder / names[0]))
    assert result.returncode == 1
    assert "is not archived" in result.stderr
    wait_for(lambda: not host.worker_running(), 120, what="the worker to leave")
    assert host.markers() == []
    restore = host.run("wal-restore", names[0], str(host.root / "RECOVERYXLOG"))
    assert restore.returncode == 255, restore.stderr
    assert not (host.root / "RECOVERYXLOG").exists()
    assert wal_keys(moto, target) == []


def test_cluster_keeps_wal_ready_while_the_store_is_down(
        wal_cluster: WalCluster, moto: MotoServer, target: StorageTarget) -> None:
    # What the cluster had ready is archived, and the worker of its store has left: a segment
    # archived from here on went through the store that is down.
    status = wal_cluster.pgdata / "pg_wal" / "archive_status"
    wait_for(lambda: not list(status.glob("*.ready")) and not wal_cluster.host.worker_running(), 120,
             what="the cluster's archiving to settle")
    marked_before = set(wal_cluster.host.markers())
    wal_cluster.host.configure(target, endpoint_url="http://127.0.0.1:%d" % free_port())
    failed_before = wal_cluster.scalar("SELECT failed_count FROM pg_stat_archiver")
    archived_before = wal_cluster.scalar("SELECT last_archived_wal FROM pg_stat_archiver")
    wal_cluster.execute("CREATE TABLE IF NOT EXISTS walt (n int, t text); INSERT INTO walt VALUES (1, 'down')")
    segment = wal_cluster.scalar("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(lambda: wal_cluster.scalar("SELECT failed_count FROM pg_stat_archiver") > failed_before, 120,
             what="a failed archive attempt")
    assert (status / ("%s.ready" % segment)).exists()
    assert wal_cluster.scalar("SELECT last_archived_wal FROM pg_stat_archiver") == archived_before
    assert set(wal_cluster.host.markers()) <= marked_before  # nothing marked stored by the store that is down
    wal_cluster.host.configure(target)
    wait_for(lambda: (wal_cluster.scalar("SELECT last_archived_wal FROM pg_stat_archiver") or "") >= segment, 180,
             interval=0.3, what="%s archived once the store is back" % segment)
    assert barman_restore(target, segment, wal_cluster.root / "restored") == (wal_cluster.copies / segment).read_bytes()


def test_command_refuses_names_that_are_not_wal(host: HostCommand, target: StorageTarget) -> None:
    host.configure(target)
    (host.root / "postgresql.conf").write_text("x")
    result = host.run("wal-archive", str(host.root / "postgresql.conf"))
    assert result.returncode == 2 and "is not a WAL file name" in result.stderr
    result = host.run("wal-restore", "../config.json", str(host.root / "x"))
    assert result.returncode == 255 and "is not a WAL file name" in result.stderr


def test_recovery_replays_what_wal_archive_stored(wal_cluster: WalCluster, target: StorageTarget,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A base backup of barman-cloud-backup, WAL by pgcloud-backup: the restore replays all of it,
    with barman-cloud-wal-restore and with pgcloud-backup wal-restore as restore_command."""
    wal_cluster.host.configure(target, compression="zstd", restore_prefetch=4)
    backup_id = reference_backup(target, wal_cluster)
    write_segments(wal_cluster, 3)
    wal_cluster.execute("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 3 = 0")
    wal_cluster.switch_wal_and_wait()
    expected = wal_cluster.fingerprint()
    by_barman = restore_and_verify(target, backup_id)
    assert (by_barman.fingerprint, by_barman.amcheck_returncode) == (expected, 0)

    original = testbed.write_recovery_settings

    def with_pgcloud_backup(pgdata: Path, *arguments: Any, **keywords: Any) -> None:
        original(pgdata, *arguments, **keywords)
        command = shlex.join(wal_cluster.host.command("wal-restore", "%f", "%p")).replace("'", "''")
        with open(pgdata / "postgresql.auto.conf", "a") as config:
            config.write("restore_command = '%s'\n" % command)

    monkeypatch.setattr(testbed, "write_recovery_settings", with_pgcloud_backup)
    assert not list(wal_cluster.host.spool_dir.glob("restore-*"))
    by_engine = restore_and_verify(target, backup_id)
    assert (by_engine.fingerprint, by_engine.amcheck_returncode) == (expected, 0)
    # The restore went through pgcloud-backup (the last restore_command wins): its spool was used.
    assert list(wal_cluster.host.spool_dir.glob("restore-*"))
