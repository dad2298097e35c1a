# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore module on real backups: this collection's and barman-cloud-backup's.

Each restore is run as the postgres user (as on a host), then PostgreSQL is started on the
copy with the module's recovery settings (only its port, socket and archive_mode are added),
replays the archived WAL fetched by barman-cloud-wal-restore, and must hold the source's data;
pg_amcheck checks it. Bad input must fail with the option named and nothing left behind.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from testbed import (
    PG_BIN,
    MotoServer,
    PostgresCluster,
    StorageTarget,
    amcheck_command,
    backup_module_args,
    barman_cloud_command,
    connector,
    data_fingerprint,
    free_port,
    pg_bin_of,
    postgres_dir,
    reference_backup,
    remove_tree,
    run,
    as_postgres,
    run_module,
    scratch_dir,
    server_major,
    tail,
    wait_for,
    TestBedError,
)

TABLESPACE = "testbed_space"
COMPRESSIONS = ("none", "gzip", "bzip2", "snappy", "lz4", "zstd")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder of postgres's for the restore's targets; the copy's server is stopped on exit."""
    root = scratch_dir("pgcloud-tests-restore-")
    yield root
    pgdata = root / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"]), check=False)
    remove_tree(root)


def wal_restore_command(target: StorageTarget) -> str:
    return shlex.join(barman_cloud_command("wal-restore", target, target.url, target.server_name, "%f", "%p"))


def restore_args(target: StorageTarget, pgdata: Path, **params: Any) -> Dict[str, Any]:
    args: Dict[str, Any] = dict(target.module_params(), target_directory=str(pgdata),
                                restore_command=wal_restore_command(target))
    args.update(params)
    return args


def restore(target: StorageTarget, pgdata: Path, check: bool = True, **params: Any) -> Dict[str, Any]:
    run_ = run_module("restore", restore_args(target, pgdata, **params), env=target.module_env(), user="postgres")
    if check:
        assert run_.rc == 0, run_.result
    return run_.result


def our_backup(cluster: PostgresCluster, target: StorageTarget, compression: str, **params: Any) -> str:
    if compression != "none":
        params["compression"] = compression
    run_ = run_module("base_backup", backup_module_args(cluster, target, jobs=2, **params), env=target.module_env())
    assert run_.rc == 0 and run_.result["status"] == "DONE", run_.result
    return str(run_.result["backup_id"])


def start_copy(pgdata: Path, pg_bin: Path = PG_BIN, timeout: float = 300, archiving_off: bool = True) -> int:
    """Start PostgreSQL on a restored copy with its own port and socket, and no archiving unless
    archiving_off is false (the restore's wal_archiving then decides)."""
    port = free_port()
    with open(pgdata / "postgresql.auto.conf", "a") as config:
        config.write("port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\n%s"
                     % (port, pgdata.parent, "archive_mode = off\n" if archiving_off else ""))
    log_file = pgdata.parent / "postgres.log"
    try:
        run(as_postgres([str(pg_bin / "pg_ctl"), "-D", str(pgdata), "-l", str(log_file), "-w", "-t", str(int(timeout)),
                         "start"]), timeout=timeout + 30)
    except TestBedError as error:
        raise TestBedError("the copy did not start: %s\n%s" % (error, tail(log_file, 60))) from None
    return port


def promoted_copy(pgdata: Path, pg_bin: Path = PG_BIN, timeout: float = 300, archiving_off: bool = True) -> Any:
    """Start the copy, wait until recovery ends; returns its connector."""
    port = start_copy(pgdata, pg_bin, timeout, archiving_off)
    connect = connector(str(pgdata.parent), port)

    def promoted() -> bool:
        with contextlib.closing(connect("postgres")) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            return not cursor.fetchone()[0]

    wait_for(promoted, timeout, interval=0.5, what="the recovery of the copy to end")
    amcheck = run(amcheck_command(pgdata.parent, port, server_major(pgdata)), check=False, timeout=timeout)
    assert amcheck.returncode == 0, amcheck.stdout + amcheck.stderr
    return connect


