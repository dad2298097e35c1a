# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage_s3.py against a real S3 HTTP endpoint: moto's server on loopback.

The requests go through boto3 and HTTP exactly as against AWS; the headers of SSE-C and
tags are checked on the wire, as botocore sends them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zlib
from urllib.parse import parse_qs

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import (
    BucketNotFoundError,
    ConfigurationError,
    StorageError,
    StorageUnreachableError,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.base import StoredObject
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store, parse_destination
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.s3 import S3Store, read_sse_customer_key

MIB = 1 << 20
KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()


class WireLog:
    """The headers of every request the store's boto3 client sends, by operation."""

    def __init__(self, store):
        self.requests = []
        store.client.meta.events.register("before-send.s3.*", self._record)

    def _record(self, request, event_name, **kwargs):
        self.requests.append((event_name.split(".")[-1], dict(request.headers)))

    def headers(self, operation):
        return [headers for name, headers in self.requests if name == operation]


def header(headers, name):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else value
    return None


# --- objects ----------------------------------------------------------------------------------


def test_put_get_and_missing_object(s3_config):
    store = open_store(s3_config())
    key = store.destination.key("base", "20261125T023350", "backup.info")
    assert key == "backups/pg/db1/base/20261125T023350/backup.info"
    store.put_object(key, b"status=STARTED\n")
    assert store.get_object(key) == b"status=STARTED\n"
    store.put_object(key, b"status=DONE\n")
    assert store.get_object(key) == b"status=DONE\n"
    assert store.get_object(store.destination.key("base", "20261125T023350", "nothing")) is None
    assert store.exists(key)


def test_objects_are_stored_under_the_url_path(s3_config, s3_bucket):
    bucket, client = s3_bucket
    store = open_store(s3_config(path=""))
    store.put_object(store.destination.key("base", "20261125T023350", "backup.info"), b"x")
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["db1/base/20261125T023350/backup.info"]


def test_list_objects_gives_keys_and_sizes_under_a_prefix(s3_config):
    store = open_store(s3_config())
    base = store.destination.key("base")
    store.put_object(base + "/20261125T023350/backup.info", b"a" * 10)
    store.put_object(base + "/20261125T023350/data.tar", b"b" * 2048)
    store.put_object(base + "/20261126T023350/backup.info", b"c" * 5)
    store.put_object(store.destination.key("wals", "0000000100000000", "000000010000000000000002"), b"w")
    listed = sorted(store.list_objects(base + "/20261125T023350/"), key=lambda item: item.key)
    assert listed == [StoredObject(base + "/20261125T023350/backup.info", 10),
                      StoredObject(base + "/20261125T023350/data.tar", 2048)]
    assert len(list(store.list_objects(base + "/"))) == 3


def test_list_folders_gives_the_names_right_below_the_prefix(s3_config):
    store = open_store(s3_config())
    base = store.destination.key("base") + "/"
    for name in ("20261125T023350/backup.info", "20261125T023350/data.tar", "20261126T010000/backup.info",
                 "notes.txt", "20261127T000000/deep/er/file"):
        store.put_object(base + name, b"x")
    assert sorted(store.list_folders(base)) == ["20261125T023350", "20261126T010000", "20261127T000000"]
    other = open_store(s3_config(server_name="db2"))
    assert list(other.list_folders(other.destination.key("base") + "/")) == []


def test_listings_read_every_page(s3_config):
    """Pages of two keys (MaxKeys set on each request), so that every listing is several pages."""
    store = open_store(s3_config())
    store.client.meta.events.register("provide-client-params.s3.ListObjectsV2",
                                      lambda params, **kwargs: params.update(MaxKeys=2))
    wire = WireLog(store)
    base = store.destination.key("base") + "/"
    for number in range(5):
        store.put_object(base + "2026112%dT000000/backup.info" % number, b"x" * number)
    assert sorted(item.key for item in store.list_objects(base)) == [
        base + "2026112%dT000000/backup.info" % number for number in range(5)]
    assert len(wire.headers("ListObjectsV2")) == 3
    assert sorted(store.list_folders(base)) == ["2026112%dT000000" % number for number in range(5)]
    assert len(wire.headers("ListObjectsV2")) == 6


@pytest.mark.parametrize("token", [None, "same"], ids=["no-token", "same-token-again"])
def test_a_listing_truncated_without_a_new_token_is_an_error(s3_config, token):
    """A store that says a listing goes on but gives no new token to go on with: refused, not
    taken as the whole listing (a backup or a WAL file could be missing from it)."""
    store = open_store(s3_config())
    base = store.destination.key("base") + "/"
    for number in range(3):
        store.put_object(base + "2026112%dT000000/backup.info" % number, b"x")

    def first_page(params, **kwargs):
        params.update(MaxKeys=1)
        params.pop("ContinuationToken", None)

    def mangle(parsed, **kwargs):
        if token is None:
            parsed.pop("NextContinuationToken", None)
        else:
            parsed["NextContinuationToken"] = token

    store.client.meta.events.register("provide-client-params.s3.ListObjectsV2", first_page)
    store.client.meta.events.register("after-call.s3.ListObjectsV2", mangle)
    with pytest.raises(StorageError, match="truncated without a new continuation token"):
        list(store.list_objects(base))


# --- multipart ---------------------------------------------------------------------------------


def test_multipart_create_upload_complete(s3_config):
    store = open_store(s3_config())
    key = store.destination.key("base", "20261125T023350", "data.tar")
    first, second, third = os.urandom(5 * MIB), os.urandom(5 * MIB), b"tail"
    upload = store.create_multipart(key)
    records = [store.upload_part(key, upload, 3, third), store.upload_part(key, upload, 1, first),
               store.upload_part(key, upload, 2, second)]
    assert [record["PartNumber"] for record in records] == [3, 1, 2]
    store.complete_multipart(key, upload, records)  # unordered records: the store sorts them
    assert store.get_object(key) == first + second + third


def test_multipart_abort_leaves_no_upload_and_no_object(s3_config, s3_bucket):
    bucket, client = s3_bucket
    store = open_store(s3_config())
    key = store.destination.key("base", "20261125T023350", "data.tar")
    upload = store.create_multipart(key)
    record = store.upload_part(key, upload, 1, b"x" * 1024)
    assert [item["UploadId"] for item in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == [upload]
    store.abort_multipart(key, upload)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert store.get_object(key) is None
    with pytest.raises(StorageError):
        store.complete_multipart(key, upload, [record])


def crc32_text(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_multipart_objects_are_checked_by_crc32_part_by_part(s3_config, s3_bucket):
    bucket, client = s3_bucket
    store = open_store(s3_config())
    wire = WireLog(store)
    key = store.destination.key("base", "20261125T023350", "data.tar")
    first, last = os.urandom(5 * MIB), b"tail"
    upload = store.create_multipart(key)
    records = [store.upload_part(key, upload, 1, first), store.upload_part(key, upload, 2, last)]
    assert [record["ChecksumCRC32"] for record in records] == [crc32_text(first), crc32_text(last)]
    store.complete_multipart(key, upload, records)
    (headers,) = wire.headers("CreateMultipartUpload")
    assert header(headers, "x-amz-checksum-algorithm") == "CRC32"
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    # A composite checksum: the CRC32 of the parts' CRC32s (AWS appends "-2", the part count).
    part_crcs = b"".join(base64.b64decode(record["ChecksumCRC32"]) for record in records)
    assert head["ChecksumCRC32"].split("-")[0] == crc32_text(part_crcs)
    assert store.get_object(key) == first + last


def test_no_checksum_algorithm_when_checksums_are_only_sent_when_required(s3_config, monkeypatch):
    """The setting for S3-compatible stores that reject flexible checksums turns this one off too."""
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    store = open_store(s3_config())
    wire = WireLog(store)
    key = store.destination.key("base", "20261125T023350", "data.tar")
    upload = store.create_multipart(key)
    record = store.upload_part(key, upload, 1, b"part")
    assert "ChecksumCRC32" not in record
    store.complete_multipart(key, upload, [record])
    (headers,) = wire.headers("CreateMultipartUpload")
    assert header(headers, "x-amz-checksum-algorithm") is None
    assert store.get_object(key) == b"part"


# --- check(): good, missing bucket, unreachable ----------------------------------------------------


def test_check_passes_on_an_existing_bucket(s3_config):
    assert open_store(s3_config()).check() is None


def test_check_reports_a_missing_bucket(moto_endpoint, aws_environment):
    config = StorageConfig(destination_url="s3://no-such-bucket-here/pg", server_name="db1", endpoint_url=moto_endpoint,
                           aws_access_key="testing", aws_secret_key="testing")
    with pytest.raises(BucketNotFoundError) as caught:
        open_store(config).check()
    assert "'no-such-bucket-here' does not exist" in str(caught.value)
    assert moto_endpoint in str(caught.value)
    assert "destination_url" in str(caught.value)


def test_writing_to_a_missing_bucket_is_a_missing_bucket(moto_endpoint, aws_environment):
    config = StorageConfig(destination_url="s3://no-such-bucket-here/pg", server_name="db1", endpoint_url=moto_endpoint,
                           aws_access_key="testing", aws_secret_key="testing")
    store = open_store(config)
    with pytest.raises(BucketNotFoundError):
        store.put_object("pg/db1/base/x/backup.info", b"x")
    with pytest.raises(BucketNotFoundError):
        store.get_object("pg/db1/base/x/backup.info")


def test_check_reports_an_unreachable_endpoint(closed_port, aws_environment):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", endpoint_url="http://127.0.0.1:%d" % closed_port,
                           aws_access_key="testing", aws_secret_key="testing")
    store = open_store(config)
    with pytest.raises(StorageUnreachableError) as caught:
        store.check()
    assert not isinstance(caught.value, BucketNotFoundError)
    assert "check endpoint_url" in str(caught.value)
    with pytest.raises(StorageUnreachableError):
        store.put_object("pg/db1/x", b"x")


# --- encryption and tags on the wire ---------------------------------------------------------------


def test_sse_customer_key_is_sent_on_put_create_part_and_get_but_not_complete(s3_config, tmp_path):
    key_file = tmp_path / "sse-c.key"
    key_file.write_text(KEY_B64 + "\n")
    store = open_store(s3_config(sse_customer_key="file://%s" % key_file))
    wire = WireLog(store)
    key = store.destination.key("base", "20261125T023350", "data.tar")
    store.put_object(store.destination.key("base", "20261125T023350", "backup.info"), b"info")
    upload = store.create_multipart(key)
    record = store.upload_part(key, upload, 1, b"part")
    store.complete_multipart(key, upload, [record])
    assert store.get_object(key) == b"part"
    expected_md5 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
    for operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "GetObject"):
        (headers,) = wire.headers(operation)
        assert header(headers, "x-amz-server-side-encryption-customer-algorithm") == "AES256", operation
        assert header(headers, "x-amz-server-side-encryption-customer-key") == KEY_B64, operation
        assert header(headers, "x-amz-server-side-encryption-customer-key-MD5") == expected_md5, operation
    (complete,) = wire.headers("CompleteMultipartUpload")
    assert header(complete, "x-amz-server-side-encryption-customer-key") is None


def test_sse_s3_and_kms_are_sent_on_writes(s3_config, s3_bucket):
    bucket, client = s3_bucket
    store = open_store(s3_config(encryption="AES256"))
    key = store.destination.key("x")
    store.put_object(key, b"x")
    assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    kms = open_store(s3_config(encryption="aws:kms", sse_kms_key_id="alias/backups"))
    wire = WireLog(kms)
    kms.create_multipart(kms.destination.key("y"))
    (headers,) = wire.headers("CreateMultipartUpload")
    assert header(headers, "x-amz-server-side-encryption") == "aws:kms"
    assert header(headers, "x-amz-server-side-encryption-aws-kms-key-id") == "alias/backups"


def test_tags_go_on_put_and_multipart_objects(s3_config, s3_bucket):
    bucket, client = s3_bucket
    store = open_store(s3_config(tags={"team": "dba", "purpose": "nightly backup"}))
    wire = WireLog(store)
    small, large = store.destination.key("small"), store.destination.key("large")
    store.put_object(small, b"x")
    upload = store.create_multipart(large)
    store.complete_multipart(large, upload, [store.upload_part(large, upload, 1, b"y")])
    for key in (small, large):
        tags = {tag["Key"]: tag["Value"] for tag in client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        assert tags == {"team": "dba", "purpose": "nightly backup"}
    (headers,) = wire.headers("CreateMultipartUpload")
    assert parse_qs(header(headers, "x-amz-tagging")) == {"team": ["dba"], "purpose": ["nightly backup"]}
    assert header(wire.headers("UploadPart")[0], "x-amz-tagging") is None


# --- SSE-C key parsing -------------------------------------------------------------------------------


def test_sse_customer_key_from_base64_and_from_a_file(tmp_path):
    assert read_sse_customer_key(KEY_B64) == KEY
    assert read_sse_customer_key("  %s\n" % KEY_B64) == KEY
    key_file = tmp_path / "key"
    key_file.write_text(KEY_B64 + "\n")
    assert read_sse_customer_key("file://%s" % key_file) == KEY


def test_sse_customer_key_file_that_cannot_be_read(tmp_path):
    missing = tmp_path / "missing.key"
    with pytest.raises(ConfigurationError) as caught:
        read_sse_customer_key("file://%s" % missing)
    assert caught.value.parameter == "sse_customer_key"
    assert str(caught.value) == "sse_customer_key: cannot read %s (No such file or directory)" % missing


@pytest.mark.parametrize("value", [
    base64.b64encode(bytes(16)).decode(),  # 128 bits
    base64.b64encode(bytes(33)).decode(),
    "not base64 at all!",
    "",
    KEY.hex(),  # the key in hex, not base64
])
def test_sse_customer_key_must_be_256_bits_of_base64(value):
    with pytest.raises(ConfigurationError) as caught:
        read_sse_customer_key(value)
    assert caught.value.parameter == "sse_customer_key"
    assert str(caught.value) == (
        "sse_customer_key must be a base64-encoded 256-bit key (or a file:// URI to a file holding one)"
    )


def test_sse_customer_key_file_with_a_bad_key(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("short")
    with pytest.raises(ConfigurationError, match="base64-encoded 256-bit key"):
        read_sse_customer_key("file://%s" % key_file)


def test_bad_sse_customer_key_fails_when_the_store_is_opened(aws_environment, tmp_path):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", sse_customer_key="file://%s" % (tmp_path / "none"),
                           aws_access_key="a", aws_secret_key="b")
    with pytest.raises(ConfigurationError, match="sse_customer_key: cannot read"):
        S3Store(parse_destination(config), config)


def test_write_and_read_arguments(aws_environment):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", sse_customer_key=KEY_B64,
                           tags={"a": "b c"}, aws_access_key="a", aws_secret_key="b")
    store = open_store(config)
    assert store.write_args == {"SSECustomerKey": KEY, "SSECustomerAlgorithm": "AES256", "Tagging": "a=b+c"}
    assert store.read_args == {"SSECustomerKey": KEY, "SSECustomerAlgorithm": "AES256"}


# --- credentials set-up ----------------------------------------------------------------------------


def test_aws_irsa_needs_the_web_identity_token(aws_environment):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", aws_irsa=True)
    with pytest.raises(ConfigurationError) as caught:
        open_store(config)
    assert caught.value.parameter == "aws_irsa"
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in str(caught.value)


def test_unknown_aws_profile(aws_environment):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", aws_profile="no-such-profile")
    with pytest.raises(ConfigurationError) as caught:
        open_store(config)
    assert caught.value.parameter == "aws_profile"
    assert "no-such-profile" in str(caught.value)


def test_client_settings_follow_the_parameters(aws_environment):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", endpoint_url="http://127.0.0.1:9",
                           read_timeout=7, addressing_style="path", jobs=3, aws_access_key="a", aws_secret_key="b")
    client = open_store(config).client
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.read_timeout == 7
    assert client.meta.config.s3 == {"addressing_style": "path"}
    assert client.meta.config.max_pool_connections >= 3
    default = open_store(StorageConfig(destination_url="s3://bkt/pg", server_name="db1", aws_access_key="a",
                                       aws_secret_key="b")).client
    assert default.meta.config.read_timeout == 60  # the reference tool's (botocore's) default


def test_the_store_does_not_import_boto3(aws_environment):
    """The client comes from botocore alone: boto3 and s3transfer would cost 2.4 MiB per backup."""
    code = ("import sys; from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig; "
            "from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store; "
            "open_store(StorageConfig(destination_url='s3://bkt/pg', server_name='db1', aws_access_key='k', "
            "aws_secret_key='s')); print('boto3' in sys.modules, 'botocore' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert result.stdout.split() == ["False", "True"]


def test_access_keys_are_the_clients_credentials(aws_environment):
    config = StorageConfig(destination_url="s3://bkt/pg", server_name="db1", aws_access_key="AKIDEXAMPLE",
                           aws_secret_key="secret", aws_session_token="token")
    credentials = open_store(config).client._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key, credentials.token) == ("AKIDEXAMPLE", "secret", "token")
