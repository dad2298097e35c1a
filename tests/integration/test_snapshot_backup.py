# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshot backups of the live source cluster taken by the module through ansible-playbook,
judged by the real barman-cloud-backup-list and -show.

EC2 is moto's (the same moto server as S3), behind the LockSnapshot test double of
tests/utils/fake_clouds.py; the mounts the module reads are prepared host data saying that
PGDATA lies on the first volume (an NVMe device reporting its volume id) and the tablespace
on the second (renamed sdg -> xvdg), never this machine's own disks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import boto3
import pytest

from testbed import (
    FAKE_AWS_ENV,
    INTEGRATION_DIR,
    MotoServer,
    PostgresCluster,
    StorageTarget,
    backup_list,
    backup_show,
    remove_tree,
    run_playbook,
    scratch_dir,
)

sys.path.insert(0, str(INTEGRATION_DIR.parent / "utils"))
from fake_clouds import Ec2LockProxy, make_ec2_instance, prepare_host  # noqa: E402  pylint: disable=wrong-import-position

REGION = "eu-west-1"
TAKE = "Take a snapshot backup"


@pytest.fixture(scope="module")
def ec2(moto: MotoServer) -> Iterator[Ec2LockProxy]:
    with Ec2LockProxy(moto.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def instance(ec2: Ec2LockProxy, request: pytest.FixtureRequest) -> Dict[str, Any]:
    client = boto3.client("ec2", region_name=REGION, endpoint_url=ec2.endpoint_url,
                          aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    created = make_ec2_instance(client, "pg-%s" % request.node.name[:40], [("pgdata", "/dev/sdf"), ("pgts", "/dev/sdg")])
    return dict(created, client=client)


@pytest.fixture
def host_root(source_cluster: PostgresCluster, instance: Dict[str, Any]) -> Iterator[Path]:
    root = scratch_dir("pgcloud-host-")
    prepare_host(str(root), [("/dev/nvme1n1", os.path.realpath(source_cluster.pgdata)),
                             ("/dev/xvdg", os.path.realpath(source_cluster.tablespace_dir))],
                 serials={"nvme1n1": instance["volumes"]["pgdata"].replace("-", ""), "xvdg": "unused"})
    yield root
    remove_tree(root)


def run_snapshot_playbook(source: PostgresCluster, storage: StorageTarget, ec2: Ec2LockProxy, instance: Dict[str, Any],
                          host_root: Path, check: bool = False, **extra: Any):
    params = source.connection_params
    variables = dict(storage.module_params(), pg_host=params["host"], pg_port=params["port"], pg_user=params["user"],
                     snapshot_instance=instance["instance_id"], aws_region=REGION)
    variables.setdefault("snapshot_disks", ["pgdata", "pgts"])
    variables.update(extra)
    return run_playbook(INTEGRATION_DIR / "playbooks" / "snapshot_backup.yml", variables, check=check,
                        env={"AWS_ENDPOINT_URL_EC2": ec2.endpoint_url, "PGCLOUD_BACKUP_HOST_ROOT": str(host_root)})


def volume_snapshots(instance: Dict[str, Any]) -> list:
    volumes = list(instance["volumes"].values())
    return instance["client"].describe_snapshots(Filters=[{"Name": "volume-id", "Values": volumes}])["Snapshots"]


def test_snapshot_backup_is_listed_and_shown_by_the_reference_tools(source_cluster, storage, moto, ec2, instance,
                                                                    host_root):
    run = run_snapshot_playbook(source_cluster, storage, ec2, instance, host_root, backup_name="snap-nightly",
                                aws_snapshot_lock_mode="compliance", aws_snapshot_lock_duration=30)
    assert run.rc == 0, run.output
    result = run.task(TAKE)
    backup_id = result["backup_id"]
    assert result["changed"] is True and result["status"] == "DONE"
    prefix = storage.backup_prefix(backup_id)
    assert sorted(moto.list_keys(storage.bucket, prefix)) == [prefix + "backup.info", prefix + "backup_label"]
    assert result["object_keys"] == [prefix + "backup_label", prefix + "backup.info"]
    label = moto.get_object(storage.bucket, prefix + "backup_label").decode()
    assert "LABEL: Barman backup cloud %s" % backup_id in label

    names = ["pgdata-%s" % backup_id.lower(), "pgts-%s" % backup_id.lower()]
    snapshots = volume_snapshots(instance)
    assert sorted(tag["Value"] for snapshot in snapshots for tag in snapshot["Tags"] if tag["Key"] == "Name") == names
    assert sorted(lock["SnapshotId"] for lock in ec2.locks) == sorted(item["snapshot_id"] for item in result["snapshots"])
    assert {lock["LockMode"] for lock in ec2.locks} == {"compliance"}

    listed = {backup["backup_id"]: backup for backup in backup_list(storage)}
    assert listed[backup_id]["status"] == "DONE"
    assert listed[backup_id]["backup_name"] == "snap-nightly"
    shown = backup_show(storage, backup_id)
    assert shown["status"] == "DONE"
    info = shown["snapshots_info"]
    assert info["provider"] == "aws"
    assert info["provider_info"] == {"account_id": "123456789012", "region": REGION}
    assert [item["provider"]["snapshot_name"] for item in info["snapshots"]] == names
    assert [item["mount"]["mount_point"] for item in info["snapshots"]] == [
        os.path.realpath(source_cluster.pgdata), os.path.realpath(source_cluster.tablespace_dir)]
    assert [item["provider"]["snapshot_lock_mode"] for item in info["snapshots"]] == ["compliance", "compliance"]
    shown_by_module = run.task("Show the backup")["backup"]
    assert shown_by_module["snapshots_info"] == info

    again = run_snapshot_playbook(source_cluster, storage, ec2, instance, host_root, backup_name="snap-nightly")
    assert again.rc == 0, again.output
    assert again.task(TAKE)["changed"] is False and again.task(TAKE)["backup_id"] == backup_id


def test_check_mode_reports_the_snapshots_and_creates_nothing(source_cluster, storage, moto, ec2, instance, host_root):
    run = run_snapshot_playbook(source_cluster, storage, ec2, instance, host_root, check=True)
    assert run.rc == 0, run.output
    plan = run.task(TAKE)["plan"]
    assert [(item["disk"], item["device"]) for item in plan["snapshots"]] == [("pgdata", "/dev/nvme1n1"),
                                                                              ("pgts", "/dev/xvdg")]
    assert plan["data_directory"] == str(source_cluster.pgdata)
    assert volume_snapshots(instance) == []
    assert moto.list_keys(storage.bucket, storage.server_prefix + "base/") == []


def test_tablespace_off_the_snapshotted_disks_fails_before_the_backup(source_cluster, storage, ec2, instance,
                                                                      host_root):
    run = run_snapshot_playbook(source_cluster, storage, ec2, instance, host_root, snapshot_disks=["pgdata"])
    assert run.rc != 0
    message = run.task(TAKE)["msg"]
    assert "lies on /dev/xvdg" in message and "add the disk that holds it to snapshot_disks" in message
    assert backup_list(storage) == []
    assert volume_snapshots(instance) == []
