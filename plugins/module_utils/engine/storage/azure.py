# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Blob Storage (and Azurite), through azure-storage-blob.

An object written in parts is a block blob: each part is a staged block, and committing the
block list makes the blob. Block ids are the zero-padded part numbers, as the reference tool
writes them.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from ..config import StorageConfig
from ..errors import (
    BucketNotFoundError,
    ConfigurationError,
    MissingDependencyError,
    StorageAccessDeniedError,
    StorageError,
    StorageUnreachableError,
    first_line,
)
from ..inputs import check_host, check_key_path, split_url
from .base import Destination, ObjectStore, ObjectStream, Payload, StoredObject, read_listing, url_error

try:
    import azure.core.exceptions as azure_errors
    from azure.storage.blob import BlobBlock, BlobPrefix, ContainerClient, ExponentialRetry
except ImportError as error:  # pragma: no cover - depends on the host
    ContainerClient = None
    AZURE_IMPORT_ERROR: Optional[ImportError] = error
else:
    AZURE_IMPORT_ERROR = None

# Where the credential comes from, in this order: a parameter, azure_credential, then the
# environment variables the reference tool reads.
SECRET_SOURCES = (
    ("azure_storage_connection_string", "AZURE_STORAGE_CONNECTION_STRING"),
    ("azure_storage_sas_token", "AZURE_STORAGE_SAS_TOKEN"),
    ("azure_storage_key", "AZURE_STORAGE_KEY"),
)
_DENIED_STATUSES = (401, 403)


AZURE_BLOB_DOMAIN = ".blob.core.windows.net"


# Container names: lowercase letters, digits and hyphens, a letter or digit at both ends (the
# service also wants 3 characters at least, which it says itself). Account names: letters and digits.
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9]{1,64}$")


def parse_url(url: str) -> Tuple[str, str, str]:
    """Container, path and account URL of https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH
    (or http://HOST:PORT/ACCOUNT/CONTAINER/PATH for an emulator)."""
    expected = ("https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH, or "
                "http://HOST:PORT/ACCOUNT/CONTAINER/PATH for an emulator")
    parts = split_url(url, "destination_url", expected)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise url_error(url, expected, "azure-blob-storage")
    check_host(parts, "destination_url", expected)
    path = check_key_path(parts.path, "destination_url", "destination_url=%r" % url)
    segments = path.split("/") if path else []
    account_url = "%s://%s" % (parts.scheme, parts.netloc)
    if not parts.host.lower().endswith(AZURE_BLOB_DOMAIN):
        # An emulator names the account in the path: http://HOST:PORT/ACCOUNT/CONTAINER/PATH.
        if not segments:
            raise url_error(url, expected + " (the account is required)", "azure-blob-storage")
        _check_name(_ACCOUNT, segments[0], "account", url)
        account_url, segments = account_url + "/" + segments[0], segments[1:]
    if not segments:
        raise url_error(url, expected + " (the container is required)", "azure-blob-storage")
    _check_name(_CONTAINER, segments[0], "container", url)
    return segments[0], "/".join(segments[1:]), account_url


def _check_name(pattern: Any, name: str, kind: str, url: str) -> None:
    if not pattern.match(name):
        rule = ("lowercase letters, digits and hyphens, with a letter or a digit at both ends"
                if kind == "container" else "letters and digits")
        raise ConfigurationError("destination_url=%r names the %s %r: an Azure %s name holds %s"
                                 % (url, kind, name, kind, rule), "destination_url")


def select_credential(config: StorageConfig, environ: Optional[Mapping[str, str]] = None) -> Tuple[str, Optional[str]]:
    """(kind, secret): kind is a SECRET_SOURCES parameter name, or an azure_credential choice."""
    environ = os.environ if environ is None else environ
    for parameter, _variable in SECRET_SOURCES:
        if getattr(config, parameter):
            return parameter, getattr(config, parameter)
    if config.azure_credential:
        return config.azure_credential, None
    for parameter, variable in SECRET_SOURCES:
        if environ.get(variable):
            return parameter, environ[variable]
    return "default", None


