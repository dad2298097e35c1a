# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS S3 and S3-compatible stores, through botocore (the client layer of boto3).

The store's client comes from a botocore session: boto3's own session adds nothing the
store uses, and importing boto3 (with s3transfer) costs 2.4 MiB and 20-30 ms more per run.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlencode, urlparse

from ..config import StorageConfig
from ..errors import (
    BucketNotFoundError,
    ConfigurationError,
    MissingDependencyError,
    StorageAccessDeniedError,
    StorageError,
    StorageUnreachableError,
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
    import botocore.config
    import botocore.exceptions
    import botocore.session
except ImportError as error:  # pragma: no cover - depends on the host
    botocore = None
    BOTO3_IMPORT_ERROR: Optional[ImportError] = error
else:
    BOTO3_IMPORT_ERROR = None

_NOT_FOUND = ("404", "NoSuchBucket", "NotFound")
_DENIED = ("403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "ExpiredToken", "InvalidToken", "AllAccessDisabled")

_CREATE_REFUSED = ("PreconditionFailed", "412", "ConditionalRequestConflict")
_CONDITION_UNSUPPORTED = ("NotImplemented", "501")

# An access point ARN names the bucket and holds slashes itself: s3://ARN/path.
_ACCESS_POINT = re.compile(
    r"^(arn:[a-z-]+:(?:s3|s3-object-lambda):[a-z0-9-]*:\d{12}:accesspoint/[^/]+"
    r"|arn:[a-z-]+:s3-outposts:[a-z0-9-]+:\d{12}:outpost/[^/]+/accesspoint/[^/]+)(/.*)?$"
)


# Bucket names as botocore accepts them (older regions allowed capitals and underscores),
# beginning and ending with a letter or a digit, so that no bucket is `.` or `..`.
_BUCKET = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,253}[A-Za-z0-9])?$")


def parse_url(url: str) -> Tuple[str, str, None]:
    """Bucket and path of s3://BUCKET/PATH (the bucket may be an access point ARN)."""
    expected = "s3://BUCKET/PATH"
    parts = split_url(url, "destination_url", expected)
    if parts.scheme != "s3" or not parts.netloc:
        raise url_error(url, expected, "aws-s3")
    check_key_path(parts.path, "destination_url", "destination_url=%r" % url)
    access_point = _ACCESS_POINT.match(parts.netloc + parts.path)
    if access_point:
        return access_point.group(1), (access_point.group(2) or "").strip("/"), None
    _check_bucket(parts.netloc, url)
    return parts.netloc, parts.path.strip("/"), None


def _check_bucket(bucket: str, url: str) -> None:
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigurationError(
            "destination_url=%r names the bucket %r: a bucket name holds letters, digits, dots, hyphens and "
            "underscores, begins and ends with a letter or a digit (or is an access point ARN)" % (url, bucket),
            "destination_url")


def read_sse_customer_key(value: str) -> bytes:
    """The SSE-C key: a file:// URI to a file holding it in base64 (as the reference tool), or the base64 itself."""
    text = value
    if value.startswith("file://"):
        path = urlparse(value).path
        try:
            with open(path, "r") as handle:
                text = handle.read()
        except OSError as error:
            raise ConfigurationError(
                "sse_customer_key: cannot read %s (%s)" % (path, error.strerror), "sse_customer_key"
            )
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigurationError(
            "sse_customer_key must be a base64-encoded 256-bit key (or a file:// URI to a file holding one)",
            "sse_customer_key",
        )
    return key


def _profile_not_found(config: StorageConfig) -> ConfigurationError:
    return ConfigurationError(
        "aws_profile=%s is not in the AWS config or credentials files of this host" % config.aws_profile,
        "aws_profile",
    )


def botocore_session(config: StorageConfig):
    """A botocore session with the credentials of the storage options (profile or keys)."""
    session = botocore.session.Session(profile=config.aws_profile)
    if config.aws_access_key or config.aws_secret_key or config.aws_session_token:
        session.set_credentials(config.aws_access_key, config.aws_secret_key, config.aws_session_token)
    return session


def aws_session(config: StorageConfig):
    """A boto3 session on botocore_session's credentials, for EC2."""
    import boto3  # only the snapshot backups need boto3 itself

    try:
        return boto3.session.Session(botocore_session=botocore_session(config))
    except botocore.exceptions.ProfileNotFound:
        raise _profile_not_found(config)


class _MissingObject(StorageError):
    """A read of a key that is not there; get_object turns it into None."""


