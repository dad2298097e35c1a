# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Google Cloud Storage, through google-cloud-storage.

Objects written in parts use Cloud Storage's XML multipart upload API, whose parts can be
sent in parallel (the JSON API's resumable upload takes its chunks one after the other).
google-cloud-storage implements that API (XMLMPUContainer) but reads parts from a file; the
parts here are in memory, so each is sent with the client's own authorized session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote, urlencode
from xml.etree import ElementTree

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
from ..inputs import check_key_path, split_url
from .base import (
    Destination,
    ObjectStore,
    ObjectStream,
    OpenUpload,
    Payload,
    StoredObject,
    read_listing,
    url_error,
)

try:
    import google.api_core.exceptions as google_errors
    import google.auth.exceptions as google_auth_errors
    import google_crc32c
    import requests.exceptions
    from google.cloud import storage as gcs
    from google.cloud.storage._media.requests.upload import XMLMPUContainer
    from google.cloud.storage.exceptions import InvalidResponse
    from google.cloud.storage.retry import DEFAULT_RETRY
except ImportError as error:  # pragma: no cover - depends on the host
    gcs = None
    GCS_IMPORT_ERROR: Optional[ImportError] = error
else:
    GCS_IMPORT_ERROR = None


# The console URL of a bucket that users copy from their browser; the reference tool takes it.
GCS_CONSOLE_PREFIX = "https://console.cloud.google.com/storage/browser/"


# Bucket names: lowercase letters, digits, hyphens, underscores and dots, a letter or digit at both ends.
_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,220}[a-z0-9])?$")


def parse_url(url: str) -> Tuple[str, str, None]:
    """Bucket and path of gs://BUCKET/PATH, or of the bucket's console URL."""
    expected = "gs://BUCKET/PATH"
    parts = split_url(url, "destination_url", expected)
    if url.startswith(GCS_CONSOLE_PREFIX):
        bucket, path = url[len(GCS_CONSOLE_PREFIX):].partition("/")[::2]
        path = "/" + path
    elif parts.scheme != "gs":
        raise url_error(url, expected, "google-cloud-storage")
    else:
        bucket, path = parts.netloc, parts.path
    if not bucket:
        raise url_error(url, expected + " (the bucket is required)", "google-cloud-storage")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigurationError(
            "destination_url=%r names the bucket %r: a Cloud Storage bucket name holds lowercase letters, digits, "
            "hyphens, underscores and dots, with a letter or a digit at both ends" % (url, bucket), "destination_url")
    return bucket, check_key_path(path, "destination_url", "destination_url=%r" % url), None


CHECK_RETRY_SECONDS = 10.0
# google_crc32c takes bytes only: a part is checksummed in slices of this size, not copied whole.
CRC_SLICE = 1 << 20


def _from_service_account(factory, source: Any, parameter: str) -> Any:
    try:
        return factory(source)
    except (OSError, ValueError) as error:
        raise ConfigurationError("%s is not a usable service account key: %s" % (parameter, first_line(error)),
                                 parameter)


