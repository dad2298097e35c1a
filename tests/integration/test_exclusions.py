# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the walk of PGDATA leaves out and what it follows, on a real cluster, judged by the real tools.

One PostgreSQL 15 cluster with a tablespace, pgbench data (its accounts table is the large
relation file that, with jobs 2, spreads PGDATA over several archives), an unlogged table,
and what real clusters carry besides their data: the stale backup_label, tablespace_map and
backup_manifest of the backup it was restored from, the server's temporary files, and
directories that are symbolic links to other disks (pg_wal, pg_xact, log and a directory of
the user's own). Each backup is restored by barman-cloud-restore, checked by pg_verifybackup
(Debian's 15) against the backup's own backup_manifest before the copy starts, then started,
checked with pg_amcheck and compared with the source. A PostgreSQL 14 cluster checks the
setting of that major only, stats_temp_directory inside PGDATA.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from testbed import (
    MotoServer,
    PostgresCluster,
    StorageTarget,
    backup_module_args,
    chown_postgres,
    pg_bin_of,
    postgres_dir,
    restore_and_verify,
    run_module,
    verify_backup,
    wait_for,
)

TABLESPACE = "testbed_space"
STALE_LABEL = ("START WAL LOCATION: 0/9000028 (file 000000010000000000000009)\nCHECKPOINT LOCATION: 0/9000060\n"
               "BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2020-01-01 00:00:00 UTC\n"
               "LABEL: the backup this cluster was restored from\nSTART TIMELINE: 1\n")
# A manifest of another backup: if it reached the restored copy, pg_verifybackup would check
# the copy against the wrong file list (here, one that does not even parse as this backup's).
STALE_MANIFEST = ('{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n'
                  '{ "Path": "PG_VERSION", "Size": 99, "Last-Modified": "2020-01-01 00:00:00 GMT" }\n],\n'
                  '"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/9000028", "End-LSN": "0/9000100" }\n],\n'
                  '"Manifest-Checksum": "0000000000000000000000000000000000000000000000000000000000000000"}\n')
# Files no backup may carry (relative to PGDATA; {db} is the postgres database's folder).
STALE_FILES = {
    "backup_label": STALE_LABEL,
    "tablespace_map": "16999 /nowhere/old-tablespace\n",
    "backup_manifest": STALE_MANIFEST,
    "backup_label.old": STALE_LABEL,
    "tablespace_map.old": "16998 /nowhere/older-tablespace\n",
    "current_logfiles.tmp": "stderr log/postgresql.log\n",
    "postgresql.auto.conf.tmp": "port = 1\n",
    ".DS_Store": "finder\n",
    "global/pg_internal.init.4242": "relcache being written\n",
    "{db}/pg_internal.init.4243": "relcache being written\n",
    "{db}/pgsql_tmp/pgsql_tmp4244.0": "sort spill\n",
}
# Names that may be in no archive member at all, wherever they are.
NEVER_STORED = {"tablespace_map", "backup_label.old", "tablespace_map.old", "current_logfiles.tmp",
                "postgresql.auto.conf.tmp", ".DS_Store", "postmaster.pid", "postmaster.opts"}
USER_FILES = {"notes.txt": b"kept on another disk\n", "sub/deeper.bin": bytes(range(256)) * 64}


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> Iterator[StorageTarget]:
    target = moto.target(moto.create_bucket(), "pg/exclusions", "exclusions")
    yield target
    moto.delete_bucket(target.bucket)


def move_out(cluster: PostgresCluster, name: str) -> Path:
    """Move PGDATA/<name> (the server is stopped) to a folder of its own and leave a link in its place."""
    elsewhere = cluster.root / ("disk-" + name)
    shutil.move(str(cluster.pgdata / name), str(elsewhere))
    os.symlink(str(elsewhere), str(cluster.pgdata / name))
    return elsewhere


@pytest.fixture(scope="module")
def cluster(bucket: StorageTarget) -> Iterator[PostgresCluster]:
    """The cluster described above, its WAL archived to the module's bucket."""
    with PostgresCluster("exclusions", tablespace=TABLESPACE, archive_target=bucket) as cluster:
        cluster.load_data(1)
        cluster.execute("CREATE UNLOGGED TABLE testbed_unlogged AS SELECT g AS id FROM generate_series(1, 50000) g")
        cluster.stop()
        for name in ("pg_wal", "pg_xact"):
            move_out(cluster, name)
        postgres_dir(cluster.root / "disk-log")
        (cluster.root / "disk-log" / "postgresql.log").write_text("a server log\n")
        os.symlink(str(cluster.root / "disk-log"), str(cluster.pgdata / "log"))
        user = postgres_dir(cluster.root / "disk-user", 0o755)
        for name, content in USER_FILES.items():
            (user / name).parent.mkdir(exist_ok=True)
            (user / name).write_bytes(content)
        os.symlink(str(user), str(cluster.pgdata / "user_data"))
        cluster.start()
        cluster.execute("CHECKPOINT")
        yield cluster


def database_folder(cluster: PostgresCluster) -> str:
    return "base/%d" % cluster.scalar("SELECT oid FROM pg_database WHERE datname = 'postgres'")


def unlogged_files(cluster: PostgresCluster) -> Dict[str, str]:
    """The unlogged table's main fork and init fork, relative to PGDATA."""
    main = str(cluster.scalar("SELECT pg_relation_filepath('testbed_unlogged')"))
    return {"main": main, "init": main + "_init"}


def plant_stale_files(cluster: PostgresCluster) -> List[Path]:
    """Write STALE_FILES into the running cluster; returns what to remove afterwards, deepest first."""
    planted = []
    for name, content in STALE_FILES.items():
        path = cluster.pgdata / name.format(db=database_folder(cluster))
        if not path.parent.exists():
            postgres_dir(path.parent)
            planted.append(path.parent)
        path.write_text(content)
        chown_postgres(path)
        planted.append(path)
    return planted[::-1]


def remove(paths: List[Path]) -> None:
    for path in paths:
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()


def forks(names: List[str], main: str) -> List[str]:
    """The names among `names` that are files of the relation whose main fork is `main`."""
    return sorted(name for name in names if name == main or name.startswith((main + "_", main + ".")))


def archive_members(moto: MotoServer, target: StorageTarget, backup_id: str) -> Dict[str, List[str]]:
    """Archive object name -> its member names, for every archive of a backup."""
    prefix = target.backup_prefix(backup_id)
    members = {}
    for key in moto.list_keys(target.bucket, prefix):
        if ".tar" in key:
            with tarfile.open(fileobj=io.BytesIO(moto.get_object(target.bucket, key)), mode="r:*") as archive:
                members[key[len(prefix):]] = archive.getnames()
    return members


def take_backup(cluster: PostgresCluster, target: StorageTarget) -> str:
    # 1 MB archives: PGDATA spreads over many, the last one written by either builder.
    run = run_module("base_backup", backup_module_args(cluster, target, jobs=2, max_archive_size="1MB"))
    assert run.rc == 0 and run.result["status"] == "DONE", run.result
    return run.result["backup_id"]


def test_stale_and_temporary_files_stay_out_of_a_backup_that_pg_verifybackup_accepts(moto, bucket, cluster):
    planted = plant_stale_files(cluster)
    try:
        backup_id = take_backup(cluster, bucket)
    finally:
        remove(planted)
    members = archive_members(moto, bucket, backup_id)
    data = {name: names for name, names in members.items() if name.startswith("data")}
    assert len(data) >= 3, sorted(members)
    every = [name for names in members.values() for name in names]
    # The backup's own backup_label and backup_manifest, once each, in the same (last) archive.
    [last] = [name for name, names in data.items() if "backup_manifest" in names]
    assert every.count("backup_label") == 1 and every.count("backup_manifest") == 1
    assert data[last][-2:] == ["backup_label", "backup_manifest"]
    assert not [name for name in every if name.startswith("./backup_") or name.rsplit("/", 1)[-1] in NEVER_STORED]
    assert not [name for name in every if "pg_internal.init" in name or "pgsql_tmp" in name]
    unlogged = unlogged_files(cluster)
    assert forks(every, unlogged["main"]) == [unlogged["init"]]

    cluster.switch_wal_and_wait()
    expected = cluster.fingerprint()
    seen = {}

    def check_files(pgdata: Path) -> None:
        seen["verify"] = verify_backup(pgdata)
        seen["label"] = (pgdata / "backup_label").read_text()
        seen["left"] = sorted(str(path.relative_to(pgdata)) for path in pgdata.rglob("*")
                              if path.name in NEVER_STORED or "pg_internal.init" in path.name)
        seen["unlogged"] = forks(os.listdir((pgdata / unlogged["main"]).parent), os.path.basename(unlogged["main"]))

    restored = restore_and_verify(bucket, backup_id, tablespaces=[TABLESPACE], before_start=check_files)
    assert seen["verify"].returncode == 0, seen["verify"].stdout + seen["verify"].stderr
    assert "backup successfully verified" in seen["verify"].stdout
    assert "LABEL: Barman backup cloud %s\n" % backup_id in seen["label"]
    assert seen["left"] == []
    assert seen["unlogged"] == [os.path.basename(unlogged["init"])]
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected


def test_symlinked_directories_come_back_as_directories_with_their_contents(moto, bucket, cluster):
    backup_id = take_backup(cluster, bucket)
    every = [name for names in archive_members(moto, bucket, backup_id).values() for name in names]
    assert {"pg_wal", "pg_xact", "log", "user_data", "user_data/notes.txt", "user_data/sub/deeper.bin"} <= set(every)
    assert not [name for name in every if name.startswith(("pg_wal/", "log/"))]
    xact = sorted(name for name in every if name.startswith("pg_xact/"))
    assert xact == sorted("pg_xact/" + name for name in os.listdir(cluster.pgdata / "pg_xact")), xact

    cluster.switch_wal_and_wait()
    expected = cluster.fingerprint()
    seen = {}

    def check_files(pgdata: Path) -> None:
        seen["verify"] = verify_backup(pgdata)
        seen["kinds"] = {name: (os.path.islink(pgdata / name), os.path.isdir(pgdata / name))
                         for name in ("pg_wal", "pg_xact", "log", "user_data")}
        seen["log"] = os.listdir(pgdata / "log")
        seen["user"] = {name: (pgdata / "user_data" / name).read_bytes() for name in USER_FILES}

    restored = restore_and_verify(bucket, backup_id, tablespaces=[TABLESPACE], before_start=check_files)
    assert seen["verify"].returncode == 0, seen["verify"].stdout + seen["verify"].stderr
    assert seen["kinds"] == dict.fromkeys(("pg_wal", "pg_xact", "log", "user_data"), (False, True))
    assert seen["log"] == []
    assert seen["user"] == USER_FILES
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected


@pytest.fixture
def pg14_bucket(moto: MotoServer) -> Iterator[StorageTarget]:
    target = moto.target(moto.create_bucket(), "pg/exclusions-14", "exclusions14")
    yield target
    moto.delete_bucket(target.bucket)


def test_contents_of_a_stats_temp_directory_inside_pgdata_stay_out_before_15(moto, pg14_bucket):
    """stats_temp_directory (gone in 15) may point anywhere; inside PGDATA, its contents are left out."""
    with PostgresCluster("stats14", tablespace=None, archive_target=pg14_bucket, pg_bin=pg_bin_of(14)) as cluster:
        stats = postgres_dir(cluster.pgdata / "pg_stat_custom")
        cluster.execute("ALTER SYSTEM SET stats_temp_directory = 'pg_stat_custom'")
        cluster.execute("SELECT pg_reload_conf()")
        wait_for(lambda: cluster.scalar("SHOW stats_temp_directory") == "pg_stat_custom", 30, what="the setting")
        (stats / "db_0.stat").write_text("statistics the collector rewrites\n")
        cluster.load_data(1)
        run = run_module("base_backup", backup_module_args(cluster, pg14_bucket, jobs=2))
        assert run.rc == 0 and run.result["status"] == "DONE", run.result
        backup_id = run.result["backup_id"]
        every = [name for names in archive_members(moto, pg14_bucket, backup_id).values() for name in names]
        assert "pg_stat_custom" in every
        assert not [name for name in every if name.startswith("pg_stat_custom/")]
        cluster.switch_wal_and_wait()
        expected = cluster.fingerprint()
        seen = {}

        def check_files(pgdata: Path) -> None:
            seen["verify"] = verify_backup(pgdata)
            seen["stats"] = os.listdir(pgdata / "pg_stat_custom")

        restored = restore_and_verify(pg14_bucket, backup_id, pg_bin=pg_bin_of(14), before_start=check_files)
    assert seen["verify"].returncode == 0, seen["verify"].stdout + seen["verify"].stderr
    assert seen["stats"] == []
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected
