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
from typing import Any, Iterator, List, Optional
from urllib.parse import urlparse

from .config import StorageConfig
from .errors import ConfigurationError

TIB = 1 << 40

# An access point ARN names the bucket and holds slashes itself: s3://ARN/path.
_ACCESS_POINT = re.compile(
    r"^(arn:[a-z-]+:(?:s3|s3-object-lambda):[a-z0-9-]*:\d{12}:accesspoint/[^/]+"
    r"|arn:[a-z-]+:s3-outposts:[a-z0-9-]+:\d{12}:outpost/[^/]+/accesspoint/[^/]+)(/.*)?$"
)


@dataclass(frozen=True)
class Destination:
    """A parsed destination_url: the bucket (or container) and the path inside it."""

    url: str
    cloud_provider: str
    bucket: str
    prefix: str
    server_name: str

    def key(self, *parts: str) -> str:
        return posixpath.join(self.prefix, self.server_name, *parts)

    def url_of(self, *parts: str) -> str:
        return self.url.rstrip("/") + "/" + posixpath.join(self.server_name, *parts)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


def parse_destination(config: StorageConfig) -> Destination:
    url = config.destination_url
    parsed = urlparse(url)
    if config.cloud_provider == "aws-s3":
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigurationError(
                "destination_url=%r is not an S3 URL: use s3://BUCKET/PATH (cloud_provider is aws-s3)" % url,
                "destination_url",
            )
        access_point = _ACCESS_POINT.match(parsed.netloc + parsed.path)
        if access_point:
            bucket, path = access_point.group(1), access_point.group(2) or ""
        else:
            bucket, path = parsed.netloc, parsed.path
        return Destination(url, config.cloud_provider, bucket, path.strip("/"), config.server_name)
    raise ConfigurationError(
        "cloud_provider=%s is not available in this release of pgcloud.backup; use aws-s3" % config.cloud_provider,
        "cloud_provider",
    )


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


def open_store(config: StorageConfig) -> ObjectStore:
    destination = parse_destination(config)
    if destination.cloud_provider == "aws-s3":
        from .storage_s3 import S3Store

        return S3Store(destination, config)
    raise ConfigurationError("cloud_provider=%s is not supported" % destination.cloud_provider, "cloud_provider")
