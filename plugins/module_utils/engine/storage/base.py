# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The object store seen by the engine: a few operations every provider implements.

Keys handed to a store are full keys inside its bucket; `Destination.key()` builds them from
the URL's path, the server name and the parts below it, as the reference layout does.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, List, Optional, Union

from ..config import StorageConfig
from ..errors import ConfigurationError

TIB = 1 << 40

# What an object or a part is written from: the upload pool sends its reused part buffers.
Payload = Union[bytes, bytearray]


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


@dataclass(frozen=True)
class OpenUpload:
    """A multipart upload begun and neither completed nor aborted; initiated is None when the store does not say."""

    key: str
    upload_id: str
    initiated: Optional[datetime]


def url_error(url: str, expected: str, provider: str) -> ConfigurationError:
    return ConfigurationError(
        "destination_url=%r is not a URL of cloud_provider %s: use %s" % (url, provider, expected),
        "destination_url",
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

    def put_object(self, key: str, data: Payload) -> None:
        raise NotImplementedError

    def put_object_if_absent(self, key: str, data: bytes) -> bool:
        """Create key with data unless it exists; True if this call created it.

        data must be unique to the caller (hold a nonce). The look first and the read back
        after are for the stores that accept the condition and ignore it (the GCS emulator of
        the tests): there two runs that look at the same time may both win, and the read back
        refuses the one whose write was replaced before it read. The read back also tells a
        retried create refused because its own first attempt succeeded.
        """
        if self.get_object(key) is not None:
            return False
        self.create_object(key, data)
        return self.get_object(key) == bytes(data)

    def create_object(self, key: str, data: bytes) -> bool:
        """Write key unless it exists (False then). The providers send the condition with the
        write; this fallback writes, relying on put_object_if_absent's look and read back."""
        self.put_object(key, data)
        return True

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

    def upload_part(self, key: str, upload: Any, number: int, data: Payload) -> Any:
        """Upload part `number` (from 1); returns what complete_multipart needs of it."""
        raise NotImplementedError

    def complete_multipart(self, key: str, upload: Any, parts: List[Any]) -> None:
        raise NotImplementedError

    def abort_multipart(self, key: str, upload: Any) -> None:
        raise NotImplementedError

    def list_open_uploads(self, prefix: str) -> Iterator[OpenUpload]:
        """The multipart uploads open under prefix, those of killed runs included.

        None by default: Azure's uncommitted blocks are discarded by the service itself a week
        after they were staged, and nothing lists them as uploads.
        """
        return iter(())

    def abort_open_upload(self, upload: OpenUpload) -> None:
        """Abort an upload list_open_uploads returned; its parts are freed."""
        raise NotImplementedError

    # The most keys one delete request of the provider takes.
    delete_batch_size = 1

    def delete_objects(self, keys: List[str]) -> None:
        """Delete these objects, in batches of delete_batch_size, in the order given.

        A key that is not there counts as deleted. The first batch that fails raises
        StorageError and the later batches are not sent, so that a caller who deletes
        what matters last (a backup's backup.info) never loses it before the rest.
        """
        raise NotImplementedError

    def open_read(self, key: str) -> Any:
        """A stream of the object's bytes: an object with read(n), at most n bytes a call (b"" at
        the end), and close(). Restores read archives this way, piece by piece, so that memory
        stays bounded whatever the object's size; errors while reading are the store's errors."""
        raise NotImplementedError


class ObjectStream:
    """What open_read returns: read(n) and close() over a provider's download object."""

    def __init__(self, read: Callable[[int], bytes], close: Callable[[], Any]) -> None:
        self.read = read
        self.close = close


def read_listing(call: Callable[..., Any], action: str, items: Iterable[Any]) -> Iterator[Any]:
    """The items of an SDK's paged listing, each page fetched through call (a store's error
    translation), since the pages are requested, and may fail, while the listing is read."""
    iterator = iter(items)
    while True:
        item = call(action, next, iterator, None)
        if item is None:
            return
        yield item