class S3Store(ObjectStore):
    min_chunk_size = 5 << 20
    max_chunks = 10000

    def __init__(self, destination: Destination, config: StorageConfig) -> None:
        super().__init__(destination, config)
        if botocore is None:
            raise MissingDependencyError("boto3", "cloud_provider: aws-s3", BOTO3_IMPORT_ERROR)
        self.bucket = destination.bucket
        self.client = self._client(config)
        self.write_args = self._write_args(config)
        self.checksum_args = self._checksum_args()
        self.read_args = {key: value for key, value in self.write_args.items() if key.startswith("SSECustomer")}

    def _client(self, config: StorageConfig):
        if config.aws_irsa and not os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
            raise ConfigurationError(
                "aws_irsa is set but AWS_WEB_IDENTITY_TOKEN_FILE is not: IRSA works inside an EKS pod whose "
                "service account has an IAM role", "aws_irsa",
            )
        session = botocore_session(config)
        client_config = botocore.config.Config(
            read_timeout=config.read_timeout or 60,
            max_pool_connections=config.jobs + 4,
            retries={"mode": "standard", "max_attempts": 5},
            s3={"addressing_style": config.addressing_style or "auto"},
        )
        try:
            return session.create_client("s3", endpoint_url=config.endpoint_url, config=client_config)
        except botocore.exceptions.ProfileNotFound:
            raise _profile_not_found(config)

    def _checksum_args(self) -> Dict[str, Any]:
        """CRC32 for multipart objects, when botocore sends a CRC32 of every part anyway.

        Named at creation, the algorithm makes S3 check each part against its CRC32 and keep
        a checksum of the whole object. Without it, moto (as S3 itself) computes a CRC64NVME of
        the whole object again at completion: moto's CPU for a 1.5 GiB lz4 backup went from
        1.27 s to 1.13 s with it. Stores that reject flexible checksums are set up with
        request_checksum_calculation=when_required (AWS_REQUEST_CHECKSUM_CALCULATION), which
        turns both off.
        """
        if self.client.meta.config.request_checksum_calculation == "when_supported":
            return {"ChecksumAlgorithm": "CRC32"}
        return {}

    def _write_args(self, config: StorageConfig) -> Dict[str, Any]:
        args: Dict[str, Any] = {}
        if config.encryption:
            args["ServerSideEncryption"] = config.encryption
        if config.sse_kms_key_id:
            args["SSEKMSKeyId"] = config.sse_kms_key_id
        if config.sse_customer_key:
            args["SSECustomerKey"] = read_sse_customer_key(config.sse_customer_key)
            args["SSECustomerAlgorithm"] = "AES256"
        if config.tags:
            args["Tagging"] = urlencode(config.tags)
        return args

    def _call(self, action: str, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except botocore.exceptions.NoCredentialsError:
            raise StorageAccessDeniedError(
                "no AWS credentials found: set aws_access_key and aws_secret_key, aws_profile, or the "
                "AWS_* environment variables of the host"
            )
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError) as error:
            raise StorageUnreachableError("cannot reach S3 to %s: %s; check endpoint_url and the network" % (action, error))
        except botocore.exceptions.ClientError as error:
            raise self._client_error(action, error)
        except botocore.exceptions.BotoCoreError as error:
            raise StorageError("S3 %s failed: %s" % (action, error))

    def _client_error(self, action: str, error) -> StorageError:
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = error.response.get("Error", {}).get("Message") or code
        if code == "NoSuchKey" or (code == "404" and action.startswith("read")):
            return _MissingObject(message)
        if code in _NOT_FOUND and action.startswith("check bucket") or code == "NoSuchBucket":
            return BucketNotFoundError(
                "bucket %r does not exist at %s; create it or fix destination_url"
                % (self.bucket, self.config.endpoint_url or "AWS S3")
            )
        if code in _DENIED:
            return StorageAccessDeniedError(
                "S3 refused to %s in bucket %r (%s: %s); check the credentials and the bucket policy"
                % (action, self.bucket, code, message)
            )
        return StorageError("S3 %s failed in bucket %r (%s: %s)" % (action, self.bucket, code, message))

    def check(self) -> None:
        self._call("check bucket %s" % self.bucket, self.client.head_bucket, Bucket=self.bucket)

    def _content_md5(self, data: Payload) -> Dict[str, str]:
        """Content-MD5 of a request body when botocore sends no CRC32 of it (request checksums
        when_required), so that the store checks every object and part it stores."""
        if self.checksum_args:
            return {}
        return {"ContentMD5": base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()}

    def put_object(self, key: str, data: Payload) -> None:
        self._call("upload %s" % key, self.client.put_object, Bucket=self.bucket, Key=key, Body=data,
                   **self._content_md5(data), **self.write_args)

    def create_object(self, key: str, data: bytes) -> bool:
        def put_if_none_match() -> bool:
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*",
                                       **self._content_md5(data), **self.write_args)
            except botocore.exceptions.ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                # 412: the key exists; 409: another conditional write of it is in flight.
                if code in _CREATE_REFUSED:
                    return False
                if code not in _CONDITION_UNSUPPORTED:
                    raise
                # An S3-compatible store without conditional writes: put_object_if_absent's look
                # before and read back after are what is left.
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self._content_md5(data),
                                       **self.write_args)
            return True

        return self._call("create %s" % key, put_if_none_match)

    def get_object(self, key: str) -> Optional[bytes]:
        try:
            response = self._call("read %s" % key, self.client.get_object, Bucket=self.bucket, Key=key,
                                  **self.read_args)
        except _MissingObject:
            return None
        return response["Body"].read()

    def _pages(self, prefix: str, **extra) -> Iterator[Dict[str, Any]]:
        """The pages of a listing, by continuation token: botocore's paginator would first scan
        its data folders for every service's pagination model, at each start of the command."""
        while True:
            page = self._call("list %s" % prefix, self.client.list_objects_v2, Bucket=self.bucket, Prefix=prefix, **extra)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token or token == extra.get("ContinuationToken"):
                # A listing read in part would hide objects (a backup, a WAL file): refused.
                raise StorageError(
                    "S3 listing of %s in bucket %r is truncated without a new continuation token: the store at %s "
                    "does not page ListObjectsV2 as S3 does" % (prefix, self.bucket, self.config.endpoint_url or "AWS S3"))
            extra = {**extra, "ContinuationToken": token}

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        for page in self._pages(prefix):
            for item in page.get("Contents", ()):
                yield StoredObject(item["Key"], item["Size"])

    def list_folders(self, prefix: str) -> Iterator[str]:
        for page in self._pages(prefix, Delimiter="/"):
            for item in page.get("CommonPrefixes", ()):
                yield item["Prefix"][len(prefix):].rstrip("/")

    def create_multipart(self, key: str) -> Any:
        response = self._call("start upload of %s" % key, self.client.create_multipart_upload,
                              Bucket=self.bucket, Key=key, **self.checksum_args, **self.write_args)
        return response["UploadId"]

    def upload_part(self, key: str, upload: Any, number: int, data: Payload) -> Any:
        response = self._call("upload part %d of %s" % (number, key), self.client.upload_part,
                              Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=data,
                              **self._content_md5(data), **self.read_args)
        record = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32" in response:
            record["ChecksumCRC32"] = response["ChecksumCRC32"]
        return record

    def complete_multipart(self, key: str, upload: Any, parts: List[Any]) -> None:
        self._call("complete upload of %s" % key, self.client.complete_multipart_upload,
                   Bucket=self.bucket, Key=key, UploadId=upload,
                   MultipartUpload={"Parts": sorted(parts, key=lambda part: part["PartNumber"])})

    def abort_multipart(self, key: str, upload: Any) -> None:
        self._call("abort upload of %s" % key, self.client.abort_multipart_upload,
                   Bucket=self.bucket, Key=key, UploadId=upload)

    def list_open_uploads(self, prefix: str) -> Iterator[OpenUpload]:
        action = "list the open uploads under %s" % prefix
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = self._call(action, paginator.paginate, Bucket=self.bucket, Prefix=prefix)
        for page in read_listing(self._call, action, pages):
            for item in page.get("Uploads", ()):
                yield OpenUpload(item["Key"], item["UploadId"], item.get("Initiated"))

    def abort_open_upload(self, upload: OpenUpload) -> None:
        self.abort_multipart(upload.key, upload.upload_id)

    delete_batch_size = 1000

    def delete_objects(self, keys: List[str]) -> None:
        for start in range(0, len(keys), self.delete_batch_size):
            batch = keys[start:start + self.delete_batch_size]
            response = self._call("delete %d objects from %s" % (len(batch), batch[0]), self.client.delete_objects,
                                  Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True})
            # A batch answers 200 with the keys it could not delete listed in Errors.
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError("S3 refused to delete %d of %d objects in bucket %r, such as %s (%s: %s)" % (
                    len(errors), len(batch), self.bucket, first.get("Key"), first.get("Code"), first.get("Message")))

    def open_read(self, key: str) -> Any:
        # One GET read as it arrives: ranged GETs would let a store such as moto read the
        # whole object again for every range (benchmarks/README.md).
        body = self._call("read %s" % key, self.client.get_object, Bucket=self.bucket, Key=key,
                          **self.read_args)["Body"]
        return ObjectStream(lambda size: self._call("read %s" % key, body.read, size), body.close)


STORE = S3Store
