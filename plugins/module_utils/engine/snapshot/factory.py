# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot provider of a cloud_provider. A provider module (aws, azure, gcp) holds one
`SnapshotProvider`; it is imported only here, when asked for, with its SDK."""

from __future__ import annotations

from ..config import SnapshotConfig, StorageConfig
from ..errors import ConfigurationError
from .base import HostView, SnapshotProvider


def open_snapshot_provider(snapshot: SnapshotConfig, storage: StorageConfig, host: HostView) -> SnapshotProvider:
    """The provider of snapshot.cloud_provider; its SDK is imported only here."""
    if snapshot.provider == "aws":
        from .aws import AwsSnapshots

        return AwsSnapshots(snapshot, storage, host)
    if snapshot.provider == "azure":
        from .azure import AzureSnapshots

        return AzureSnapshots(snapshot, storage, host)
    if snapshot.provider == "gcp":
        from .gcp import GcpSnapshots

        return GcpSnapshots(snapshot, storage, host)
    raise ConfigurationError("cloud_provider=%s has no snapshot support" % snapshot.cloud_provider, "cloud_provider")
