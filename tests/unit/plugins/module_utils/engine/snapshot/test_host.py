# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot.py and SnapshotConfig: the mounts read from prepared host data (never this machine's),
the snapshots_info field as the reference readers load it, and the validation of the options.

Reference: format doc section d (snapshot names, snapshots_info per provider) and section c
(the validation rules of snapshot and lock options).
"""

from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone

import pytest
from barman.cloud_providers import snapshots_info_from_dict

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import SnapshotConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError, SnapshotPreconditionError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.snapshot.base import (
    HOST_ROOT_VARIABLE,
    Disk,
    HostView,
    SnapshotProvider,
    check_data_on_disks,
    locate_mounts,
    snapshot_name,
    snapshots_info,
)
from ansible_collections.pgcloud.backup.tests.utils.fake_clouds import prepare_host

# --- the host -----------------------------------------------------------------------------------------


def test_mountinfo_gives_mount_point_and_findmnt_style_options(tmp_path):
    host = HostView(prepare_host(str(tmp_path), [("/dev/nvme1n1", "/srv/pg data")]))
    mount = host.mount_of_device("/dev/nvme1n1")
    assert mount.mount_point == "/srv/pg data"  # \040 in mountinfo is a space
    assert mount.mount_options == "rw,noatime,errors=remount-ro"
    assert host.mount_of_device("/dev/nvme2n1") is None


def test_device_links_are_followed_as_udev_makes_them(tmp_path):
    root = prepare_host(str(tmp_path), [("/dev/sdc", "/srv/pgdata")],
                        links={"/dev/disk/azure/scsi1/lun0": "/dev/sdc", "/dev/disk/by-id/google-pgdata": "/dev/sdc"})
    host = HostView(root)
    assert host.resolve("/dev/disk/azure/scsi1/lun0") == "/dev/sdc"
    assert host.mount_of_device("/dev/disk/by-id/google-pgdata").mount_point == "/srv/pgdata"


def test_mount_containing_is_the_deepest_mount(tmp_path):
    data = tmp_path / "data"
    (data / "pgdata").mkdir(parents=True)
    host = HostView(prepare_host(str(tmp_path / "host"), [("/dev/sdb", str(tmp_path)), ("/dev/sdc", str(data))]))
    assert host.mount_containing(str(data / "pgdata")).source == "/dev/sdc"
    assert host.mount_containing(str(tmp_path / "database")).source == "/dev/sdb"  # a prefix is not a parent
    assert host.mount_containing("/etc").source == "/dev/root"


def test_block_serials_of_nvme_devices(tmp_path):
    host = HostView(prepare_host(str(tmp_path), [], serials={"nvme1n1": "vol0123456789abcdef0"}))
    assert host.block_serials() == {"nvme1n1": "vol0123456789abcdef0"}
    assert HostView(str(tmp_path / "nothing")).block_serials() == {}


def test_the_host_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(HOST_ROOT_VARIABLE, str(tmp_path))
    assert HostView.from_environment().root == str(tmp_path)
    monkeypatch.delenv(HOST_ROOT_VARIABLE)
    assert HostView.from_environment().root == "/"


def test_missing_mount_table_is_a_precondition_error(tmp_path):
    with pytest.raises(SnapshotPreconditionError, match="cannot read the mount table"):
        HostView(str(tmp_path)).mounts()


def test_disks_not_mounted_are_all_named(tmp_path):
    host = HostView(prepare_host(str(tmp_path), [("/dev/sdc", "/srv/pgdata")]))
    disks = [Disk("pgdata", "/dev/sdc"), Disk("pgwal", "/dev/sdd"), Disk("logs", "/dev/sde")]
    with pytest.raises(SnapshotPreconditionError) as caught:
        locate_mounts(disks, host, "db1")
    assert "cannot find disks mounted on compute instance db1: pgwal (/dev/sdd), logs (/dev/sde)" in str(caught.value)


def test_pgdata_and_tablespaces_must_lie_on_the_disks(tmp_path):
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "ts").mkdir()
    host = HostView(prepare_host(str(tmp_path / "host"), [("/dev/sdc", str(tmp_path / "pgdata")),
                                                          ("/dev/sdd", str(tmp_path / "ts"))]))
    disks = [Disk("pgdata", "/dev/sdc")]
    locate_mounts(disks, host, "db1")
    check_data_on_disks([str(tmp_path / "pgdata")], disks, host)
    with pytest.raises(SnapshotPreconditionError) as caught:
        check_data_on_disks([str(tmp_path / "pgdata"), str(tmp_path / "ts")], disks, host)
    assert "%s lies on /dev/sdd mounted at %s" % (tmp_path / "ts", tmp_path / "ts") in str(caught.value)
    assert "add the disk that holds it to snapshot_disks" in str(caught.value)


# --- snapshots_info -----------------------------------------------------------------------------------


class _Provider(SnapshotProvider):
    name = "gcp"
    snapshot_fields = ("device_name", "snapshot_name", "snapshot_project")

    def provider_info(self):
        return {"project": "acme"}


def test_snapshot_names_end_with_the_lower_case_backup_id():
    assert snapshot_name("pgdata", "20261125T023350") == "pgdata-20261125t023350"


def test_snapshots_info_is_what_the_reference_loads(tmp_path):
    host = HostView(prepare_host(str(tmp_path), [("/dev/sdc", "/srv/pgdata")],
                                 links={"/dev/disk/by-id/google-pgdata": "/dev/sdc"}))
    disks = [Disk("pgdata-disk", "/dev/disk/by-id/google-pgdata")]
    locate_mounts(disks, host, "db1")
    info = snapshots_info(_Provider(), disks, [{"snapshot_name": "pgdata-disk-20261125t023350",
                                                "device_name": "pgdata", "snapshot_project": "acme", "extra": 1}])
    assert info == {
        "provider": "gcp",
        "provider_info": {"project": "acme"},
        "snapshots": [{"mount": {"mount_options": "rw,noatime,errors=remount-ro", "mount_point": "/srv/pgdata"},
                       "provider": {"device_name": "pgdata", "snapshot_name": "pgdata-disk-20261125t023350",
                                    "snapshot_project": "acme"}}],
    }
    line = [line for line in layout.render({"snapshots_info": info}).decode().splitlines()
            if line.startswith("snapshots_info=")][0]
    loaded = ast.literal_eval(line.split("=", 1)[1])
    assert snapshots_info_from_dict(loaded).to_dict() == info  # the reference's own loader


# --- SnapshotConfig -----------------------------------------------------------------------------------


def config(**options):
    values = dict(snapshot_instance="i-0abc", snapshot_disks=["pgdata"])
    values.update(options)
    return SnapshotConfig(**values)


def in_days(days):
    moment = datetime.now(timezone.utc) + timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"


def test_valid_configs():
    assert config().provider == "aws"
    assert config(aws_snapshot_lock_mode="compliance", aws_snapshot_lock_duration=30,
                  aws_snapshot_lock_cool_off_period=72).aws_snapshot_lock_duration == 30
    assert config(aws_snapshot_lock_mode="governance", aws_snapshot_lock_expiration_date=in_days(2)).lock_expiration()
    assert config(cloud_provider="google-cloud-storage", gcp_project="p", gcp_zone="z").provider == "gcp"
    assert config(cloud_provider="azure-blob-storage", azure_subscription_id="s",
                  azure_resource_group="rg").provider == "azure"


@pytest.mark.parametrize("options, parameter, message", [
    ({"snapshot_disks": []}, "snapshot_disks", "a snapshot backup needs snapshot_disks"),
    ({"snapshot_instance": ""}, "snapshot_instance", "needs snapshot_instance"),
    ({"snapshot_disks": ["a", "b", "a"]}, "snapshot_disks", "snapshot_disks names a more than once"),
    ({"aws_await_snapshots_timeout": 0}, "aws_await_snapshots_timeout", "positive number of seconds"),
    ({"cloud_provider": "google-cloud-storage", "gcp_zone": "z"}, "gcp_project", "gcp_project is required"),
    ({"cloud_provider": "google-cloud-storage", "gcp_project": "p"}, "gcp_zone", "gcp_zone is required"),
    ({"cloud_provider": "azure-blob-storage", "azure_resource_group": "rg"}, "azure_subscription_id",
     "azure_subscription_id is required"),
    ({"cloud_provider": "azure-blob-storage", "azure_subscription_id": "s"}, "azure_resource_group",
     "azure_resource_group is required"),
    ({"cloud_provider": "google-cloud-storage", "gcp_project": "p", "gcp_zone": "z", "aws_snapshot_lock_mode": "governance",
      "aws_snapshot_lock_duration": 1}, "aws_snapshot_lock_mode", "needs cloud_provider=aws-s3"),
    ({"aws_snapshot_lock_mode": "legal-hold", "aws_snapshot_lock_duration": 1}, "aws_snapshot_lock_mode",
     "is not one of governance, compliance"),
    ({"aws_snapshot_lock_mode": "compliance"}, "aws_snapshot_lock_mode",
     "needs aws_snapshot_lock_duration (days) or aws_snapshot_lock_expiration_date"),
    ({"aws_snapshot_lock_duration": 3}, "aws_snapshot_lock_duration", "has no effect without aws_snapshot_lock_mode"),
    ({"aws_snapshot_lock_mode": "compliance", "aws_snapshot_lock_duration": 3,
      "aws_snapshot_lock_expiration_date": in_days(3)}, "aws_snapshot_lock_duration", "are exclusive"),
    ({"aws_snapshot_lock_mode": "compliance", "aws_snapshot_lock_duration": 0}, "aws_snapshot_lock_duration",
     "from 1 to 36500"),
    ({"aws_snapshot_lock_mode": "compliance", "aws_snapshot_lock_duration": 36501}, "aws_snapshot_lock_duration",
     "from 1 to 36500"),
    ({"aws_snapshot_lock_mode": "governance", "aws_snapshot_lock_duration": 3, "aws_snapshot_lock_cool_off_period": 1},
     "aws_snapshot_lock_cool_off_period", "applies to the compliance mode only"),
    ({"aws_snapshot_lock_mode": "compliance", "aws_snapshot_lock_duration": 3, "aws_snapshot_lock_cool_off_period": 73},
     "aws_snapshot_lock_cool_off_period", "whole number of hours from 1 to 72"),
    ({"aws_snapshot_lock_mode": "compliance", "aws_snapshot_lock_expiration_date": "2031-01-31"},
     "aws_snapshot_lock_expiration_date", "YYYY-MM-DDTHH:MM:SS.sssZ"),
    ({"aws_snapshot_lock_mode": "compliance", "aws_snapshot_lock_expiration_date": in_days(0.5)},
     "aws_snapshot_lock_expiration_date", "less than a day ahead"),
])
def test_invalid_configs_name_the_parameter_and_the_fix(options, parameter, message):
    with pytest.raises(ConfigurationError) as caught:
        config(**options)
    assert caught.value.parameter == parameter
    assert message in str(caught.value)
