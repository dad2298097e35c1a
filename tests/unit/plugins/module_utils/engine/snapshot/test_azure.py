# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""snapshot_azure.py: the real azure-mgmt-compute client against FakeAzureCompute
(tests/utils/fake_clouds.py), a loopback server answering the documented Resource Manager calls
over TLS with a certificate made for the test (the SDK's bearer-token policy refuses plain
HTTP), with a static token credential. No emulator of Azure Compute exists.

The snapshot job's backup.info goes to the in-memory store here: the snapshot provider and the
object store are independent, so an Azure snapshot backup may keep its metadata anywhere.
"""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import (
    BackupConfig,
    PostgresConfig,
    SnapshotConfig,
    StorageConfig,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import (
    ConfigurationError,
    SnapshotError,
    SnapshotPreconditionError,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.snapshot.base import HostView
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.snapshot.azure import AzureSnapshots, credential_for
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.jobs.snapshot_backup import SnapshotBackupJob
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.jobs.test_base_backup import RecordingSession
from ansible_collections.pgcloud.backup.tests.utils.fake_clouds import FakeAzureCompute, StaticToken, prepare_host

SUBSCRIPTION, GROUP = "00000000-0000-0000-0000-000000000001", "databases"


@pytest.fixture
def azure(tmp_path):
    with FakeAzureCompute(SUBSCRIPTION, GROUP, str(tmp_path)) as fake:
        fake.add_vm("db1-vm", {0: "db1-pgdata", 1: "db1-ts"})
        yield fake


def config(**options):
    values = dict(snapshot_instance="db1-vm", snapshot_disks=["db1-pgdata"], cloud_provider="azure-blob-storage",
                  azure_subscription_id=SUBSCRIPTION, azure_resource_group=GROUP)
    values.update(options)
    return SnapshotConfig(**values)


def provider(azure, host, **options):
    storage = StorageConfig(destination_url="s3://bucket/pg", server_name="db1")
    return AzureSnapshots(config(**options), storage, host, credential=StaticToken(),
                          client_options={"base_url": azure.endpoint_url, "connection_verify": azure.ca_file,
                                          "retry_total": 0})


def test_disks_are_found_by_name_with_their_lun_device(azure, tmp_path):
    disks = provider(azure, HostView(str(tmp_path))).find_disks("db1-vm", ["db1-ts", "db1-pgdata"])
    assert [(disk.name, disk.device, disk.details["lun"]) for disk in disks] == [
        ("db1-ts", "/dev/disk/azure/scsi1/lun1", 1), ("db1-pgdata", "/dev/disk/azure/scsi1/lun0", 0)]


def test_missing_vm_and_unattached_disks(azure, tmp_path):
    provider_ = provider(azure, HostView(str(tmp_path)))
    with pytest.raises(SnapshotPreconditionError, match="cannot find compute instance db2 in resource group databases"):
        provider_.find_disks("db2", ["db1-pgdata"])
    with pytest.raises(SnapshotPreconditionError, match="cannot find disks attached to compute instance db1-vm: x"):
        provider_.find_disks("db1-vm", ["db1-pgdata", "x"])


def test_incremental_snapshots_are_created_and_polled(azure, tmp_path):
    provider_ = provider(azure, HostView(str(tmp_path)))
    taken = provider_.take(provider_.find_disks("db1-vm", ["db1-pgdata"]), "20261125T023350")
    assert taken == [{"location": "westeurope", "lun": 0, "snapshot_name": "db1-pgdata-20261125t023350"}]
    snapshot = azure.snapshots["db1-pgdata-20261125t023350"]
    assert snapshot["properties"]["incremental"] is True
    assert snapshot["properties"]["creationData"] == {
        "createOption": "Copy", "sourceResourceId": "%s/disks/db1-pgdata" % azure.group_path}
    assert snapshot["properties"]["provisioningState"] == "Succeeded"
    assert any("/operations/" in path for method, path in azure.requests if method == "GET")  # polled
    assert provider_.provider_info() == {"subscription_id": SUBSCRIPTION, "resource_group": GROUP}


def test_a_failed_snapshot_is_a_snapshot_error(azure, tmp_path):
    azure.fail_snapshots = True
    provider_ = provider(azure, HostView(str(tmp_path)))
    with pytest.raises(SnapshotError, match="Snapshot quota exceeded"):
        provider_.take(provider_.find_disks("db1-vm", ["db1-pgdata"]), "20261125T023350")


def test_credentials_follow_azure_credential():
    assert type(credential_for("azure-cli")).__name__ == "AzureCliCredential"
    assert type(credential_for("managed-identity")).__name__ == "ManagedIdentityCredential"
    assert type(credential_for(None)).__name__ == "DefaultAzureCredential"
    with pytest.raises(ConfigurationError):
        credential_for("password")


def test_snapshot_backup_on_azure(azure, store, facts, tmp_path):  # noqa: F811
    host = HostView(prepare_host(str(tmp_path / "host"), [("/dev/sdc", facts.data_directory),
                                                          ("/dev/sdd", facts.tablespaces[0][2])],
                                 links={"/dev/disk/azure/scsi1/lun0": "/dev/sdc",
                                        "/dev/disk/azure/scsi1/lun1": "/dev/sdd"}))
    snapshot = config(snapshot_disks=["db1-pgdata", "db1-ts"])
    storage = StorageConfig(destination_url="s3://test-bucket/some/path", server_name="db1")
    job = SnapshotBackupJob(storage, PostgresConfig(keepalive_interval=0), snapshot, BackupConfig(), store=store,
                            provider=provider(azure, host), host=host)
    job._prepare(facts)
    result = job._take(RecordingSession(), facts).as_dict()
    info = layout.parse(store.objects["some/path/db1/base/%s/backup.info" % result["backup_id"]])["snapshots_info"]
    assert (info["provider"], info["provider_info"]) == ("azure", {"subscription_id": SUBSCRIPTION,
                                                                   "resource_group": GROUP})
    lower = result["backup_id"].lower()
    assert [item["provider"] for item in info["snapshots"]] == [
        {"location": "westeurope", "lun": 0, "snapshot_name": "db1-pgdata-%s" % lower},
        {"location": "westeurope", "lun": 1, "snapshot_name": "db1-ts-%s" % lower}]


def test_recovery_finds_the_disks_made_from_the_snapshots(azure, tmp_path):
    azure.add_vm("recovery-vm", {0: "plain", 2: "restored-pgdata", 3: "restored-ts"},
                 sources={"restored-pgdata": "db1-pgdata-20260125t031500", "restored-ts": "other-snapshot"})
    found = provider(azure, HostView(str(tmp_path))).disks_from_snapshots(
        "recovery-vm", [{"snapshot_name": "db1-pgdata-20260125t031500", "lun": 0},
                        {"snapshot_name": "db1-ts-20260125t031500", "lun": 1}])
    assert {name: (disk.name, disk.device) for name, disk in found.items()} == {
        "db1-pgdata-20260125t031500": ("restored-pgdata", "/dev/disk/azure/scsi1/lun2")}
    with pytest.raises(SnapshotPreconditionError, match="cannot find compute instance nope"):
        provider(azure, HostView(str(tmp_path))).disks_from_snapshots("nope", [])
