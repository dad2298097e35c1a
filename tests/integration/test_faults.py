# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults during a base backup: what is left in the store and in the server afterwards.

Whatever goes wrong, a backup is either complete and restorable, or recorded as not done
(FAILED, or STARTED when the process had no chance to record anything): never DONE with a
part missing. The server is never left with the backup's session, and a failed run leaves
no multipart upload open. The faults:

- the module process killed (SIGKILL) while a multipart upload is open, after an archive
  is complete, and while the final backup.info is being written;
- a fault-injecting proxy between the module and the store (fault_proxy.py) resetting
  connections, stalling and answering 500/503: transient faults are retried and the backup
  restores; permanent ones fail it clearly;
- files that shrink, vanish or cannot be read while the backup runs, a tablespace whose
  directory is gone. (The database session dropped mid-backup is in test_base_backup.py.)
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from fault_proxy import FaultProxy, FaultRule
from testbed import (
    BACKUP_ID_PATTERN,
    POSTGRES_USER,
    ModuleRun,
    MotoServer,
    PostgresCluster,
    StorageTarget,
    backup_list,
    backup_module_args,
    chown_postgres,
    module_result,
    postgres_dir,
    remove_tree,
    restore_and_verify,
    run_module,
    scratch_dir,
    started_module,
    wait_for,
)

TABLESPACE = "testbed_space"
# Small archives and parts, so that a backup of the test cluster has several of each.
SMALL_PARTS = {"max_archive_size": "40MB", "min_chunk_size": "5MB"}
UPLOAD_PART = r"[?&]partNumber=\d+.*uploadId=|[?&]uploadId=.*partNumber=\d+"
CREATE_UPLOAD = r"\?uploads"
COMPLETE_UPLOAD = r"\?uploadId="
BACKUP_INFO = r"/base/\d{8}T\d{6}/backup\.info"
BUCKET_CHECK = r"^/[^/?]+/?$"


def statuses(storage: StorageTarget) -> Dict[str, str]:
    """The backups as barman-cloud-backup-list sees them: id -> status."""
    return {backup["backup_id"]: backup["status"] for backup in backup_list(storage)}


def info_statuses(storage: StorageTarget) -> Dict[str, str]:
    """The backups as the backup_info module lists them."""
    run = run_module("backup_info", storage.module_params())
    assert run.rc == 0, run.stdout
    return {backup["backup_id"]: backup["status"] for backup in run.result["backups"]}


def assert_failed_clearly(run: ModuleRun, *words: str) -> str:
    """The module failed with a message holding `words` and no traceback; returns the backup id."""
    assert run.rc != 0 and run.result.get("failed") is True, run.stdout
    message = run.result["msg"]
    for word in words:
        assert word in message, message
    assert "Traceback" not in run.stdout + run.stderr and "exception" not in run.result, run.stdout
    backup_id = run.result.get("backup_id")
    assert backup_id and BACKUP_ID_PATTERN.match(backup_id), run.result
    return backup_id


def assert_nothing_open(moto: MotoServer, storage: StorageTarget, cluster: PostgresCluster) -> None:
    assert moto.multipart_uploads(storage.bucket) == []
    assert cluster.sessions_left() == []


# --- the module process killed ---------------------------------------------------------------------


def open_upload(moto: MotoServer, storage: StorageTarget) -> Optional[str]:
    uploads = moto.multipart_uploads(storage.bucket)
    return uploads[0]["Key"] if uploads else None


def complete_archive(moto: MotoServer, storage: StorageTarget) -> Optional[str]:
    """The first archive object written while another upload is still open."""
    uploading = moto.multipart_uploads(storage.bucket)
    keys = [key for key in moto.list_keys(storage.bucket, storage.server_prefix + "base/") if ".tar" in key]
    return keys[0] if keys and uploading else None


