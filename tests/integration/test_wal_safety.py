# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Never DONE unless restorable (issue 18): WAL archiving, and runs that overlap.

- A primary that archives no WAL is refused before anything is written; one whose
  archive_command fails gives a FAILED backup within wal_archive_timeout, with the archiver's
  last failure in the message, instead of a wait without end in pg_backup_stop.
- Two runs of one server_name started together never share a backup folder: on one
  PostgreSQL server the second is refused; on two servers (two hosts with one server_name)
  each reserves its own id.
- The conditional create that reserves an id, on each store emulator.

Small clusters of their own (no tablespace, no pgbench data), so that the session's source
cluster keeps archiving as the other tests expect.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from fault_proxy import FaultProxy, FaultRule
from testbed import (
    BACKUP_ID_PATTERN,
    COLLECTION_ROOT,
    VENV_PYTHON,
    MotoServer,
    PostgresCluster,
    StorageTarget,
    backup_list,
    backup_module_args,
    module_result,
    remove_tree,
    run,
    run_module,
    started_module,
    tool_env,
    wait_for,
)

SERVER = "walsafety"


@pytest.fixture
def bucket(moto: MotoServer) -> Iterator[StorageTarget]:
    target = moto.target(moto.create_bucket(), "pg/wal-safety", SERVER)
    yield target
    moto.delete_bucket(target.bucket)


@pytest.fixture
def archiving_cluster(bucket: StorageTarget) -> Iterator[PostgresCluster]:
    """A small primary that archives its WAL next to the backups, with barman-cloud-wal-archive."""
    with PostgresCluster("walsafety", tablespace=None, archive_target=bucket) as cluster:
        yield cluster


def statuses(target: StorageTarget) -> Dict[str, str]:
    return {backup["backup_id"]: backup["status"] for backup in backup_list(target)}


def base_keys(moto: MotoServer, target: StorageTarget) -> List[str]:
    return moto.list_keys(target.bucket, target.server_prefix + "base/")


# --- WAL archiving -----------------------------------------------------------------------------------


def test_primary_without_wal_archiving_is_refused_before_anything_is_written(moto, bucket):
    with PostgresCluster("nowal", tablespace=None) as cluster:
        assert cluster.scalar("SHOW archive_mode") == "off"
        run = run_module("base_backup", backup_module_args(cluster, bucket))
        assert run.rc != 0 and run.result.get("failed") is True, run.stdout
        message = run.result["msg"]
        assert "archive_mode=off" in message and "require_wal_archiving: false" in message, message
        assert "Traceback" not in run.stdout + run.stderr
        assert base_keys(moto, bucket) == [] and moto.multipart_uploads(bucket.bucket) == []
        assert cluster.sessions_left() == []

        # The opt-out, for WAL shipped another way: the backup is taken, without waiting.
        run = run_module("base_backup", backup_module_args(cluster, bucket, require_wal_archiving=False))
        assert run.rc == 0 and run.result["status"] == "DONE", run.stdout
        assert statuses(bucket) == {run.result["backup_id"]: "DONE"}


def fail_archiving(cluster: PostgresCluster) -> None:
    """archive_command = false, taken up by the archiver (a switched WAL file fails to archive)."""
    cluster.execute("ALTER SYSTEM SET archive_command = 'false'")
    cluster.execute("SELECT pg_reload_conf()")
    before = int(cluster.scalar("SELECT failed_count FROM pg_stat_archiver"))
    cluster.execute("SELECT pg_switch_wal()")
    wait_for(lambda: int(cluster.scalar("SELECT failed_count FROM pg_stat_archiver")) > before, 60,
             what="the archiver to fail with archive_command = false")


