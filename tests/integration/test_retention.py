# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keeps and retention on the store emulators, judged by barman's own tools.

backup_keep and barman-cloud-backup-keep must see and change each other's keeps; backup_info
must check a kept backup as whole. backup_delete must remove, from a copy of a store, exactly
the objects barman-cloud-backup-delete removes from another copy of it (backups and WAL,
compared key by key), leave nothing that barman's dry run would still delete, and never leave
a DONE backup that does not restore when a store fault interrupts it.

The backups are real (one by barman-cloud-backup, the others by base_backup, WAL archived by
barman-cloud-wal-archive); older ones are copies of the first with an earlier id, and the end
times the policies read are rewritten in backup.info, as if they had been taken days ago.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

import pytest

from fault_proxy import FaultProxy, FaultRule
from local_stores import AzuriteServer
from testbed import (
    COLLECTION_ROOT,
    MotoServer,
    PostgresCluster,
    StorageTarget,
    backup_list,
    backup_module_args,
    barman_cloud,
    reference_backup,
    restore_and_verify,
    run_module,
)

TABLESPACE = "testbed_space"
ID_FORMAT = "%Y%m%dT%H%M%S"


# --- the stores, whichever the server -------------------------------------------------------------


def put_object(server: Any, bucket: str, key: str, data: bytes) -> None:
    if isinstance(server, MotoServer):
        server.client().put_object(Bucket=bucket, Key=key, Body=data)
    elif isinstance(server, AzuriteServer):
        server.client().get_blob_client(bucket, key).upload_blob(data, overwrite=True)
    else:
        server.client().bucket(bucket).blob(key).upload_from_string(data)


def copy_objects(server: Any, source: str, destination: str, keys: List[str]) -> None:
    for key in keys:
        if isinstance(server, MotoServer):
            server.client().copy_object(Bucket=destination, Key=key, CopySource={"Bucket": source, "Key": key})
        else:
            put_object(server, destination, key, server.get_object(source, key))


def store_copy(server: Any, target: StorageTarget, keys: List[str]) -> StorageTarget:
    """A new bucket holding these objects of target's bucket: a frozen copy (no WAL arrives there)."""
    bucket = server.create_bucket()
    copy_objects(server, target.bucket, bucket, keys)
    return target.with_bucket(bucket)


def listing(server: Any, target: StorageTarget) -> Dict[str, int]:
    return server.list_objects(target.bucket, target.server_prefix)


# --- backups ----------------------------------------------------------------------------------------


def module(name: str, where: StorageTarget, check_mode: bool = False, **params: Any) -> Dict[str, Any]:
    args = dict(where.module_params(), **params)
    if check_mode:
        args["_ansible_check_mode"] = True
    run = run_module(name, args, env=where.module_env())
    assert run.rc == 0, run.stdout + run.stderr
    return run.result


def module_backup(cluster: PostgresCluster, target: StorageTarget) -> str:
    run = run_module("base_backup", backup_module_args(cluster, target, compression="lz4"), env=target.module_env())
    assert run.rc == 0, run.stdout + run.stderr
    return str(run.result["backup_id"])


def backup_info_key(target: StorageTarget, backup_id: str) -> str:
    return target.backup_prefix(backup_id) + "backup.info"


def with_end_time(info: bytes, end_time: datetime) -> bytes:
    text = re.sub(r"(?m)^end_time=.*$", "end_time=%s" % end_time, info.decode())
    return text.encode()


@dataclass
class Backups:
    """Four backups of the source, oldest first: `copy` (of r1, 60 days old), r1 (40), r2 (20), r3 (now)."""

    ids: Dict[str, str]
    begin_wals: Dict[str, str] = field(default_factory=dict)

    def id_list(self, *names: str) -> List[str]:
        return sorted(self.ids[name] for name in names)


def make_backups(server: Any, target: StorageTarget, cluster: PostgresCluster) -> Backups:
    cluster.switch_wal_and_wait()  # WAL older than every backup, which a deletion frees
    ids = {"r1": reference_backup(target, cluster, compression="lz4")}
    for name in ("r2", "r3"):
        cluster.switch_wal_and_wait()
        time.sleep(1)  # ids are seconds
        ids[name] = module_backup(cluster, target)
    cluster.switch_wal_and_wait()
    now = datetime.now(timezone.utc)
    for name, age in (("r1", 40), ("r2", 20)):
        key = backup_info_key(target, ids[name])
        put_object(server, target.bucket, key, with_end_time(server.get_object(target.bucket, key), now - timedelta(days=age)))
    ids["copy"] = (datetime.strptime(ids["r1"], ID_FORMAT) - timedelta(days=1)).strftime(ID_FORMAT)
    source, copy = target.backup_prefix(ids["r1"]), target.backup_prefix(ids["copy"])
    for key in server.list_objects(target.bucket, source):
        data = server.get_object(target.bucket, key)
        if key.endswith("/backup.info"):
            data = with_end_time(data, now - timedelta(days=60))
        put_object(server, target.bucket, copy + key[len(source):], data)
    shown = {backup["backup_id"]: backup for backup in backup_list(target)}
    assert sorted(shown) == sorted(ids.values()) and {b["status"] for b in shown.values()} == {"DONE"}
    return Backups(ids, {name: shown[backup_id]["begin_wal"] for name, backup_id in ids.items()})