def identity_credential(kind: str) -> Any:
    """An azure-identity credential for an azure_credential choice."""
    try:
        import azure.identity
    except ImportError as error:
        raise MissingDependencyError("azure-identity", "azure_credential: %s" % kind, error)
    classes = {"azure-cli": "AzureCliCredential", "managed-identity": "ManagedIdentityCredential",
               "default": "DefaultAzureCredential"}
    return getattr(azure.identity, classes[kind])()


def account_key_credential(account_url: str, key: str) -> Dict[str, str]:
    """A shared key credential: the account name is the host's first label, or an emulator's path."""
    host, path = account_url.split("://", 1)[-1].partition("/")[::2]
    account = path.strip("/") or host.split(".", 1)[0]
    return {"account_name": account, "account_key": key}


class AzureBlobStore(ObjectStore):
    # 50000 blocks of at least 64 KiB per blob (the service limits).
    min_chunk_size = 64 << 10
    max_chunks = 50000

    def __init__(self, destination: Destination, config: StorageConfig) -> None:
        super().__init__(destination, config)
        if ContainerClient is None:
            raise MissingDependencyError("azure-storage-blob", "cloud_provider: azure-blob-storage", AZURE_IMPORT_ERROR)
        self.container = destination.bucket
        self.client = self._client(destination, config)
        self.write_args: Dict[str, Any] = {}
        if config.encryption_scope:
            self.write_args["encryption_scope"] = config.encryption_scope

    def _client(self, destination: Destination, config: StorageConfig) -> Any:
        kind, secret = select_credential(config)
        options: Dict[str, Any] = {
            # The SDK's default backoff starts at 15 s: an unreachable endpoint would take minutes to report.
            "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=3, retry_total=5, retry_connect=2),
            "read_timeout": config.read_timeout or 60,
            "max_single_put_size": 64 << 20,
        }
        if kind == "azure_storage_connection_string":
            try:
                return ContainerClient.from_connection_string(secret, self.container, **options)
            except ValueError as error:
                raise ConfigurationError("the Azure connection string is not valid: %s" % error,
                                         "azure_storage_connection_string")
        if kind == "azure_storage_key":
            credential: Any = account_key_credential(destination.account_url or "", secret or "")
        elif kind == "azure_storage_sas_token":
            credential = secret
        else:
            if not (destination.account_url or "").startswith("https://"):
                raise ConfigurationError(
                    "Azure %s credentials need an https:// destination_url; for an emulator give "
                    "azure_storage_connection_string or azure_storage_key" % kind, "destination_url")
            credential = identity_credential(kind)
        return ContainerClient(destination.account_url, self.container, credential=credential, **options)

    def _call(self, action: str, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except azure_errors.ResourceNotFoundError as error:
            if _error_code(error) == "ContainerNotFound":
                raise BucketNotFoundError(
                    "container %r does not exist at %s; create it or fix destination_url"
                    % (self.container, self.destination.account_url))
            raise _MissingBlob(str(error))
        except azure_errors.ClientAuthenticationError as error:
            if error.status_code is None:  # azure-identity found no credential; no request was made
                raise StorageAccessDeniedError(
                    "no Azure credential found (%s): give azure_storage_connection_string, azure_storage_sas_token "
                    "or azure_storage_key, or choose azure_credential" % first_line(error))
            raise self._denied(action, error)
        except azure_errors.ServiceRequestError as error:
            raise StorageUnreachableError("cannot reach Azure Blob Storage at %s to %s: %s; check destination_url "
                                          "and the network" % (self.destination.account_url, action, first_line(error)))
        except azure_errors.HttpResponseError as error:
            if error.status_code in _DENIED_STATUSES:
                raise self._denied(action, error)
            raise StorageError("Azure %s failed in container %r (%s %s)"
                               % (action, self.container, error.status_code, first_line(error)))
        except azure_errors.AzureError as error:
            raise StorageError("Azure %s failed: %s" % (action, first_line(error)))

    def _denied(self, action: str, error: Any) -> StorageAccessDeniedError:
        return StorageAccessDeniedError(
            "Azure refused to %s (container %r: %s %s); check the credential and its role on the "
            "storage account" % (action, self.container, getattr(error, "status_code", ""), _error_code(error)))

    def check(self) -> None:
        self._call("read the container's properties", self.client.get_container_properties)

    def put_object(self, key: str, data: Payload) -> None:
        blob = self.client.get_blob_client(key)
        # The SDK reads a bytearray as an iterable of ints: it needs bytes.
        self._call("upload %s" % key, blob.upload_blob, bytes(data), overwrite=True,
                   tags=self.config.tags or None, validate_content=True, **self.write_args)

    def create_object(self, key: str, data: bytes) -> bool:
        blob = self.client.get_blob_client(key)

        def upload_if_none_match() -> bool:
            try:
                # overwrite=False sends If-None-Match: *
                blob.upload_blob(bytes(data), overwrite=False, tags=self.config.tags or None, validate_content=True,
                                 **self.write_args)
            except azure_errors.ResourceExistsError:
                return False
            return True

        return self._call("create %s" % key, upload_if_none_match)

    def get_object(self, key: str) -> Optional[bytes]:
        blob = self.client.get_blob_client(key)
        try:
            return self._call("read %s" % key, lambda: blob.download_blob().readall())
        except _MissingBlob:
            return None

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        items = self._call("list %s" % prefix, self.client.list_blobs, name_starts_with=prefix)
        for item in read_listing(self._call, "list %s" % prefix, items):
            yield StoredObject(item.name, int(item.size))

    def list_folders(self, prefix: str) -> Iterator[str]:
        items = self._call("list %s" % prefix, self.client.walk_blobs, name_starts_with=prefix, delimiter="/")
        for item in read_listing(self._call, "list %s" % prefix, items):
            if isinstance(item, BlobPrefix):
                yield item.name[len(prefix):].rstrip("/")

    def create_multipart(self, key: str) -> Any:
        return self.client.get_blob_client(key)

    def upload_part(self, key: str, upload: Any, number: int, data: Payload) -> Any:
        block_id = "%05d" % number
        # The block's MD5 goes in Content-MD5, which the service checks before it stores the
        # block. Computed here: the SDK's validate_content takes bytes only, and a copy of each
        # part buffer would double the memory of the parts in flight.
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        self._call("upload block %d of %s" % (number, key), upload.stage_block, block_id, data,
                   length=len(data), transactional_content_md5=md5, **self.write_args)
        return block_id

    def complete_multipart(self, key: str, upload: Any, parts: List[Any]) -> None:
        blocks = [BlobBlock(block_id=block_id) for block_id in sorted(parts)]
        self._call("commit the blocks of %s" % key, upload.commit_block_list, blocks,
                   tags=self.config.tags or None, **self.write_args)

    def abort_multipart(self, key: str, upload: Any) -> None:
        # Azure keeps uncommitted blocks for a week; committing an empty list discards them
        # now, and the empty blob it leaves is deleted.
        self._call("discard the blocks of %s" % key, upload.commit_block_list, [], **self.write_args)
        self._call("delete %s" % key, upload.delete_blob)

    # A blob batch request holds at most 256 sub-requests.
    delete_batch_size = 256

    def delete_objects(self, keys: List[str]) -> None:
        for start in range(0, len(keys), self.delete_batch_size):
            batch = keys[start:start + self.delete_batch_size]
            responses = self._call("delete %d blobs from %s" % (len(batch), batch[0]), self._delete_batch, batch)
            # 202: deleted; 404: not there, which is what was asked.
            failed = [(key, response.status_code) for key, response in zip(batch, responses)
                      if response.status_code not in (202, 404)]
            if failed:
                raise StorageError("Azure refused to delete %d of %d blobs in container %r, such as %s (status %s)"
                                   % (len(failed), len(batch), self.container, failed[0][0], failed[0][1]))

    def _delete_batch(self, batch: List[str]) -> List[Any]:
        return list(self.client.delete_blobs(*batch, raise_on_any_failure=False))

    def open_read(self, key: str) -> Any:
        blob = self.client.get_blob_client(key)
        downloader = self._call("read %s" % key, blob.download_blob, max_concurrency=1)
        return ObjectStream(lambda size: self._call("read %s" % key, downloader.read, size), lambda: None)


class _MissingBlob(StorageError):
    """A read of a blob that is not there; get_object turns it into None."""


def _error_code(error: Any) -> str:
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "")


STORE = AzureBlobStore
