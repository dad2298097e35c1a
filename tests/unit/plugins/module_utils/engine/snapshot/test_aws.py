# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_aws.py and the snapshot job on AWS: boto3 against moto's EC2 API on loopback.

moto has no LockSnapshot: `Ec2LockProxy` (tests/utils/fake_clouds.py) sits in front of moto,
answers LockSnapshot with the documented response and forwards everything else, so the
provider calls the real `lock_snapshot` API. The host's mounts are prepared data.
"""

from __future__ import annotations

import ast

import boto3
import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import (
    BackupConfig,
    PostgresConfig,
    SnapshotConfig,
    StorageConfig,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import (
    BackupError,
    ConfigurationError,
    SnapshotError,
    SnapshotPreconditionError,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.snapshot.base import HostView
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.snapshot.aws import AwsSnapshots
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.jobs.snapshot_backup import SnapshotBackupJob
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.jobs.test_base_backup import LABEL, RecordingSession
from ansible_collections.pgcloud.backup.tests.utils.fake_clouds import Ec2LockProxy, make_ec2_instance, prepare_host

REGION = "eu-west-1"


@pytest.fixture
def ec2_endpoint(moto_endpoint, aws_environment, monkeypatch):
    """EC2 (moto behind the LockSnapshot proxy), also as AWS_ENDPOINT_URL_EC2 for the provider."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with Ec2LockProxy(moto_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", proxy.endpoint_url)
        yield proxy


@pytest.fixture
def instance(ec2_endpoint):
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=ec2_endpoint.endpoint_url)
    name = "db-%d" % id(ec2)
    return dict(make_ec2_instance(ec2, name, [("pgdata", "/dev/sdf"), ("pgwal", "/dev/sdg")]), name=name, ec2=ec2)


def provider(host, **options):
    values = dict(snapshot_instance="unused", snapshot_disks=["unused"], aws_region=REGION)
    values.update(options)
    storage = StorageConfig(destination_url="s3://bucket/pg", server_name="db1", tags={"team": "dba"})
    return AwsSnapshots(SnapshotConfig(**values), storage, host)


def test_disks_by_name_tag_and_by_id_with_nvme_and_xvd_devices(instance, tmp_path):
    pgdata, pgwal = instance["volumes"]["pgdata"], instance["volumes"]["pgwal"]
    # pgdata is an NVMe device that reports the volume id; pgwal was renamed sdg -> xvdg.
    host = HostView(prepare_host(str(tmp_path), [], serials={"nvme1n1": pgdata.replace("-", ""), "xvdg": "x"}))
    disks = provider(host).find_disks(instance["name"], ["pgdata", pgwal])
    assert [(disk.name, disk.device) for disk in disks] == [("pgdata", "/dev/nvme1n1"), (pgwal, "/dev/xvdg")]
    assert disks[0].details == {"volume_id": pgdata, "device_name": "/dev/sdf"}
    by_id = provider(host).find_disks(instance["instance_id"], ["pgdata"])
    assert by_id[0].details["volume_id"] == pgdata


def test_missing_instance_and_unattached_disks(instance, tmp_path):
    host = HostView(str(tmp_path))
    with pytest.raises(SnapshotPreconditionError, match="cannot find compute instance nope in region eu-west-1"):
        provider(host).find_disks("nope", ["pgdata"])
    with pytest.raises(SnapshotPreconditionError) as caught:
        provider(host).find_disks(instance["name"], ["pgdata", "other", "vol-0123"])
    assert "cannot find disks attached to compute instance %s: other, vol-0123" % instance["name"] in str(caught.value)