# --- the cases ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    policy: Optional[str]  # None: delete `deleted[0]` by its id
    minimum: int
    deleted: Tuple[str, ...]
    keep: Optional[Tuple[str, str]] = None  # (backup, target) kept in both copies first
    frees_wal: bool = True

    def module_params(self, backups: "Backups") -> Dict[str, Any]:
        if self.policy is None:
            return {"backup_id": backups.ids[self.deleted[0]], "minimum_redundancy": self.minimum}
        return {"retention_policy": self.policy, "minimum_redundancy": self.minimum}

    def barman_arguments(self, backups: "Backups") -> List[str]:
        if self.policy is None:
            return ["-b", backups.ids[self.deleted[0]], "-m", str(self.minimum)]
        return ["-r", self.policy, "-m", str(self.minimum)]


CASES = [
    Case("REDUNDANCY 2", 0, ("copy", "r1")),
    Case("RECOVERY WINDOW OF 30 DAYS", 0, ("copy",)),
    Case("recovery window of 1 week", 3, ("copy",)),
    Case("REDUNDANCY 1", 0, ("copy", "r2"), keep=("r1", "standalone")),
    Case("REDUNDANCY 1", 0, ("copy", "r2"), keep=("r1", "full")),
    Case("REDUNDANCY 0", 2, ("copy", "r1")),
    # By id: the oldest frees the WAL below the next backup; one in the middle frees none.
    Case(None, 0, ("copy",)),
    Case(None, 3, ("r2",), frees_wal=False),
]


def wal_keys(keys: Dict[str, int]) -> List[str]:
    return sorted(key for key in keys if "/wals/" in key)


def apply_case(server: Any, target: StorageTarget, backups: Backups, case: Case) -> None:
    """Run both tools on identical copies; compare what is left, key by key."""
    keys = sorted(listing(server, target))
    ours, theirs = store_copy(server, target, keys), store_copy(server, target, keys)
    try:
        if case.keep:
            name, keep_target = case.keep
            # Each side keeps with the other tool: the annotation must be the same object.
            module("backup_keep", ours, backup=backups.ids[name], target=keep_target)
            barman_cloud("backup-keep", theirs, "--target", keep_target, theirs.url, theirs.server_name,
                         backups.ids[name])
        before = listing(server, ours)
        planned = module("backup_delete", ours, check_mode=True, **case.module_params(backups))
        assert listing(server, ours) == before, "check mode deleted something"
        result = module("backup_delete", ours, **case.module_params(backups))
        barman_cloud("backup-delete", theirs, *case.barman_arguments(backups), theirs.url, theirs.server_name)
        expected = backups.id_list(*case.deleted)
        assert [step["backup_id"] for step in result["deleted"]] == expected, case
        assert result["changed"] is True and planned["deleted"] == result["deleted"], case
        left_ours, left_theirs = listing(server, ours), listing(server, theirs)
        assert left_ours == left_theirs, case
        assert (wal_keys(left_ours) != wal_keys(before)) == case.frees_wal, case
        remaining = sorted(set(backups.ids.values()) - set(expected))
        assert sorted(backup["backup_id"] for backup in backup_list(ours)) == remaining, case
        if case.policy is not None:
            dry_run = barman_cloud("backup-delete", ours, "--dry-run", "-r", case.policy, "-m", str(case.minimum),
                                   ours.url, ours.server_name)
            assert "Skipping deletion" not in dry_run.stdout + dry_run.stderr, (case, dry_run.stdout)
        if case.keep:
            console = barman_cloud("backup-list", ours, ours.url, ours.server_name).stdout
            assert "KEEP:%s" % case.keep[1].upper() in console, console
    finally:
        server.delete_bucket(ours.bucket)
        server.delete_bucket(theirs.bucket)


