# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recovery of a snapshot backup by the restore module: the disks made from the snapshots must be
attached to the recovery instance and mounted where the backup recorded them; then backup_label
is put in place with the recovery settings.

EC2 is moto's (volumes created from a snapshot carry its id there, as in EC2); the host the
module reads is prepared data (tests/utils/fake_clouds.prepare_host) whose mount table puts the
recovery volume's device on a scratch folder, the "disk", that holds a data directory as a
snapshot leaves it (with the source's postmaster.pid). The backup in the store is a
backup.info with snapshots_info as snapshot_backup writes it, and its backup_label.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import boto3
import pytest

from testbed import FAKE_AWS_ENV, INTEGRATION_DIR, MotoServer, StorageTarget, remove_tree, run_module, scratch_dir

sys.path.insert(0, str(INTEGRATION_DIR.parent / "utils"))
from fake_clouds import make_ec2_instance, prepare_host  # noqa: E402  pylint: disable=wrong-import-position

REGION = "eu-west-1"
BACKUP_ID = "20260125T031500"
LABEL = ("START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n"
         "BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-01-25 03:15:00 UTC\n"
         "LABEL: Barman backup cloud %s\nSTART TIMELINE: 1\n" % BACKUP_ID)
# As the mount table of prepare_host reads: the mount's options, then the file system's.
MOUNT_OPTIONS = "rw,noatime,errors=remount-ro"


@pytest.fixture
def bed(moto: MotoServer) -> Iterator[Dict[str, Any]]:
    """A snapshot backup in the store, a recovery instance with a volume made from its snapshot,
    and a host where that volume is mounted at the recorded mount point."""
    client = boto3.client("ec2", region_name=REGION, endpoint_url=moto.endpoint_url,
                          aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"])
    source = make_ec2_instance(client, "pg-snap-source", [("pgdata", "/dev/sdf")])
    snapshot_id = client.create_snapshot(VolumeId=source["volumes"]["pgdata"])["SnapshotId"]
    recovery = make_ec2_instance(client, "pg-snap-recovery", [])
    zone = client.describe_instances(InstanceIds=[recovery["instance_id"]])["Reservations"][0]["Instances"][0][
        "Placement"]["AvailabilityZone"]
    volume = client.create_volume(SnapshotId=snapshot_id, Size=10, AvailabilityZone=zone)["VolumeId"]
    client.attach_volume(VolumeId=volume, InstanceId=recovery["instance_id"], Device="/dev/sdf")
    other = make_ec2_instance(client, "pg-snap-other", [("empty", "/dev/sdf")])

    root = scratch_dir("pgcloud-tests-snaprestore-")
    disk = root / "disk"
    pgdata = disk / "main"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("15\n")
    (pgdata / "postgresql.auto.conf").write_text("port = 5432\n")
    (pgdata / "postmaster.pid").write_text("4194000\n%s\n" % pgdata)  # the source's server, not running here
    host = Path(prepare_host(str(root / "host"), [("/dev/xvdf", str(disk))], serials={"xvdf": "unused"}))

    target = moto.target(moto.create_bucket(), "pg/snap", "snapsrv")
    prefix = target.backup_prefix(BACKUP_ID)
    snapshots_info = {"provider": "aws", "provider_info": {"account_id": "123456789012", "region": REGION},
                      "snapshots": [{"mount": {"mount_options": MOUNT_OPTIONS, "mount_point": str(disk)},
                                     "provider": {"device_name": "/dev/sdf", "snapshot_id": snapshot_id,
                                                  "snapshot_name": "pgdata-" + BACKUP_ID.lower(),
                                                  "snapshot_lock_mode": None}}]}
    info = {"backup_label": None, "begin_time": "2026-01-25 03:15:00.000000+00:00", "begin_wal":
            "000000010000000000000002", "begin_xlog": "0/2000028", "end_time": "2026-01-25 03:15:30.000000+00:00",
            "end_wal": "000000010000000000000002", "end_xlog": "0/2000100", "mode": "concurrent",
            "pgdata": str(pgdata), "server_name": "snapsrv", "snapshots_info": repr(snapshots_info),
            "status": "DONE", "systemid": "7300000000000000000", "tablespaces": None, "timeline": 1,
            "version": 150000, "xlog_segment_size": 16777216}
    s3 = moto.client()
    s3.put_object(Bucket=target.bucket, Key=prefix + "backup.info",
                  Body="".join("%s=%s\n" % item for item in sorted(info.items())).encode())
    s3.put_object(Bucket=target.bucket, Key=prefix + "backup_label", Body=LABEL.encode())
    yield {"target": target, "pgdata": pgdata, "disk": disk, "host": host, "root": root, "moto": moto,
           "recovery": recovery["instance_id"], "other": other["instance_id"]}
    remove_tree(root)


def recover(bed: Dict[str, Any], host: Any = None, **params: Any) -> Dict[str, Any]:
    target: StorageTarget = bed["target"]
    args = dict(target.module_params(), target_directory=str(bed["pgdata"]), snapshot_recovery_instance=bed["recovery"],
                restore_command="/bin/false %f %p")
    args.update(params)
    env = {"AWS_ENDPOINT_URL_EC2": bed["moto"].endpoint_url, "PGCLOUD_BACKUP_HOST_ROOT": str(host or bed["host"])}
    return run_module("restore", args, env=env).result


def test_label_is_put_in_place_on_the_disks_made_from_the_snapshots(bed):
    pgdata = bed["pgdata"]
    planned = recover(bed, _ansible_check_mode=True)
    assert planned["changed"] is True and not planned.get("failed"), planned
    assert not (pgdata / "backup_label").exists() and (pgdata / "postmaster.pid").exists()

    result = recover(bed)

    assert not result.get("failed") and result["backup_id"] == BACKUP_ID, result
    assert (pgdata / "backup_label").read_text() == LABEL
    assert not (pgdata / "postmaster.pid").exists() and (pgdata / "recovery.signal").exists()
    auto_conf = (pgdata / "postgresql.auto.conf").read_text()
    assert auto_conf.startswith("port = 5432\n") and "restore_command = '/bin/false %f %p'" in auto_conf
    assert result["snapshot_disks"] == [{"snapshot_name": "pgdata-" + BACKUP_ID.lower(), "disk": result[
        "snapshot_disks"][0]["disk"], "device": "/dev/xvdf", "mount_point": str(bed["disk"])}]
    assert result["snapshot_disks"][0]["disk"].startswith("vol-")


def test_disks_not_attached_or_mounted_elsewhere_are_refused(bed):
    elsewhere = prepare_host(str(bed["root"] / "host-elsewhere"), [("/dev/xvdf", str(bed["root"]))],
                             serials={"xvdf": "unused"})
    other_options = prepare_host(str(bed["root"] / "host-options"), [("/dev/xvdf", str(bed["disk"]))],
                                 serials={"xvdf": "unused"}, options="ro,noatime")
    cases = [
        (dict(snapshot_recovery_instance=bed["other"]), None, "no disk made from snapshot pgdata-"),
        (dict(), elsewhere, "is mounted at %s; the backup needs it at %s" % (bed["root"], bed["disk"])),
        (dict(), other_options, "with options ro,noatime,errors=remount-ro; the backup's were " + MOUNT_OPTIONS),
        (dict(snapshot_recovery_instance=None), None, "is a snapshot backup"),
        (dict(snapshot_recovery_instance="i-0000000000000dead"), None,
         "cannot find compute instance i-0000000000000dead in region %s: check snapshot_recovery_instance" % REGION),
        (dict(target_directory=str(bed["root"] / "host")), None, "is not a folder on the disks made from"),
        (dict(tablespaces={"t": str(bed["root"] / "t")}), None, "cannot be relocated"),
    ]
    for params, host, words in cases:
        result = recover(bed, host, **params)
        assert result.get("failed") and words in result["msg"], (params, result)
    assert sorted(path.name for path in bed["pgdata"].iterdir()) == ["PG_VERSION", "postgresql.auto.conf",
                                                                     "postmaster.pid"]