def test_snapshots_are_tagged_waited_for_and_locked(instance, ec2_endpoint, tmp_path):
    host = HostView(str(tmp_path))
    aws = provider(host, aws_snapshot_lock_mode="compliance", aws_snapshot_lock_duration=30,
                   aws_snapshot_lock_cool_off_period=2)
    disks = aws.find_disks(instance["name"], ["pgdata"])
    taken = aws.take(disks, "20261125T023350")
    assert taken == [{"device_name": "/dev/sdf", "snapshot_id": taken[0]["snapshot_id"],
                      "snapshot_name": "pgdata-20261125t023350", "snapshot_lock_mode": "compliance"}]
    snapshot = instance["ec2"].describe_snapshots(SnapshotIds=[taken[0]["snapshot_id"]])["Snapshots"][0]
    assert {tag["Key"]: tag["Value"] for tag in snapshot["Tags"]} == {"Name": "pgdata-20261125t023350", "team": "dba"}
    assert snapshot["VolumeId"] == instance["volumes"]["pgdata"]
    assert [{key: lock[key] for key in ("SnapshotId", "LockMode", "LockDuration", "CoolOffPeriod")}
            for lock in ec2_endpoint.locks] == [{"SnapshotId": taken[0]["snapshot_id"], "LockMode": "compliance",
                                                 "LockDuration": "30", "CoolOffPeriod": "2"}]
    assert aws.provider_info() == {"account_id": "123456789012", "region": REGION}


def test_lock_until_a_date(instance, ec2_endpoint, tmp_path):
    aws = provider(HostView(str(tmp_path)), aws_snapshot_lock_mode="governance",
                   aws_snapshot_lock_expiration_date="2099-01-31T00:00:00.000Z")
    aws.take(aws.find_disks(instance["name"], ["pgdata"]), "20261125T023350")
    assert ec2_endpoint.locks[0]["ExpirationDate"].startswith("2099-01-31T00:00:00")
    assert "LockDuration" not in ec2_endpoint.locks[0]


def test_no_region_is_a_configuration_error(aws_environment, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigurationError, match="set aws_region"):
        provider(HostView(str(tmp_path)), aws_region=None)


def test_ec2_errors_are_snapshot_errors(instance, tmp_path):
    aws = provider(HostView(str(tmp_path)))
    with pytest.raises(SnapshotError, match="EC2 refused to snapshot volume vol-00000000"):
        aws.take([type("D", (), {"name": "x", "details": {"volume_id": "vol-00000000", "device_name": "/dev/sdf"}})()],
                 "20261125T023350")


# --- the job ------------------------------------------------------------------------------------------


def job(store, instance, host, **options):
    snapshot = SnapshotConfig(snapshot_instance=instance["name"], snapshot_disks=["pgdata", "pgwal"],
                              aws_region=REGION, **options)
    storage = StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1")
    return SnapshotBackupJob(storage, PostgresConfig(keepalive_interval=0), snapshot, BackupConfig(backup_name="snap"),
                             store=store, host=host)


def host_for(tmp_path, facts, instance):  # noqa: F811
    """pgdata's volume as NVMe holding PGDATA, pgwal as xvdg holding the tablespace."""
    serial = instance["volumes"]["pgdata"].replace("-", "")
    tablespace = facts.tablespaces[0][2]
    return HostView(prepare_host(str(tmp_path / "host"), [("/dev/nvme1n1", facts.data_directory),
                                                          ("/dev/xvdg", tablespace)],
                                 serials={"nvme1n1": serial, "xvdg": "x"}))


def test_snapshot_backup_writes_backup_label_and_backup_info(store, facts, instance, tmp_path):  # noqa: F811
    snapshot_job = job(store, instance, host_for(tmp_path, facts, instance))
    snapshot_job._prepare(facts)
    session = RecordingSession()
    result = snapshot_job._take(session, facts).as_dict()
    backup_id = result["backup_id"]
    prefix = "some/path/db1/base/%s/" % backup_id
    stored = sorted(key for key in store.objects if key.startswith(prefix))
    assert stored == [prefix + "backup.info", prefix + "backup_label"]
    assert store.objects[prefix + "backup_label"] == LABEL.encode()
    # The primary's archiver is read once the server has left backup mode (the end WAL file is archived).
    assert session.names() == ["start_backup", "start_keepalive", "stop_keepalive", "stop_backup",
                               "create_restore_point", "archiver_status"]
    reservation, started, done = [layout.parse(data) for key, data in store.put_history
                                  if key.endswith("backup.info")]
    assert reservation["status"] == "STARTED" and reservation["error"].startswith("backup id reserved by run ")
    assert started["status"] == "STARTED" and "snapshots_info" not in started
    assert done["status"] == "DONE" and done["backup_name"] == "snap" and done["server_name"] == "db1"
    assert set(done["copy_stats"]) == {"copy_time", "total_time"}
    info = done["snapshots_info"]
    assert (info["provider"], info["provider_info"]) == ("aws", {"account_id": "123456789012", "region": REGION})
    assert [item["mount"]["mount_point"] for item in info["snapshots"]] == [facts.data_directory, facts.tablespaces[0][2]]
    assert [item["provider"]["snapshot_name"] for item in info["snapshots"]] == [
        "pgdata-%s" % backup_id.lower(), "pgwal-%s" % backup_id.lower()]
    assert [item["provider"]["device_name"] for item in info["snapshots"]] == ["/dev/sdf", "/dev/sdg"]
    assert ast.literal_eval(repr(info)) == info
    assert result["keys"] == [prefix + "backup_label", prefix + "backup.info"]
    assert [item["snapshot_name"] for item in result["snapshots"]] == ["pgdata-%s" % backup_id.lower(),
                                                                       "pgwal-%s" % backup_id.lower()]