BAD_INPUT = [
    ({"retention_policy": "REDUNDANCY two"}, "retention_policy", "is not a policy"),
    ({"retention_policy": "RECOVERY WINDOW OF 3 YEARS"}, "retention_policy", "is not a policy"),
    ({"retention_policy": "REDUNDANCY 1", "minimum_redundancy": -1}, "minimum_redundancy", "0 or more"),
    ({"backup_id": "20200101T000000"}, "backup_id", "no backup '20200101T000000'"),
    ({"backup_id": "no-such-name"}, "backup_id", "no backup 'no-such-name'"),
]


def check_bad_input(server: Any, target: StorageTarget) -> None:
    """Each fails naming its option, with nothing deleted (nor the FAILED mark written)."""
    keys = sorted(listing(server, target))
    frozen = store_copy(server, target, keys)
    try:
        before = listing(server, frozen)
        for params, parameter, words in BAD_INPUT:
            run = run_module("backup_delete", dict(frozen.module_params(), **params), env=frozen.module_env())
            assert run.rc != 0 and run.result.get("parameter") == parameter, (params, run.stdout)
            assert words in run.result["msg"] and "Traceback" not in run.stdout + run.stderr, run.result["msg"]
            assert listing(server, frozen) == before, params
    finally:
        server.delete_bucket(frozen.bucket)


# On Azure and GCS, the cases that use every store call a deletion makes (several backups and
# their WAL, a keep annotation, a backup by id that frees no WAL): the policies themselves are
# the same code whatever the store, and each case costs two copies of the store's objects.
STORE_CASES = [CASES[0], CASES[4], CASES[7]]


def check_policies(server: Any, target: StorageTarget, cluster: PostgresCluster, cases: List[Case]) -> None:
    backups = make_backups(server, target, cluster)
    for case in cases:
        apply_case(server, target, backups, case)


def test_policies_delete_what_barman_deletes(moto, source_cluster, storage):
    check_policies(moto, storage, source_cluster, CASES)
    check_bad_input(moto, storage)


def test_policies_delete_what_barman_deletes_on_azure_and_gcs(cloud, source_cluster):
    check_policies(cloud.server, cloud.target, source_cluster, STORE_CASES)


# --- keeps, both ways --------------------------------------------------------------------------------


def barman_keep_status(target: StorageTarget, backup_id: str) -> str:
    shown = barman_cloud("backup-keep", target, "-s", target.url, target.server_name, backup_id).stdout
    return shown.strip().split("Keep: ", 1)[-1]