KILL_POINTS = {
    # A multipart upload open: its parts are in the store, the object is not.
    "upload_open": open_upload,
    # One archive complete, the next one still uploading.
    "archive_complete": complete_archive,
}


def kill_when(process: subprocess.Popen, reached) -> Any:
    """SIGKILL the module as soon as `reached()` is true; returns what it returned."""
    point = wait_for(lambda: reached() or (process.poll() is not None and "exited"), timeout=120, interval=0.05,
                     what="the kill point")
    assert point != "exited", "the module finished before the kill point: %s" % (process.communicate(),)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return point


def assert_killed_backup_not_done(storage: StorageTarget, cluster: PostgresCluster) -> str:
    """The killed backup is listed STARTED by the reference tool and by backup_info; a new
    backup then runs at once and is DONE. Returns the killed backup's id."""
    killed = statuses(storage)
    assert list(killed.values()) == ["STARTED"], killed
    (backup_id,) = killed
    assert info_statuses(storage) == killed
    assert cluster.sessions_left() == []
    started = time.monotonic()
    again = run_module("base_backup", backup_module_args(cluster, storage))
    assert again.rc == 0, again.stdout
    assert time.monotonic() - started < 120
    assert statuses(storage) == {backup_id: "STARTED", again.result["backup_id"]: "DONE"}
    return backup_id


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_killed_during_the_upload(moto, source_cluster, storage, point):
    # Throttled, so that the kill point lasts long enough to be seen.
    params = backup_module_args(source_cluster, storage, jobs=1, max_bandwidth="16MB", **SMALL_PARTS)
    with started_module("base_backup", params) as process:
        reached = kill_when(process, lambda: KILL_POINTS[point](moto, storage))
    assert reached.startswith(storage.server_prefix + "base/")
    assert_killed_backup_not_done(storage, source_cluster)


def test_killed_while_writing_done(moto, source_cluster, storage):
    """Every archive is complete and the server's backup stopped; the write of the DONE
    backup.info hangs (a stalled store) when the process is killed."""
    with FaultProxy(moto.port) as proxy:
        # skip=2: the reservation of the backup id, then STARTED; DONE is the third write.
        stall = proxy.add(FaultRule("PUT", BACKUP_INFO, "stall", seconds=120, skip=2))
        params = backup_module_args(source_cluster, storage, endpoint_url=proxy.endpoint_url, read_timeout=300)
        with started_module("base_backup", params) as process:
            kill_when(process, stall.engaged.is_set)
    assert moto.multipart_uploads(storage.bucket) == []
    assert_killed_backup_not_done(storage, source_cluster)


# --- the store misbehaving ------------------------------------------------------------------------


def test_transient_store_faults_are_retried_and_the_backup_restores(moto, source_cluster, storage):
    with FaultProxy(moto.port) as proxy:
        rules = [
            proxy.add(FaultRule("HEAD", BUCKET_CHECK, "reset")),
            proxy.add(FaultRule("POST", CREATE_UPLOAD, "status", status=503, times=2)),
            proxy.add(FaultRule("PUT", UPLOAD_PART, "reset", skip=1)),
            proxy.add(FaultRule("PUT", UPLOAD_PART, "status", status=500, skip=3)),
            proxy.add(FaultRule("POST", COMPLETE_UPLOAD, "status", status=500)),
            proxy.add(FaultRule("PUT", BACKUP_INFO, "stall", seconds=6, skip=2)),  # DONE (see above)
        ]
        params = backup_module_args(source_cluster, storage, endpoint_url=proxy.endpoint_url, read_timeout=3,
                                    **SMALL_PARTS)
        run = run_module("base_backup", params)
    assert run.rc == 0, run.stdout
    assert [(rule.action, rule.injected) for rule in rules] == \
        [("reset", 1), ("status", 2), ("reset", 1), ("status", 1), ("status", 1), ("stall", 1)]
    backup_id = run.result["backup_id"]
    assert statuses(storage) == {backup_id: "DONE"}
    stored = moto.list_objects(storage.bucket, storage.backup_prefix(backup_id))
    assert sorted(run.result["object_keys"]) == sorted(stored)
    assert moto.multipart_uploads(storage.bucket) == []
    source_cluster.switch_wal_and_wait()
    expected = source_cluster.fingerprint()
    restored = restore_and_verify(storage, backup_id, tablespaces=[TABLESPACE])
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected


