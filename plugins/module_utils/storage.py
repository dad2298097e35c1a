# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The object store seen by the engine: a few operations every provider implements.

Keys handed to a store are full keys inside its bucket; `Destination.key()` builds them from
the URL's path, the server name and the parts below it, as the reference layout does.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import urlparse

from .config import StorageConfig
from .errors import ConfigurationError

TIB = 1 << 40

# An access point ARN names the bucket and holds slashes itself: s3://ARN/path.
_ACCESS_POINT = re.compile(
    r"^(arn:[a-z-]+:(?:s3|s3-object-lambda):[a-z0-9-]*:\d{12}:accesspoint/[^/]+"
    r"|arn:[a-z-]+:s3-outposts:[a-z0-9-]+:\d{12}:outpost/[^/]+/accesspoint/[^/]+)(/.*)?$"
)


AZURE_BLOB_DOMAIN = ".blob.core.windows.net"
# The console URL of a bucket that users copy from their browser; the reference tool takes it.
GCS_CONSOLE_PREFIX = "https://console.cloud.google.com/storage/browser/"


@dataclass(frozen=True)
class Destination:
    """A parsed destination_url: the bucket (or container) and the path inside it.

    `account_url` is Azure's: the service URL of the storage account
    (http://HOST:PORT/ACCOUNT for an emulator such as Azurite).
    """

    url: str
    cloud_provider: str
    bucket: str
    prefix: str
    server_name: str
    account_url: Optional[str] = None

    def key(self, *parts: str) -> str:
        return posixpath.join(self.prefix, self.server_name, *parts)

    def url_of(self, *parts: str) -> str:
        return self.url.rstrip("/") + "/" + posixpath.join(self.server_name, *parts)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def parse_destination(config: StorageConfig) -> Destination:
    """Split destination_url as the reference tools do, so that they find what is written."""
    parse = {"aws-s3": _parse_s3, "azure-blob-storage": _parse_azure, "google-cloud-storage": _parse_gcs}
    bucket, prefix, account_url = parse[config.cloud_provider](config.destination_url)
    return Destination(config.destination_url, config.cloud_provider, bucket, prefix, config.server_name,
                       account_url)


def _url_error(url: str, expected: str, provider: str) -> ConfigurationError:
    return ConfigurationError(
        "destination_url=%r is not a URL of cloud_provider %s: use %s" % (url, provider, expected),
        "destination_url",
    )


def _parse_s3(url: str) -> Tuple[str, str, None]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise _url_error(url, "s3://BUCKET/PATH", "aws-s3")
    access_point = _ACCESS_POINT.match(parsed.netloc + parsed.path)
    if access_point:
        return access_point.group(1), (access_point.group(2) or "").strip("/"), None
    return parsed.netloc, parsed.path.strip("/"), None


def _parse_azure(url: str) -> Tuple[str, str, str]:
    parsed = urlparse(url)
    expected = ("https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH, or "
                "http://HOST:PORT/ACCOUNT/CONTAINER/PATH for an emulator")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise _url_error(url, expected, "azure-blob-storage")
    segments = parsed.path.split("/")[1:]
    account_url = "%s://%s" % (parsed.scheme, parsed.netloc)
    if not (parsed.hostname or "").endswith(AZURE_BLOB_DOMAIN):
        # An emulator names the account in the path: http://HOST:PORT/ACCOUNT/CONTAINER/PATH.
        if not segments[0]:
            raise _url_error(url, expected + " (the account is required)", "azure-blob-storage")
        account_url, segments = account_url + "/" + segments[0], segments[1:]
    if not segments or not segments[0]:
        raise _url_error(url, expected + " (the container is required)", "azure-blob-storage")
    return segments[0], "/".join(segments[1:]).strip("/"), account_url


def _parse_gcs(url: str) -> Tuple[str, str, None]:
    if url.startswith(GCS_CONSOLE_PREFIX):
        bucket, path = url[len(GCS_CONSOLE_PREFIX):].partition("/")[::2]
    else:
        parsed = urlparse(url)
        if parsed.scheme != "gs":
            raise _url_error(url, "gs://BUCKET/PATH", "google-cloud-storage")
        bucket, path = parsed.netloc, parsed.path
    if not bucket:
        raise _url_error(url, "gs://BUCKET/PATH (the bucket is required)", "google-cloud-storage")
    return bucket, path.strip("/"), None


class ObjectStore:
    """Operations on one bucket. Implementations translate their SDK's errors to errors.py."""

    # Limits of the provider's multipart protocol.
    min_chunk_size = 5 << 20
    max_chunks = 10000
    max_archive_size = TIB

    def __init__(self, destination: Destination, config: StorageConfig) -> None:
        self.destination = destination
        self.config = config

    def check(self) -> None:
        """Raise StorageUnreachableError, BucketNotFoundError or StorageAccessDeniedError."""
        raise NotImplementedError

    def put_object(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def get_object(self, key: str) -> Optional[bytes]:
        """The object's bytes, or None when it does not exist."""
        raise NotImplementedError

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        raise NotImplementedError

    def list_folders(self, prefix: str) -> Iterator[str]:
        """Names of the `folders` right below prefix (which ends with a slash)."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        return any(obj.key == key for obj in self.list_objects(key))

    def create_multipart(self, key: str) -> Any:
        """Start an upload in parts; returns the handle the other part calls take."""
        raise NotImplementedError

    def upload_part(self, key: str, upload: Any, number: int, data: bytes) -> Any:
        """Upload part `number` (from 1); returns what complete_multipart needs of it."""
        raise NotImplementedError

    def complete_multipart(self, key: str, upload: Any, parts: List[Any]) -> None:
        raise NotImplementedError

    def abort_multipart(self, key: str, upload: Any) -> None:
        raise NotImplementedError


def read_listing(call: Callable[..., Any], action: str, items: Iterable[Any]) -> Iterator[Any]:
    """The items of an SDK's paged listing, each page fetched through call (a store's error
    translation), since the pages are requested, and may fail, while the listing is read."""
    iterator = iter(items)
    while True:
        item = call(action, next, iterator, None)
        if item is None:
            return
        yield item


def open_store(config: StorageConfig) -> ObjectStore:
    destination = parse_destination(config)
    if destination.cloud_provider == "azure-blob-storage":
        from .storage_azure import AzureBlobStore

        return AzureBlobStore(destination, config)
    if destination.cloud_provider == "google-cloud-storage":
        from .storage_gcs import GcsStore

        return GcsStore(destination, config)
    from .storage_s3 import S3Store

    return S3Store(destination, config)
