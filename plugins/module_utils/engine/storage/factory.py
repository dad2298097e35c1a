# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store of a destination: which provider module serves a cloud_provider.

A provider module has `parse_url(url)` (bucket, path inside it, and Azure's account URL) and
one `ObjectStore` class, `STORE`; it is imported only when its provider is asked for, so a host needs
only the SDK of the store it writes to. A new provider is one module here and a branch in `_provider_module`.
"""

from __future__ import annotations

from types import ModuleType

from ..config import StorageConfig
from ..errors import ConfigurationError
from .base import Destination, ObjectStore


def _provider_module(cloud_provider: str) -> ModuleType:
    # Plain imports, not importlib: Ansible packs a module's module_utils by reading its imports.
    if cloud_provider == "azure-blob-storage":
        from . import azure

        return azure
    if cloud_provider == "google-cloud-storage":
        from . import gcs

        return gcs
    from . import s3

    return s3


# Object keys are at most 1024 bytes (S3, Cloud Storage) or characters (Azure); the engine adds
# up to 64 bytes below the server's folder (base/<backup id>/<tablespace>_<part>.tar.<ext>).
MAX_KEY_BYTES = 1024
KEY_SUFFIX_RESERVE = 64


def parse_destination(config: StorageConfig) -> Destination:
    """Split destination_url as the reference tools do, so that they find what is written."""
    bucket, prefix, account_url = _provider_module(config.cloud_provider).parse_url(config.destination_url)
    destination = Destination(config.destination_url, config.cloud_provider, bucket, prefix, config.server_name,
                              account_url)
    if len(destination.key().encode("utf-8")) > MAX_KEY_BYTES - KEY_SUFFIX_RESERVE:
        raise ConfigurationError(
            "the path of destination_url and server_name together are %d bytes long; object keys are limited to "
            "%d bytes, which leaves at most %d for them: shorten one" % (
                len(destination.key().encode("utf-8")), MAX_KEY_BYTES, MAX_KEY_BYTES - KEY_SUFFIX_RESERVE),
            "destination_url")
    return destination


def open_store(config: StorageConfig) -> ObjectStore:
    store: ObjectStore = _provider_module(config.cloud_provider).STORE(parse_destination(config), config)
    return store