class GcsStore(ObjectStore):
    # The XML multipart API: 10000 parts of at least 5 MiB (the last may be smaller).
    min_chunk_size = 5 << 20
    max_chunks = 10000

    def __init__(self, destination: Destination, config: StorageConfig) -> None:
        super().__init__(destination, config)
        if gcs is None:
            raise MissingDependencyError("google-cloud-storage", "cloud_provider: google-cloud-storage",
                                         GCS_IMPORT_ERROR)
        self.timeout = config.read_timeout or 60
        self.client = self._call("find Google credentials", self._client, config)
        self.bucket = self.client.bucket(destination.bucket)
        # Tags are custom metadata on Cloud Storage, as the reference tool stores them.
        self.metadata = dict(config.tags) or None

    @staticmethod
    def _client(config: StorageConfig) -> Any:
        if config.gcp_service_account_file:
            return _from_service_account(gcs.Client.from_service_account_json, config.gcp_service_account_file,
                                         "gcp_service_account_file")
        if config.gcp_service_account_contents:
            try:
                info = json.loads(config.gcp_service_account_contents)
            except ValueError as error:
                raise ConfigurationError("gcp_service_account_contents is not JSON (%s)" % error,
                                         "gcp_service_account_contents")
            return _from_service_account(gcs.Client.from_service_account_info, info, "gcp_service_account_contents")
        return gcs.Client()

    def _call(self, action: str, call, *args, **kwargs):
        try:
            return self._translate_media_errors(call, *args, **kwargs)
        except google_errors.NotFound as error:
            raise _MissingObject(str(error))
        except (google_errors.Forbidden, google_errors.Unauthorized) as error:
            raise StorageAccessDeniedError(
                "Cloud Storage refused to %s in bucket %r (%s); check the credentials and their roles on the bucket"
                % (action, self.destination.bucket, first_line(error)))
        except google_auth_errors.DefaultCredentialsError as error:
            raise StorageAccessDeniedError(
                "no Google credentials found (%s): give gcp_service_account_file or gcp_service_account_contents, "
                "or set GOOGLE_APPLICATION_CREDENTIALS on the host" % first_line(error))
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                google_auth_errors.TransportError) as error:
            raise StorageUnreachableError("cannot reach Cloud Storage to %s: %s; check the network"
                                          % (action, first_line(error)))
        except google_errors.RetryError as error:
            if isinstance(error.cause, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
                raise StorageUnreachableError("cannot reach Cloud Storage to %s: %s; check the network"
                                              % (action, first_line(error.cause)))
            raise StorageError("Cloud Storage %s failed in bucket %r: %s"
                               % (action, self.destination.bucket, first_line(error)))
        except (google_errors.GoogleAPIError, google_auth_errors.GoogleAuthError) as error:
            raise StorageError("Cloud Storage %s failed in bucket %r: %s"
                               % (action, self.destination.bucket, first_line(error)))

    @staticmethod
    def _translate_media_errors(call, *args, **kwargs):
        """The multipart calls raise InvalidResponse: make it the API error of its status."""
        try:
            return call(*args, **kwargs)
        except InvalidResponse as error:
            raise google_errors.from_http_response(error.response) from error

    def check(self) -> None:
        try:
            # A short retry: a check should say soon that the store cannot be reached.
            self._call("read the bucket", self.bucket.reload, timeout=self.timeout,
                       retry=DEFAULT_RETRY.with_timeout(CHECK_RETRY_SECONDS))
        except _MissingObject:
            raise BucketNotFoundError("bucket %r does not exist in Cloud Storage; create it or fix destination_url"
                                      % self.destination.bucket)

    def _blob(self, key: str) -> Any:
        blob = self.bucket.blob(key, kms_key_name=self.config.kms_key_name)
        blob.metadata = self.metadata
        return blob

    def put_object(self, key: str, data: Payload) -> None:
        blob = self._blob(key)
        try:
            self._call("upload %s" % key, blob.upload_from_string, bytes(data), timeout=self.timeout)
        except _MissingObject:
            raise BucketNotFoundError("bucket %r does not exist in Cloud Storage" % self.destination.bucket)

    def create_object(self, key: str, data: bytes) -> bool:
        blob = self._blob(key)

        def upload_if_generation_match() -> bool:
            try:
                # Generation 0: only if no live object has the name. The GCS emulator of the tests
                # ignores it; put_object_if_absent's read back is what holds there.
                blob.upload_from_string(bytes(data), if_generation_match=0, timeout=self.timeout)
            except google_errors.PreconditionFailed:
                return False
            return True

        try:
            return self._call("create %s" % key, upload_if_generation_match)
        except _MissingObject:
            raise BucketNotFoundError("bucket %r does not exist in Cloud Storage" % self.destination.bucket)

    def get_object(self, key: str) -> Optional[bytes]:
        try:
            return self._call("read %s" % key, self.bucket.blob(key).download_as_bytes, timeout=self.timeout)
        except _MissingObject:
            return None

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        blobs = self.client.list_blobs(self.bucket, prefix=prefix, timeout=self.timeout)
        for blob in self._iterate("list %s" % prefix, blobs):
            yield StoredObject(blob.name, int(blob.size or 0))

    def list_folders(self, prefix: str) -> Iterator[str]:
        blobs = self.client.list_blobs(self.bucket, prefix=prefix, delimiter="/", timeout=self.timeout)
        for page in self._iterate("list %s" % prefix, blobs.pages):
            for folder in page.prefixes:
                yield folder[len(prefix):].rstrip("/")

    def _iterate(self, action: str, items: Any) -> Iterator[Any]:
        try:
            yield from read_listing(self._call, action, items)
        except _MissingObject:
            raise BucketNotFoundError("bucket %r does not exist in Cloud Storage" % self.destination.bucket)

    # --- the XML multipart upload API

    def _object_url(self, key: str) -> str:
        return "%s/%s/%s" % (self.client.api_endpoint.rstrip("/"), self.destination.bucket, quote(key, safe=""))

    def _upload_headers(self) -> Dict[str, str]:
        headers = {"x-goog-meta-%s" % name: value for name, value in (self.metadata or {}).items()}
        if self.config.kms_key_name:
            headers["x-goog-encryption-kms-key-name"] = self.config.kms_key_name
        return headers

    def create_multipart(self, key: str) -> Any:
        container = XMLMPUContainer(self._object_url(key), None, headers=self._upload_headers(),
                                    retry=DEFAULT_RETRY)
        try:
            self._call("start upload of %s" % key, container.initiate, self.client._http,
                       "application/octet-stream", timeout=self.timeout)
        except _MissingObject:
            raise BucketNotFoundError("bucket %r does not exist in Cloud Storage" % self.destination.bucket)
        return container

    def upload_part(self, key: str, upload: Any, number: int, data: Payload) -> Any:
        url = "%s?partNumber=%d&uploadId=%s" % (upload.upload_url, number, quote(upload.upload_id, safe=""))
        etag = self._call("upload part %d of %s" % (number, key), DEFAULT_RETRY(self._put_part), url, data)
        return number, etag

    def _put_part(self, url: str, data: bytes) -> str:
        # Content-MD5: the service checks the part before it stores it, whether or not it
        # reports the part's hashes in x-goog-hash.
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        response = self.client._http.put(url, data=data, headers={"Content-MD5": md5}, timeout=self.timeout)
        if response.status_code != 200:
            raise google_errors.from_http_response(response)
        reported = _reported_crc32c(response.headers.get("x-goog-hash", ""))
        if reported is not None and reported != crc32c_of(data):
            # Raised as a server error, so that the retry sends the part again.
            raise google_errors.InternalServerError("part stored with checksum %s, sent with %s"
                                                    % (reported, crc32c_of(data)))
        return response.headers["ETag"]

    def complete_multipart(self, key: str, upload: Any, parts: List[Any]) -> None:
        for number, etag in sorted(parts):
            upload.register_part(number, etag)
        self._call("complete upload of %s" % key, upload.finalize, self.client._http, timeout=self.timeout)

    def abort_multipart(self, key: str, upload: Any) -> None:
        self._call("abort upload of %s" % key, upload.cancel, self.client._http, timeout=self.timeout)

    def list_open_uploads(self, prefix: str) -> Iterator[OpenUpload]:
        """The XML API's list of multipart uploads (GET /BUCKET?uploads), page by page; the SDK has none."""
        markers: Dict[str, str] = {}
        while True:
            query = urlencode(dict({"prefix": prefix}, **markers))
            url = "%s/%s?uploads&%s" % (self.client.api_endpoint.rstrip("/"), self.destination.bucket, query)
            page = self._call("list the open uploads under %s" % prefix, self._get_xml, url)
            for upload in page.iter(_XML + "Upload"):
                yield OpenUpload(_text(upload, "Key"), _text(upload, "UploadId"), _xml_time(_text(upload, "Initiated")))
            if _text(page, "IsTruncated").lower() != "true":
                return
            markers = {"key-marker": _text(page, "NextKeyMarker"), "upload-id-marker": _text(page, "NextUploadIdMarker")}

    def _get_xml(self, url: str) -> Any:
        response = self.client._http.get(url, timeout=self.timeout)
        if response.status_code != 200:
            raise google_errors.from_http_response(response)
        return ElementTree.fromstring(response.content)

    def abort_open_upload(self, upload: OpenUpload) -> None:
        url = "%s?uploadId=%s" % (self._object_url(upload.key), quote(upload.upload_id, safe=""))
        self._call("abort upload of %s" % upload.key, self._delete_url, url)

    def _delete_url(self, url: str) -> None:
        response = self.client._http.delete(url, timeout=self.timeout)
        if response.status_code not in (200, 204):
            raise google_errors.from_http_response(response)

    # A JSON API batch request holds at most 100 calls.
    delete_batch_size = 100

    def delete_objects(self, keys: List[str]) -> None:
        for start in range(0, len(keys), self.delete_batch_size):
            batch = keys[start:start + self.delete_batch_size]
            self._call("delete %d objects from %s" % (len(batch), batch[0]), self._delete_batch, batch)

    def _delete_batch(self, keys: List[str]) -> None:
        # A missing object (404) in a batch is what was asked: only the other errors raise.
        with self.client.batch(raise_exception=False) as batch:
            for key in keys:
                self.bucket.delete_blob(key, timeout=self.timeout)
        failed = [response for response in batch._responses if response.status_code not in (200, 204, 404)]
        if failed:
            raise google_errors.from_http_response(failed[0])

    def open_read(self, key: str) -> Any:
        # Read in chunks of ranged requests, each checked by the tar and compression framing
        # it belongs to (and pg_verifybackup after a restore); the client checks whole objects only.
        reader = self._call("read %s" % key, self.bucket.blob(key).open, "rb", chunk_size=8 << 20,
                            timeout=self.timeout)
        return ObjectStream(lambda size: self._call("read %s" % key, reader.read, size), reader.close)


def crc32c_of(data: bytes) -> str:
    """The base64 CRC32C of data, as Cloud Storage reports it in x-goog-hash."""
    view, crc = memoryview(data), 0
    for start in range(0, len(view), CRC_SLICE):
        crc = google_crc32c.extend(crc, bytes(view[start:start + CRC_SLICE]))
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _reported_crc32c(header: str) -> Optional[str]:
    for item in header.split(","):
        name, value = item.strip().partition("=")[::2]
        if name == "crc32c":
            return value
    return None


# The namespace of the XML API's answers (that of S3, which the API follows).
_XML = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _text(element: Any, tag: str) -> str:
    found = element.find(_XML + tag)
    if found is None:
        found = element.find(tag)
    return (found.text or "") if found is not None else ""


def _xml_time(text: str) -> Optional[datetime]:
    """An Initiated time (2026-01-25T03:15:00.123Z); None when absent or unreadable (the upload is left alone)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class _MissingObject(StorageError):
    """A 404: a missing object to get_object, a missing bucket elsewhere."""


STORE = GcsStore