# name: (the rule, made fresh for each run; words of the failure message)
PERMANENT_FAULTS = {
    "parts_refused": (lambda: FaultRule("PUT", UPLOAD_PART, "status", status=500, times=None),
                      ("upload part", "InternalError")),
    "uploads_throttled": (lambda: FaultRule("POST", CREATE_UPLOAD, "status", status=503, times=None),
                          ("start upload", "SlowDown")),
    "completion_reset": (lambda: FaultRule("POST", COMPLETE_UPLOAD, "reset", times=None), ("complete upload",)),
    "parts_stalled": (lambda: FaultRule("PUT", UPLOAD_PART, "stall", seconds=4, times=None), ("upload part",)),
}


@pytest.mark.parametrize("fault", sorted(PERMANENT_FAULTS))
def test_permanent_store_fault_fails_the_backup_as_failed(moto, source_cluster, storage, fault):
    new_rule, words = PERMANENT_FAULTS[fault]
    rule = new_rule()
    with FaultProxy(moto.port) as proxy:
        proxy.add(rule)
        params = backup_module_args(source_cluster, storage, endpoint_url=proxy.endpoint_url, read_timeout=1,
                                    **SMALL_PARTS)
        run = run_module("base_backup", params)
    backup_id = assert_failed_clearly(run, *words)
    # botocore's standard retry mode: five attempts before giving up.
    assert rule.injected >= 5
    assert statuses(storage) == {backup_id: "FAILED"}
    assert info_statuses(storage) == {backup_id: "FAILED"}
    assert_nothing_open(moto, storage, source_cluster)


def test_store_that_refuses_every_backup_info_write_leaves_the_backup_started(moto, source_cluster, storage):
    """Neither DONE nor FAILED can be recorded: the backup stays STARTED, never DONE."""
    with FaultProxy(moto.port) as proxy:
        rule = proxy.add(FaultRule("PUT", BACKUP_INFO, "reset", skip=2, times=None))  # DONE and FAILED
        run = run_module("base_backup", backup_module_args(source_cluster, storage, endpoint_url=proxy.endpoint_url))
    backup_id = assert_failed_clearly(run, "backup.info")
    assert rule.injected >= 10  # DONE, then FAILED, each tried five times
    assert statuses(storage) == {backup_id: "STARTED"}
    assert_nothing_open(moto, storage, source_cluster)


# --- files ---------------------------------------------------------------------------------------


def open_by(process: subprocess.Popen, path: Path) -> bool:
    """Whether `process` has `path` open (it is copying that file)."""
    fds = Path("/proc/%d/fd" % process.pid)
    try:
        return any(os.readlink(fds / fd) == os.path.realpath(path) for fd in os.listdir(fds))
    except OSError:
        return False


@pytest.fixture
def pgdata_files(source_cluster: PostgresCluster) -> Iterator[Path]:
    """PGDATA of the source; files the test puts there as pgcloud_fault_* are removed afterwards."""
    pgdata = Path(source_cluster.scalar("SHOW data_directory"))
    yield pgdata
    for path in pgdata.glob("pgcloud_fault_*"):
        path.unlink()


def archive_members(moto: MotoServer, storage: StorageTarget, keys: List[str]) -> Dict[str, bytes]:
    """name -> content of every file in the backup's data archives."""
    members: Dict[str, bytes] = {}
    for key in keys:
        if "/data" in key and key.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(moto.get_object(storage.bucket, key))) as archive:
                for member in archive.getmembers():
                    if member.isfile():
                        members[member.name] = archive.extractfile(member).read()
    return members