def test_tablespace_off_the_disks_is_refused_before_anything_is_written(store, facts, instance, tmp_path):  # noqa: F811
    host = HostView(prepare_host(str(tmp_path / "host"), [("/dev/sdf", facts.data_directory), ("/dev/sdg", "/srv")]))
    with pytest.raises(SnapshotPreconditionError, match="lies on /dev/root mounted at /"):
        job(store, instance, host)._prepare(facts)
    assert store.objects == {}


def test_failure_after_the_snapshots_records_them_in_failed(store, facts, instance, tmp_path, caplog):  # noqa: F811
    snapshot_job = job(store, instance, host_for(tmp_path, facts, instance))
    snapshot_job._prepare(facts)
    session = RecordingSession(stop_error=RuntimeError("stop failed"))
    with pytest.raises(BackupError, match="stop failed"):
        snapshot_job._take(session, facts)
    failed = [layout.parse(data) for key, data in store.put_history if key.endswith("backup.info")][-1]
    assert failed["status"] == "FAILED"
    assert failed["error"] == "failure uploading data (stop failed) while taking backup_name snap"
    assert len(failed["snapshots_info"]["snapshots"]) == 2
    assert "snapshots pgdata-" in caplog.text and "are kept" in caplog.text


def test_check_mode_plans_without_snapshots(store, facts, instance, tmp_path):  # noqa: F811
    snapshot_job = job(store, instance, host_for(tmp_path, facts, instance))
    snapshot_job._prepare(facts)
    plan = snapshot_job._plan_result(facts).as_dict()
    assert [item["disk"] for item in plan["plan"]["snapshots"]] == ["pgdata", "pgwal"]
    assert plan["plan"]["snapshots"][0]["device"] == "/dev/nvme1n1"
    assert plan["plan"]["snapshots"][0]["mount_point"] == facts.data_directory
    volumes = list(instance["volumes"].values())
    assert instance["ec2"].describe_snapshots(Filters=[{"Name": "volume-id", "Values": volumes}])["Snapshots"] == []
    assert store.objects == {}


@pytest.mark.parametrize("storage_options, backup_options, parameter", [
    # kms_key_name is an option of Cloud Storage (refused with an S3 destination anyway).
    ({"kms_key_name": "projects/p/locations/l/keyRings/r/cryptoKeys/k", "cloud_provider": "google-cloud-storage",
      "destination_url": "gs://test-bucket/some/path"}, {}, "kms_key_name"),
    ({}, {"compression": "gzip"}, "compression"),
])
def test_options_that_snapshots_cannot_use(store, storage_options, backup_options, parameter, tmp_path):
    storage = StorageConfig(**dict({"destination_url": "s3://test-bucket/some/path", "server_name": "db1"},
                                   **storage_options))
    snapshot = SnapshotConfig(snapshot_instance="i-0abc", snapshot_disks=["pgdata"], aws_region=REGION)
    with pytest.raises(ConfigurationError) as caught:
        SnapshotBackupJob(storage, PostgresConfig(), snapshot, BackupConfig(**backup_options), store=store,
                          host=HostView(str(tmp_path)))
    assert caught.value.parameter == parameter
    assert "cannot be used with snapshot backups" in str(caught.value)