def assert_restored(source: PostgresCluster, target: StorageTarget, backup_id: str, workdir: Path,
                    expect_verified: Optional[bool]) -> Dict[str, Any]:
    source.switch_wal_and_wait()
    expected = source.fingerprint()
    pgdata = workdir / "pgdata"
    relocated = workdir / "space"
    result = restore(target, pgdata, backup_id=backup_id, tablespaces={TABLESPACE: str(relocated)}, jobs=2)
    assert result["changed"] is True and result["backup_id"] == backup_id
    assert result["files_written"] > 100 and result["bytes_written"] > result["bytes_downloaded"] / 40
    if expect_verified is not None:
        assert result["verified"] is expect_verified, result["verify_message"]
    oid = source.tablespace_oids()[TABLESPACE]
    assert result["tablespaces"] == [{"name": TABLESPACE, "oid": oid, "location": str(relocated)}]
    assert (pgdata / "pg_tblspc" / str(oid)).readlink() == relocated
    assert (pgdata / "recovery.signal").is_file() and not (pgdata / "standby.signal").exists()
    connect = promoted_copy(pgdata)
    assert data_fingerprint(connect) == expected
    with contextlib.closing(connect("postgres")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = %s", (TABLESPACE,))
        assert cursor.fetchone()[0] == str(relocated)
    return result


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_restores_our_backups(source_cluster, storage, workdir, compression):
    backup_id = our_backup(source_cluster, storage, compression)
    assert_restored(source_cluster, storage, backup_id, workdir, expect_verified=True)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_restores_barman_backups(source_cluster, storage, workdir, compression):
    backup_id = reference_backup(storage, source_cluster, compression=None if compression == "none" else compression)
    result = assert_restored(source_cluster, storage, backup_id, workdir, expect_verified=False)
    assert "no backup_manifest" in result["verify_message"]


def locked_moment(source: PostgresCluster) -> Tuple[str, int]:
    """A time at which no pgbench transaction commits, and the pgbench_history rows then.

    pgbench_history is locked while the rows are counted and the time read: every pgbench
    transaction inserts into it, so none commits in between, and the count is exactly that of
    the moment.
    """
    with contextlib.closing(source.connect()) as connection, connection.cursor() as cursor:
        connection.autocommit = True
        cursor.execute("BEGIN")
        cursor.execute("LOCK TABLE pgbench_history IN EXCLUSIVE MODE")
        cursor.execute("SELECT count(*) FROM pgbench_history")
        count = int(cursor.fetchone()[0])
        cursor.execute("SELECT clock_timestamp()::text")
        moment = str(cursor.fetchone()[0])
        time.sleep(0.3)
        cursor.execute("COMMIT")
    return moment, count


def test_point_in_time_restore_gives_the_rows_of_that_moment(source_cluster, storage, workdir):
    with source_cluster.pgbench_running(clients=2, rate=100):
        backup_id = our_backup(source_cluster, storage, "zstd")
        time.sleep(1.5)
        moment, rows_then = locked_moment(source_cluster)
        time.sleep(1.5)
    rows_at_end = int(source_cluster.scalar("SELECT count(*) FROM pgbench_history"))
    assert rows_at_end > rows_then
    later_id = our_backup(source_cluster, storage, "lz4")  # newer, but after the moment: not a candidate
    source_cluster.switch_wal_and_wait()
    pgdata = workdir / "pgdata"

    # A copy beside its source, so wal_archiving: false; the copy gets no archive_mode of the test's.
    result = restore(storage, pgdata, backup_id="auto", tablespaces={TABLESPACE: str(workdir / "space")},
                     recovery_target_time=moment, recovery_target_action="promote", wal_archiving=False)

    assert (result["backup_id"], later_id > backup_id) == (backup_id, True)
    assert result["recovery_settings"]["recovery_target_time"] == moment
    assert result["recovery_settings"]["recovery_target_action"] == "promote"
    assert result["recovery_settings"]["archive_mode"] == "off"
    assert source_cluster.scalar("SHOW archive_mode") == "on"
    connect = promoted_copy(pgdata, archiving_off=False)
    with contextlib.closing(connect("postgres")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pgbench_history")
        assert cursor.fetchone()[0] == rows_then
        # Promoted on a new timeline, it archives nothing into the source's folder of the store.
        cursor.execute("SELECT current_setting('archive_mode'), left(pg_walfile_name(pg_current_wal_lsn()), 8)")
        assert cursor.fetchone() == ("off", "00000002")


def test_standby_restore_keeps_replaying_the_archive(source_cluster, storage, workdir):
    backup_id = our_backup(source_cluster, storage, "lz4")
    source_cluster.execute("CREATE TABLE after_backup AS SELECT g FROM generate_series(1, 1234) g")
    source_cluster.switch_wal_and_wait()
    pgdata = workdir / "pgdata"

    result = restore(storage, pgdata, backup_id=backup_id, tablespaces={TABLESPACE: str(workdir / "space")},
                     standby=True)

    assert result["signal_file"] == "standby.signal"
    assert (pgdata / "standby.signal").is_file() and not (pgdata / "recovery.signal").exists()
    connect = connector(str(workdir), start_copy(pgdata))

    def replayed() -> bool:
        with contextlib.closing(connect("postgres")) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), to_regclass('after_backup') IS NOT NULL")
            in_recovery, has_table = cursor.fetchone()
            assert in_recovery
            return bool(has_table)

    wait_for(replayed, 120, interval=0.5, what="the standby to replay the table made after the backup")


@pytest.mark.parametrize("compression", ["zstd", "snappy"])
def test_restores_from_azurite_and_the_gcs_emulator(source_cluster, cloud, workdir, compression):
    """Our backup with zstd, barman's with snappy, on each of the two other stores."""
    if compression == "zstd":
        backup_id = our_backup(source_cluster, cloud.target, compression)
    else:
        backup_id = reference_backup(cloud.target, source_cluster, compression=compression)
    assert_restored(source_cluster, cloud.target, backup_id, workdir, expect_verified=compression == "zstd")


# --- refusals ----------------------------------------------------------------------------------


@dataclass
class RefusalBed:
    target: StorageTarget
    backup_id: str
    moto: MotoServer


@pytest.fixture(scope="module")
def refusal_bed(moto, source_cluster) -> Iterator[RefusalBed]:
    """One uncompressed backup of our own in a bucket of the module's own (no WAL needed)."""
    target = moto.target(moto.create_bucket(), "pg/refusals", "source")
    yield RefusalBed(target, our_backup(source_cluster, target, "none"), moto)
    moto.delete_bucket(target.bucket)


def nothing_written(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


def refused(bed: RefusalBed, pgdata: Path, parameter: Optional[str], words: str, **params: Any) -> Dict[str, Any]:
    params.setdefault("backup_id", bed.backup_id)
    result = restore(bed.target, pgdata, check=False, **params)
    assert result.get("failed") is True, result
    assert words in result["msg"], result["msg"]
    if parameter is not None:
        assert result.get("parameter") == parameter, result
    return result


def test_refuses_a_target_that_is_not_empty(refusal_bed, workdir):
    pgdata = postgres_dir(workdir / "pgdata")
    (pgdata / "keep-me").write_text("precious")
    refused(refusal_bed, pgdata, "target_directory", "is not empty")
    assert [path.name for path in pgdata.iterdir()] == ["keep-me"]


def test_refuses_an_unknown_backup(refusal_bed, workdir):
    refused(refusal_bed, workdir / "pgdata", None, "no backup '20000101T000000'", backup_id="20000101T000000")
    assert not (workdir / "pgdata").exists()


def test_refuses_a_target_time_before_the_backup(refusal_bed, workdir):
    refused(refusal_bed, workdir / "pgdata", "recovery_target_time", "is before the end of backup",
            recovery_target_time="2001-02-03 04:05:06+00")
    assert not (workdir / "pgdata").exists()


def test_refuses_a_folder_it_cannot_write(refusal_bed, workdir):
    locked = workdir / "locked"
    locked.mkdir(mode=0o755)  # root's: postgres may not write in it
    refused(refusal_bed, locked / "pgdata", "target_directory", "may write")
    assert not (locked / "pgdata").exists()


def test_refuses_an_unknown_tablespace(refusal_bed, workdir):
    refused(refusal_bed, workdir / "pgdata", "tablespaces", "does not hold", tablespaces={"nope": str(workdir / "x")})
    assert not (workdir / "pgdata").exists()


def test_refuses_a_tablespace_location_in_use(refusal_bed, source_cluster, workdir):
    """Without a mapping, the tablespace goes back to its recorded location: the source's own."""
    refused(refusal_bed, workdir / "pgdata", "tablespaces", "is not empty")
    assert not (workdir / "pgdata").exists()
    assert any(source_cluster.tablespace_dir.iterdir())


@pytest.mark.parametrize("parameter, value, words", [
    ("recovery_target_name", "before-upgrade\nrecovery_target_action = 'promote'", "U+000A"),
    ("restore_command", "cp /archive/%f %p\r", "U+000D"),
    ("recovery_target_name", "r" * 64, "64 bytes long"),
], ids=["name-line-break", "command-carriage-return", "name-too-long"])
def test_refuses_settings_postgresql_would_not_read(refusal_bed, workdir, parameter, value, words):
    """Each would end its line in postgresql.auto.conf, or be refused by the server at start-up,
    after the whole restore."""
    refused(refusal_bed, workdir / "pgdata", parameter, words, **{parameter: value})
    assert not (workdir / "pgdata").exists()


def test_refuses_a_backup_that_is_not_done(refusal_bed, workdir):
    bed = refusal_bed
    client = bed.moto.client()
    info = bed.moto.get_object(bed.target.bucket, bed.target.backup_prefix(bed.backup_id) + "backup.info")
    failed_id = "20000101T000001"
    client.put_object(Bucket=bed.target.bucket, Key=bed.target.backup_prefix(failed_id) + "backup.info",
                      Body=info.replace(b"status=DONE", b"status=FAILED"))
    refused(bed, workdir / "pgdata", "backup_id", "is FAILED, not DONE", backup_id=failed_id)
    assert not (workdir / "pgdata").exists()


def test_a_damaged_archive_fails_and_leaves_nothing_behind(refusal_bed, workdir):
    bed = refusal_bed
    client = bed.moto.client()
    damaged_id = "20000101T000002"
    source_prefix, prefix = bed.target.backup_prefix(bed.backup_id), bed.target.backup_prefix(damaged_id)
    for key, size in bed.moto.list_objects(bed.target.bucket, source_prefix).items():
        body = bed.moto.get_object(bed.target.bucket, key)
        if key.endswith("/data.tar"):
            body = body[:size // 2]  # cut in the middle of a member
        client.put_object(Bucket=bed.target.bucket, Key=prefix + key[len(source_prefix):], Body=body)
    pgdata = postgres_dir(workdir / "pgdata")  # exists, empty: must be left so
    space = workdir / "space"  # absent: must not be created

    result = refused(bed, pgdata, None, "not a whole tar archive", backup_id=damaged_id,
                     tablespaces={TABLESPACE: str(space)})

    assert "has been removed" in result["msg"] or "damaged" in result["msg"]
    assert pgdata.is_dir() and nothing_written(pgdata)
    assert not space.exists()


def test_check_mode_reports_the_plan_and_writes_nothing(refusal_bed, workdir):
    bed = refusal_bed
    args = restore_args(bed.target, workdir / "pgdata", backup_id="latest", _ansible_check_mode=True,
                        tablespaces={TABLESPACE: str(workdir / "space")})
    del args["restore_command"]
    run_ = run_module("restore", args, user="postgres")

    assert run_.rc == 0, run_.result
    result = run_.result
    assert result["changed"] is True and result["files_written"] == 0
    assert result["backup_id"] == bed.backup_id and "would restore" in result["msg"]
    assert result["archives"] and all(item["key"].startswith(bed.target.backup_prefix(bed.backup_id))
                                      for item in result["archives"])
    command = result["recovery_settings"]["restore_command"]
    assert command.endswith("barman-cloud-wal-restore --cloud-provider aws-s3 --endpoint-url %s --read-timeout 60 "
                            "%s source %%f %%p" % (bed.target.endpoint_url, bed.target.url)), command
    assert not (workdir / "pgdata").exists() and not (workdir / "space").exists()


# --- PostgreSQL majors -------------------------------------------------------------------------

MAJORS = (13, 14, 15, 16, 17, 18)


@pytest.mark.parametrize("major", MAJORS, ids=["pg%d" % major for major in MAJORS])
def test_each_major_restores(moto, workdir, major):
    target = moto.target(moto.create_bucket(), "pg/restore-%d" % major, "versions")
    try:
        with PostgresCluster("pg%d" % major, tablespace=TABLESPACE, archive_target=target,
                             pg_bin=pg_bin_of(major)) as cluster:
            cluster.load_data(1)
            with cluster.pgbench_running(clients=2, rate=100):
                backup_id = our_backup(cluster, target, "lz4")
            cluster.switch_wal_and_wait()
            expected = cluster.fingerprint()
            pgdata = workdir / "pgdata"
            result = restore(target, pgdata, backup_id=backup_id, tablespaces={TABLESPACE: str(workdir / "space")})
        assert result["verified"] is True, result["verify_message"]
        assert server_major(pgdata) == major
        assert data_fingerprint(promoted_copy(pgdata, pg_bin_of(major))) == expected
    finally:
        if (workdir / "pgdata" / "postmaster.pid").exists():
            run(as_postgres([str(pg_bin_of(major) / "pg_ctl"), "-D", str(workdir / "pgdata"), "-m", "immediate",
                             "stop"]), check=False)
        moto.delete_bucket(target.bucket)