def check_keeps_are_shared(target: StorageTarget, cluster: PostgresCluster) -> None:
    backup_id = module_backup(cluster, target)
    barman_cloud("backup-keep", target, "--target", "standalone", target.url, target.server_name, backup_id)
    # Issue 18 item 18: a backup kept by barman checks whole, and the listing tells its keep.
    shown = module("backup_info", target, backup=backup_id, check_objects=True)
    assert shown["objects_check"]["ok"] is True, shown["objects_check"]
    assert shown["objects_check"]["stored_size"] == shown["objects_check"]["recorded_size"]
    assert shown["backup"]["keep"] == "standalone"
    assert [backup["keep"] for backup in module("backup_info", target)["backups"]] == ["standalone"]
    assert module("backup_keep", target, backup=backup_id, state="query")["keep"] == "standalone"
    # Ours switches barman's keep; check mode first, which writes nothing.
    assert module("backup_keep", target, check_mode=True, backup=backup_id, target="full")["changed"] is True
    assert barman_keep_status(target, backup_id) == "standalone"
    switched = module("backup_keep", target, backup=backup_id, target="full")
    assert (switched["changed"], switched["previous_keep"], switched["keep"]) == (True, "standalone", "full")
    assert barman_keep_status(target, backup_id) == "full"
    assert module("backup_keep", target, backup="latest", target="full")["changed"] is False
    refused = barman_cloud("backup-delete", target, "-b", backup_id, target.url, target.server_name, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    # Released by barman, seen by ours; kept by ours, released by ours, seen by barman.
    barman_cloud("backup-keep", target, "-r", target.url, target.server_name, backup_id)
    assert module("backup_keep", target, backup=backup_id, state="query")["keep"] is None
    module("backup_keep", target, backup=backup_id, target="standalone")
    assert barman_keep_status(target, backup_id) == "standalone"
    released = module("backup_keep", target, backup=backup_id, state="absent")
    assert (released["changed"], released["keep"]) == (True, None)
    assert barman_keep_status(target, backup_id) == "nokeep"
    assert module("backup_keep", target, backup=backup_id, state="absent")["changed"] is False


def test_keeps_are_shared_with_barman(source_cluster, storage):
    check_keeps_are_shared(storage, source_cluster)


def test_keeps_are_shared_with_barman_on_azure_and_gcs(cloud, source_cluster):
    check_keeps_are_shared(cloud.target, source_cluster)


# --- a store fault part-way -------------------------------------------------------------------------

DELETE_OBJECTS = r"\?delete"


def test_an_interrupted_deletion_leaves_only_backups_that_restore(moto, source_cluster, storage):
    backups = make_backups(moto, storage, source_cluster)
    keys = sorted(listing(moto, storage))
    ours, theirs = store_copy(moto, storage, keys), store_copy(moto, storage, keys)
    source_cluster.switch_wal_and_wait()
    expected = source_cluster.fingerprint()
    try:
        with FaultProxy(moto.port) as proxy:
            # The copy: its archives, its backup.info, its WAL; then r1's archives go, and the
            # deletion of r1's backup.info fails, however often it is retried.
            rule = proxy.add(FaultRule("POST", DELETE_OBJECTS, "status", status=500, skip=4, times=None))
            run = run_module("backup_delete", dict(ours.module_params(), endpoint_url=proxy.endpoint_url,
                                                   retention_policy="REDUNDANCY 2"))
        assert rule.injected > 0
        assert run.rc != 0 and "deleting backup %s failed" % backups.ids["r1"] in run.result["msg"], run.stdout
        statuses = {backup["backup_id"]: backup["status"] for backup in backup_list(ours)}
        assert statuses == {backups.ids["r1"]: "FAILED", backups.ids["r2"]: "DONE", backups.ids["r3"]: "DONE"}
        assert sorted(key.rsplit("/", 1)[1] for key in listing(moto, ours)
                      if key.startswith(ours.backup_prefix(backups.ids["r1"]))) == ["backup.info"]
        # The oldest DONE backup restores from what is left, with its WAL.
        restored = restore_and_verify(ours, backups.ids["r2"], tablespaces=[TABLESPACE])
        assert restored.amcheck_passed, restored.amcheck_output
        assert restored.fingerprint == expected
        # Run again, it finishes: what is left is what barman leaves.
        finished = module("backup_delete", ours, retention_policy="REDUNDANCY 2")
        assert [step["backup_id"] for step in finished["deleted"]] == [backups.ids["r1"]]
        barman_cloud("backup-delete", theirs, "-r", "REDUNDANCY 2", theirs.url, theirs.server_name)
        assert listing(moto, ours) == listing(moto, theirs)
    finally:
        moto.delete_bucket(ours.bucket)
        moto.delete_bucket(theirs.bucket)


# --- delete_objects of each store ------------------------------------------------------------------


def engine_of_this_checkout(tmp_path: Any, monkeypatch: Any) -> Tuple[Any, Any]:
    """StorageConfig and open_store of the collection under test (COLLECTION_ROOT), imported here."""
    link = tmp_path / "ansible_collections" / "pgcloud" / "backup"
    link.parent.mkdir(parents=True)
    link.symlink_to(COLLECTION_ROOT)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [name for name in sys.modules if name.startswith("ansible_collections")]:
        monkeypatch.delitem(sys.modules, name)
    config = importlib.import_module("ansible_collections.pgcloud.backup.plugins.module_utils.engine.config")
    factory = importlib.import_module("ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory")
    return config.StorageConfig, factory.open_store


def open_engine_store(target: Any, monkeypatch: Any, tmp_path: Any) -> Any:
    """The store of target, opened by the engine of this checkout with the target's environment."""
    StorageConfig, open_store = engine_of_this_checkout(tmp_path, monkeypatch)  # noqa: N806
    for name, value in dict(target.module_env(), AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                            AWS_DEFAULT_REGION="us-east-1").items():
        monkeypatch.setenv(name, value)
    return open_store(StorageConfig(**target.module_params()))


@pytest.mark.parametrize("server_fixture", ["moto", "azurite", "gcs"])
def test_delete_objects_in_batches(request, server_fixture, monkeypatch, tmp_path):
    server = request.getfixturevalue(server_fixture)
    target = server.target(server.create_bucket(), "p", "srv")
    try:
        store = open_engine_store(target, monkeypatch, tmp_path)
        keys = ["p/srv/wals/%03d" % number for number in range(25)]
        for key in keys:
            store.put_object(key, b"w")
        store.delete_batch_size = 10
        # Missing keys count as deleted; the batches run in order, all of them.
        store.delete_objects(keys[:21] + ["p/srv/wals/missing"])
        assert sorted(server.list_objects(target.bucket, "p/")) == keys[21:]
        store.delete_objects([])
        store.delete_objects(keys)
        assert server.list_objects(target.bucket, "p/") == {}
    finally:
        server.delete_bucket(target.bucket)
