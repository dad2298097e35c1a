# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_gcp.py: the real google-cloud-compute REST client against FakeComputeEngine
(tests/utils/fake_clouds.py), a loopback server answering the documented Compute Engine calls,
with anonymous credentials. No emulator of Compute Engine exists.

The snapshot job's backup.info goes to the in-memory store here: the snapshot provider and the
object store are independent, so a GCP snapshot backup may keep its metadata anywhere.
"""

from __future__ import annotations

import pytest
from google.auth.credentials import AnonymousCredentials

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import (
    BackupConfig,
    PostgresConfig,
    SnapshotConfig,
    StorageConfig,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import SnapshotError, SnapshotPreconditionError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.snapshot.base import HostView
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.snapshot.gcp import GcpSnapshots
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.jobs.snapshot_backup import SnapshotBackupJob
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.jobs.test_base_backup import RecordingSession
from ansible_collections.pgcloud.backup.tests.utils.fake_clouds import FakeComputeEngine, prepare_host

PROJECT, ZONE = "acme-prod", "europe-west1-b"


@pytest.fixture
def compute():
    with FakeComputeEngine(PROJECT, ZONE) as fake:
        fake.add_instance("db1", {"pgdata": "db1-pgdata", "pgts": "db1-ts"})
        yield fake


def config(**options):
    values = dict(snapshot_instance="db1", snapshot_disks=["db1-pgdata"], cloud_provider="google-cloud-storage",
                  gcp_project=PROJECT, gcp_zone=ZONE)
    values.update(options)
    return SnapshotConfig(**values)


def provider(compute, host, **options):
    storage = StorageConfig(destination_url="s3://bucket/pg", server_name="db1")
    return GcpSnapshots(config(**options), storage, host, credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": compute.endpoint_url})


def test_disks_are_found_by_name_with_their_by_id_device(compute, tmp_path):
    disks = provider(compute, HostView(str(tmp_path))).find_disks("db1", ["db1-pgdata", "db1-ts"])
    assert [(disk.name, disk.device) for disk in disks] == [("db1-pgdata", "/dev/disk/by-id/google-pgdata"),
                                                            ("db1-ts", "/dev/disk/by-id/google-pgts")]
    paths = [path for method, path in compute.requests]
    assert "/compute/v1/projects/%s/zones/%s/instances/db1" % (PROJECT, ZONE) in paths
    assert "/compute/v1/projects/%s/zones/%s/disks/db1-ts" % (PROJECT, ZONE) in paths


def test_missing_instance_and_unattached_disks(compute, tmp_path):
    gcp = provider(compute, HostView(str(tmp_path)))
    with pytest.raises(SnapshotPreconditionError, match="cannot find compute instance db2 in project acme-prod"):
        gcp.find_disks("db2", ["db1-pgdata"])
    with pytest.raises(SnapshotPreconditionError, match="cannot find disks attached to compute instance db1: other"):
        gcp.find_disks("db1", ["db1-pgdata", "other"])


def test_snapshots_are_inserted_and_waited_for(compute, tmp_path):
    gcp = provider(compute, HostView(str(tmp_path)))
    taken = gcp.take(gcp.find_disks("db1", ["db1-pgdata"]), "20261125T023350")
    assert taken == [{"device_name": "pgdata", "snapshot_name": "db1-pgdata-20261125t023350",
                      "snapshot_project": PROJECT}]
    snapshot = compute.snapshots["db1-pgdata-20261125t023350"]
    assert snapshot["status"] == "READY"
    assert snapshot["sourceDisk"] == "projects/%s/zones/%s/disks/db1-pgdata" % (PROJECT, ZONE)
    assert any("/global/operations/" in path for _method, path in compute.requests)  # the operation was polled
    assert gcp.provider_info() == {"project": PROJECT}


def test_a_failed_operation_is_a_snapshot_error(compute, tmp_path):
    compute.fail_snapshots = True
    gcp = provider(compute, HostView(str(tmp_path)))
    with pytest.raises(SnapshotError, match="snapshot db1-pgdata-20261125t023350 failed"):
        gcp.take(gcp.find_disks("db1", ["db1-pgdata"]), "20261125T023350")


def test_snapshot_backup_on_gcp(compute, store, facts, tmp_path):  # noqa: F811
    host = HostView(prepare_host(str(tmp_path / "host"), [("/dev/sdb", facts.data_directory),
                                                          ("/dev/sdc", facts.tablespaces[0][2])],
                                 links={"/dev/disk/by-id/google-pgdata": "/dev/sdb",
                                        "/dev/disk/by-id/google-pgts": "/dev/sdc"}))
    snapshot = config(snapshot_disks=["db1-pgdata", "db1-ts"])
    storage = StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1")
    gcp = provider(compute, host, snapshot_disks=["db1-pgdata", "db1-ts"])
    job = SnapshotBackupJob(storage, PostgresConfig(keepalive_interval=0), snapshot, BackupConfig(), store=store,
                            provider=gcp, host=host)
    job._prepare(facts)
    result = job._take(RecordingSession(), facts).as_dict()
    done = layout.parse(store.objects["some/path/db1/base/%s/backup.info" % result["backup_id"]])
    info = done["snapshots_info"]
    assert (info["provider"], info["provider_info"]) == ("gcp", {"project": PROJECT})
    assert [item["provider"] for item in info["snapshots"]] == [
        {"device_name": "pgdata", "snapshot_name": "db1-pgdata-%s" % result["backup_id"].lower(),
         "snapshot_project": PROJECT},
        {"device_name": "pgts", "snapshot_name": "db1-ts-%s" % result["backup_id"].lower(),
         "snapshot_project": PROJECT}]
    assert [item["mount"]["mount_point"] for item in info["snapshots"]] == [facts.data_directory,
                                                                            facts.tablespaces[0][2]]


def test_recovery_finds_the_disks_made_from_the_snapshots(compute, tmp_path):
    compute.add_instance("recovery", {"data": "restored-pgdata", "other": "restored-other"})
    compute.disks["restored-pgdata"]["sourceSnapshot"] = compute.link("global/snapshots/db1-pgdata-20260125t031500")
    compute.disks["restored-other"]["sourceSnapshot"] = compute.link("global/snapshots/unrelated")
    found = provider(compute, HostView(str(tmp_path))).disks_from_snapshots(
        "recovery", [{"snapshot_name": "db1-pgdata-20260125t031500"}, {"snapshot_name": "db1-ts-20260125t031500"}])
    assert {name: (disk.name, disk.device) for name, disk in found.items()} == {
        "db1-pgdata-20260125t031500": ("restored-pgdata", "/dev/disk/by-id/google-data")}
    with pytest.raises(SnapshotPreconditionError, match="cannot find compute instance nope"):
        provider(compute, HostView(str(tmp_path))).disks_from_snapshots("nope", [])