def test_failing_archive_command_fails_the_backup_within_wal_archive_timeout(moto, bucket, archiving_cluster):
    fail_archiving(archiving_cluster)
    started = time.monotonic()
    # Before the fix, pg_backup_stop waited for the archiver without end: the run timed out here.
    run = run_module("base_backup", backup_module_args(archiving_cluster, bucket, wal_archive_timeout=5),
                     timeout=120)
    elapsed = time.monotonic() - started
    assert run.rc != 0 and run.result.get("failed") is True, run.stdout
    message = run.result["msg"]
    assert "was not archived within wal_archive_timeout (5 s)" in message, message
    assert "the archiver last failed to archive" in message, message
    assert elapsed < 60, elapsed
    backup_id = run.result["backup_id"]
    assert statuses(bucket) == {backup_id: "FAILED"}
    info = moto.get_object(bucket.bucket, bucket.backup_prefix(backup_id) + "backup.info").decode()
    assert "status=FAILED" in info and "archiver last failed" in info
    # The server left backup mode: a new backup can start at once (and the session is gone).
    assert archiving_cluster.sessions_left() == []
    with contextlib.closing(archiving_cluster.connect()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_backup_start('probe', true)")
        cursor.execute("SELECT pg_backup_stop(false)")


# --- runs that overlap -------------------------------------------------------------------------------


def start_together(args: List[Dict[str, Any]]) -> List[Any]:
    """Start one base_backup module per args at once; their ModuleRun results, in order."""
    with started_module("base_backup", args[0]) as first, started_module("base_backup", args[1]) as second:
        return [module_result("base_backup", first), module_result("base_backup", second)]


def assert_no_shared_folder(moto: MotoServer, target: StorageTarget, runs: List[Any]) -> List[str]:
    """Each DONE run has a folder of its own and a refused run wrote nothing; returns the DONE ids."""
    done = [each.result["backup_id"] for each in runs if each.rc == 0]
    refused = [each for each in runs if each.rc != 0]
    assert done and len(set(done)) == len(done), [each.result for each in runs]
    for each in refused:
        assert "another backup of server_name %r is running on this PostgreSQL server" % target.server_name \
            in each.result["msg"], each.stdout
        assert not each.result.get("backup_id"), each.result
    assert statuses(target) == dict.fromkeys(done, "DONE")
    folders = {key[len(target.server_prefix + "base/"):].split("/", 1)[0] for key in base_keys(moto, target)}
    assert folders == set(done)
    for backup_id in done:
        assert BACKUP_ID_PATTERN.match(backup_id)
    return done


def test_two_runs_on_one_server_never_share_a_folder(moto, bucket, archiving_cluster):
    args = backup_module_args(archiving_cluster, bucket)
    runs = start_together([args, args])
    done = assert_no_shared_folder(moto, bucket, runs)
    assert len(done) in (1, 2)


def test_two_hosts_with_one_server_name_get_a_backup_each(moto, bucket):
    """Two servers (as two hosts), each archiving its WAL elsewhere, back up under one server_name."""
    with PostgresCluster("hostone", tablespace=None, archive_target=bucket.with_server("hostone-wal")) as one, \
            PostgresCluster("hosttwo", tablespace=None, archive_target=bucket.with_server("hosttwo-wal")) as two:
        runs = start_together([backup_module_args(one, bucket), backup_module_args(two, bucket)])
        assert [run.rc for run in runs] == [0, 0], [run.stdout for run in runs]
        assert len(assert_no_shared_folder(moto, bucket, runs)) == 2


def test_id_taken_by_another_host_at_the_last_moment_is_not_shared(moto, bucket, archiving_cluster):
    """Another host writes this id's backup.info between the run's choice of the id and its first
    write of it (through the proxy, right before that write reaches moto): the run takes the next
    second, and the other host's backup.info stays as it wrote it."""
    written = []

    def other_host_first(method: str, target: str) -> None:
        key = target.split("?", 1)[0].split("/", 2)[2]
        written.append(key)
        moto.client().put_object(Bucket=bucket.bucket, Key=key, Body=b"status=STARTED\nerror=other host\n")

    with FaultProxy(moto.port) as proxy:
        rule = proxy.add(FaultRule("PUT", r"/base/\d{8}T\d{6}/backup\.info", "hook", hook=other_host_first))
        run = run_module("base_backup", backup_module_args(archiving_cluster, bucket, endpoint_url=proxy.endpoint_url))
    assert rule.injected == 1
    assert run.rc == 0 and run.result["status"] == "DONE", run.stdout
    (other_key,) = written
    other_id = other_key.split("/")[-2]
    assert run.result["backup_id"] > other_id
    assert moto.get_object(bucket.bucket, other_key) == b"status=STARTED\nerror=other host\n"
    assert moto.list_keys(bucket.bucket, bucket.backup_prefix(other_id)) == [other_key]
    assert statuses(bucket) == {other_id: "STARTED", run.result["backup_id"]: "DONE"}


# --- the conditional create that reserves a backup id --------------------------------------------------


# Run in a process of its own, with the collection of this checkout first on the path (as
# started_module runs a module): the engine's store, asked for a conditional create.
CREATE_PROBE = """
import json, sys
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store
params, key = json.loads(sys.argv[1]), sys.argv[2]
store = open_store(StorageConfig(**params))
mine, theirs = b"status=STARTED\\nerror=run one\\n", b"status=STARTED\\nerror=run two\\n"
print(json.dumps({
    "first": store.put_object_if_absent(key, mine),
    "second": store.put_object_if_absent(key, theirs),
    "kept": (store.get_object(key) or b"").decode(),
    # whether the emulator honours the condition itself
    "honoured": store.create_object(key + ".probe", b"a") and not store.create_object(key + ".probe", b"b"),
}))
"""


def conditional_create(target: StorageTarget, key: str) -> Dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pgcloud-probe-", dir="/tmp"))
    try:
        collection = work / "ansible_collections" / "pgcloud" / "backup"
        collection.parent.mkdir(parents=True)
        collection.symlink_to(COLLECTION_ROOT)
        params = dict(target.module_params())
        if target.cloud_provider == "aws-s3":
            params.update(aws_access_key="testing", aws_secret_key="testing")
        env = dict(tool_env(), PYTHONPATH=str(work), **target.module_env())
        result = run([str(VENV_PYTHON), "-c", CREATE_PROBE, json.dumps(params), key], env=env, timeout=120)
        return dict(json.loads(result.stdout))
    finally:
        remove_tree(work)


@pytest.fixture(params=["aws-s3", "azure-blob-storage", "google-cloud-storage"])
def any_store(request: pytest.FixtureRequest, moto: MotoServer) -> Iterator[StorageTarget]:
    server = moto if request.param == "aws-s3" else request.getfixturevalue(
        "azurite" if request.param == "azure-blob-storage" else "gcs")
    target = server.target(server.create_bucket(), "pg/reserve", SERVER)
    yield target
    server.delete_bucket(target.bucket)


def test_conditional_create_on_each_store(any_store):
    probe = conditional_create(any_store, "pg/reserve/%s/base/20261205T000000/backup.info" % SERVER)
    assert (probe["first"], probe["second"]) == (True, False), probe
    assert probe["kept"] == "status=STARTED\nerror=run one\n", probe
    # The GCS emulator ignores if_generation_match=0 (real Cloud Storage honours it): there
    # put_object_if_absent's look before the write is what refused the second run.
    assert probe["honoured"] is (any_store.cloud_provider != "google-cloud-storage"), probe


# --- DONE only with what was written, whole (item 4) -------------------------------------------------------

# What each case damages: a part of a multipart upload, or the single PUT of data.tar (parts so
# large that the archive of the small cluster fits in one).
DAMAGED_REQUESTS = {
    "google-cloud-storage": r"[?&]partNumber=\d+.*uploadId=|[?&]uploadId=.*partNumber=\d+",
    "azure-blob-storage": r"[?&]comp=block(&|$)",
    "aws-s3": r"/base/\d{8}T\d{6}/data\.tar$",
}
SIZES = {"aws-s3": {"min_chunk_size": "64MB", "jobs": 1},
         "azure-blob-storage": {"max_archive_size": "40MB", "min_chunk_size": "5MB", "jobs": 1},
         "google-cloud-storage": {"max_archive_size": "40MB", "min_chunk_size": "5MB", "jobs": 1}}


def through_proxy(target: StorageTarget, proxy: FaultProxy) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The module's storage parameters and environment that reach target's store through proxy."""
    params = dict(target.module_params())
    env = dict(target.module_env())
    if target.cloud_provider == "aws-s3":
        params["endpoint_url"] = proxy.endpoint_url
        # No CRC32 from botocore: the integrity of each part rests on Content-MD5.
        env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
    elif target.cloud_provider == "azure-blob-storage":
        store_url = target.endpoint_url.rsplit("/", 1)[0]
        params["destination_url"] = target.url.replace(store_url, proxy.endpoint_url)
        params["azure_storage_connection_string"] = params["azure_storage_connection_string"].replace(
            store_url, proxy.endpoint_url)
    else:
        env["STORAGE_EMULATOR_HOST"] = proxy.endpoint_url
    return params, env


# moto checks neither Content-MD5 nor the CRC32 of a part (S3 checks both; test_wire.py shows
# that every S3 part and object carries one), so S3 gets the store that acknowledges a short
# object. On Azure and GCS a short part is refused or caught (the signature covers the length;
# x-goog-hash is compared) and sent again, so they get the damaged part.
DAMAGE_CASES = [("aws-s3", "truncate"), ("azure-blob-storage", "corrupt"), ("google-cloud-storage", "corrupt")]


@pytest.mark.parametrize("provider, action", DAMAGE_CASES)
def test_object_damaged_on_the_way_gives_failed_never_done(request, moto, bucket, archiving_cluster,
                                                           provider, action):
    server = moto if provider == "aws-s3" else request.getfixturevalue(
        "azurite" if provider == "azure-blob-storage" else "gcs")
    target = server.target(server.create_bucket(), "pg/damaged", SERVER)
    try:
        with FaultProxy(server.port) as proxy:
            rule = proxy.add(FaultRule("PUT", DAMAGED_REQUESTS[provider], action))
            params, env = through_proxy(target, proxy)
            args = dict(params, immediate_checkpoint=True, **archiving_cluster.connection_params, **SIZES[provider])
            run = run_module("base_backup", args, env=env)
        assert rule.injected == 1, proxy.requests[:10]
        assert run.rc != 0 and run.result.get("failed") is True, run.stdout
        message = run.result["msg"]
        if action == "truncate":
            assert "the store does not hold what it acknowledged" in message, message
            assert re.search(r"/data\.tar holds \d+ bytes where \d+ were written", message), message
        else:
            # Azurite: "Md5Mismatch"; the GCS emulator: 400 (BadDigest) on the part's PUT.
            assert "md5" in message.lower() or "400 PUT" in message, message
        assert statuses(target) == {run.result["backup_id"]: "FAILED"}
        assert server.open_uploads(target.bucket) == []
        assert archiving_cluster.sessions_left() == []
    finally:
        server.delete_bucket(target.bucket)