def test_files_that_shrink_or_vanish_during_the_backup(moto, source_cluster, storage, pgdata_files):
    """A file that shrinks is padded to the size it had when its copy began (and logged); one
    that vanishes after the walk listed it is left out; the backup is DONE."""
    shrinks, vanishes = pgdata_files / "pgcloud_fault_a_shrinks", pgdata_files / "pgcloud_fault_b_vanishes"
    shrinks.write_bytes(os.urandom(24 << 20))
    vanishes.write_bytes(b"soon gone")
    for path in (shrinks, vanishes):
        chown_postgres(path)
    original = shrinks.read_bytes()
    params = backup_module_args(source_cluster, storage, jobs=1, max_bandwidth="8MB", **SMALL_PARTS)
    with started_module("base_backup", params) as process:
        wait_for(lambda: open_by(process, shrinks), timeout=120, interval=0.01, what="the copy of %s" % shrinks)
        os.truncate(shrinks, 1 << 20)
        vanishes.unlink()
        run = module_result("base_backup", process)
    assert run.rc == 0, run.stdout
    # What was read before the truncation (a part buffer or so) is kept, the rest is zeros.
    shrank = [re.search(r"%s shrank from %d to (\d+) bytes" % (re.escape(str(shrinks)), 24 << 20), line)
              for line in run.result["log"]]
    (read,) = [int(match.group(1)) for match in shrank if match]
    assert 1 << 20 <= read < 24 << 20
    assert statuses(storage) == {run.result["backup_id"]: "DONE"}
    members = archive_members(moto, storage, run.result["object_keys"])
    assert members["./pgcloud_fault_a_shrinks"] == original[:read] + bytes((24 << 20) - read)
    assert "./pgcloud_fault_b_vanishes" not in members
    assert "./PG_VERSION" in members and "global/pg_control" in members


def test_unreadable_file_fails_the_backup_with_its_path(moto, source_cluster, storage, pgdata_files):
    """Run as the postgres OS user, as a host runs it: a root-only file in PGDATA."""
    unreadable = pgdata_files / "pgcloud_fault_root_only"
    unreadable.write_bytes(b"not for postgres")
    unreadable.chmod(0o600)
    run = run_module("base_backup", backup_module_args(source_cluster, storage), user=POSTGRES_USER)
    backup_id = assert_failed_clearly(run, "cannot read %s as OS user %s" % (unreadable, POSTGRES_USER),
                                      "fix its owner or mode")
    assert statuses(storage) == {backup_id: "FAILED"}
    assert_nothing_open(moto, storage, source_cluster)


@pytest.fixture
def extra_tablespace(source_cluster: PostgresCluster) -> Iterator[Path]:
    """A second tablespace of the source, dropped afterwards."""
    scratch = scratch_dir("fault-space")
    location = postgres_dir(scratch / "location")
    source_cluster.execute("CREATE TABLESPACE pgcloud_fault_space LOCATION '%s'" % location)
    try:
        yield location
    finally:
        source_cluster.execute("DROP TABLESPACE pgcloud_fault_space")
        remove_tree(scratch)


def test_missing_tablespace_directory_fails_before_anything_is_written(moto, source_cluster, storage,
                                                                       extra_tablespace):
    moved = extra_tablespace.with_name(extra_tablespace.name + "-moved")
    extra_tablespace.rename(moved)
    try:
        run = run_module("base_backup", backup_module_args(source_cluster, storage))
    finally:
        moved.rename(extra_tablespace)
    assert run.rc != 0 and run.result["failed"] is True
    assert "tablespace pgcloud_fault_space is at %s, which is not a directory" % extra_tablespace in run.result["msg"]
    assert moto.list_keys(storage.bucket, storage.server_prefix + "base/") == []
    assert_nothing_open(moto, storage, source_cluster)
