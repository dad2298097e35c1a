# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Azure and GCS stores put on the wire for encryption and tags.

Azurite ignores encryption scopes and gcp-storage-emulator has no KMS, so the integration
tests cannot see these options take effect. Here the real SDKs talk to a loopback server
that records every request and answers as the services document it; the test reads the
headers. Reference (format document, section b): Azure sends `encryption_scope` on
stage_block, commit_block_list and upload_blob, and tags on commit_block_list and upload_blob;
GCS sends the KMS key name as `x-goog-encryption-kms-key-name` when a multipart upload starts,
and tags as custom metadata (`x-goog-meta-*`).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
KMS_KEY = "projects/acme/locations/europe/keyRings/backups/cryptoKeys/pg"
TAGS = {"team": "dba"}


class Recorder(BaseHTTPRequestHandler):
    """Records (method, path with query, headers) and answers with the service's success reply."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        """Quiet."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, unquote(self.path), dict(self.headers), body))
        status, headers, reply = self.server.reply(self.command, self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_PUT = do_POST = do_GET = do_DELETE = _answer


def azure_reply(method, path):
    return 201, {"ETag": '"0x8D0"', "Last-Modified": "Wed, 25 Nov 2026 10:00:00 GMT",
                 "x-ms-request-server-encrypted": "true", "x-ms-version": "2025-01-05"}, b""


def gcs_reply(method, path):
    query = urlsplit(path).query
    if method == "POST" and query == "uploads":
        return 200, {"Content-Type": "application/xml"}, (
            b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Bucket>bkt</Bucket><Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>")
    if method == "PUT" and "partNumber" in query:
        return 200, {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"'}, b""
    if method == "POST" and "uploadId" in query:
        return 200, {"Content-Type": "application/xml"}, (
            b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Bucket>bkt</Bucket><Key>k</Key><ETag>\"x-1\"</ETag></CompleteMultipartUploadResult>")
    # A JSON API object upload (backup.info): the object resource.
    return 200, {"Content-Type": "application/json"}, b'{"name": "k", "bucket": "bkt", "size": "1"}'


@pytest.fixture
def recorder():
    def start(reply):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        server.requests, server.reply = [], reply
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    servers = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def lower(headers):
    return {name.lower(): value for name, value in headers.items()}


def test_azure_sends_the_encryption_scope_on_every_write_and_tags_where_a_blob_is_made(recorder):
    server = recorder(azure_reply)
    store = open_store(StorageConfig(
        destination_url="http://127.0.0.1:%d/devstoreaccount1/backups/pg" % server.server_port, server_name="db1",
        cloud_provider="azure-blob-storage", azure_storage_key=AZURITE_KEY, encryption_scope="backup-scope",
        tags=TAGS))
    upload = store.create_multipart("pg/db1/base/X/data.tar")
    parts = [store.upload_part("pg/db1/base/X/data.tar", upload, 1, bytearray(b"a" * 1000))]
    store.complete_multipart("pg/db1/base/X/data.tar", upload, parts)
    store.put_object("pg/db1/base/X/backup.info", bytearray(b"status=DONE\n"))

    requests = [(request[0], urlsplit(request[1]).query.split("&")[0]) for request in server.requests]
    headers = [lower(request[2]) for request in server.requests]
    # A staged block, the block list that makes the blob, then the whole-blob upload.
    assert requests == [("PUT", "comp=block"), ("PUT", "comp=blocklist"), ("PUT", "")]
    assert [sent.get("x-ms-encryption-scope") for sent in headers] == ["backup-scope"] * 3
    assert [sent.get("x-ms-tags") for sent in headers] == [None, "team=dba", "team=dba"]


def test_gcs_sends_the_kms_key_and_tags_as_metadata_when_an_upload_starts(recorder, monkeypatch):
    server = recorder(gcs_reply)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:%d" % server.server_port)
    store = open_store(StorageConfig(destination_url="gs://bkt/pg", server_name="db1",
                                     cloud_provider="google-cloud-storage", kms_key_name=KMS_KEY, tags=TAGS))
    upload = store.create_multipart("pg/db1/base/X/data.tar")
    part = store.upload_part("pg/db1/base/X/data.tar", upload, 1, bytearray(b"a" * 1000))
    store.complete_multipart("pg/db1/base/X/data.tar", upload, [part])

    (initiate, put_part, complete) = [(request[0], request[1], lower(request[2])) for request in server.requests]
    assert (initiate[0], initiate[1]) == ("POST", "/bkt/pg/db1/base/X/data.tar?uploads")
    assert initiate[2]["x-goog-encryption-kms-key-name"] == KMS_KEY
    assert initiate[2]["x-goog-meta-team"] == "dba"
    assert (put_part[0], put_part[1]) == ("PUT", "/bkt/pg/db1/base/X/data.tar?partNumber=1&uploadId=up-1")
    assert (complete[0], complete[1]) == ("POST", "/bkt/pg/db1/base/X/data.tar?uploadId=up-1")


# --- a checksum with every part and object (issue 18, item 4) -------------------------------------------


def s3_reply(method, path):
    query = urlsplit(path).query
    if method == "POST" and query == "uploads":
        return 200, {"Content-Type": "application/xml"}, (
            b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult>'
            b"<Bucket>bkt</Bucket><Key>k</Key><UploadId>up-1</UploadId></InitiateMultipartUploadResult>")
    return 200, {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"'}, b""


def content_md5(body):
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_s3_sends_content_md5_with_every_part_and_object_when_checksums_are_only_when_required(
        recorder, monkeypatch):
    """Stores set up with request_checksum_calculation=when_required get no CRC32: Content-MD5 instead."""
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    server = recorder(s3_reply)
    store = open_store(StorageConfig(destination_url="s3://bkt/pg", server_name="db1", aws_access_key="testing",
                                     aws_secret_key="testing", addressing_style="path",
                                     endpoint_url="http://127.0.0.1:%d" % server.server_port))
    assert store.checksum_args == {}
    upload = store.create_multipart("pg/db1/base/X/data.tar")
    store.upload_part("pg/db1/base/X/data.tar", upload, 1, bytearray(b"a" * 1000))
    store.put_object("pg/db1/base/X/backup.info", bytearray(b"status=DONE\n"))
    writes = [(lower(request[2]), request[3]) for request in server.requests if request[0] == "PUT"]
    assert len(writes) == 2
    for headers, body in writes:
        assert headers.get("content-md5") == content_md5(body), headers


def test_s3_sends_a_crc32_with_every_part_when_checksums_are_supported(recorder, monkeypatch):
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
    server = recorder(s3_reply)
    store = open_store(StorageConfig(destination_url="s3://bkt/pg", server_name="db1", aws_access_key="testing",
                                     aws_secret_key="testing", addressing_style="path",
                                     endpoint_url="http://127.0.0.1:%d" % server.server_port))
    upload = store.create_multipart("pg/db1/base/X/data.tar")
    store.upload_part("pg/db1/base/X/data.tar", upload, 1, bytearray(b"a" * 1000))
    (part,) = [lower(request[2]) for request in server.requests if request[0] == "PUT"]
    assert "x-amz-checksum-crc32" in part or part.get("x-amz-trailer") == "x-amz-checksum-crc32", part


def test_azure_sends_content_md5_with_every_block_and_blob(recorder):
    server = recorder(azure_reply)
    store = open_store(StorageConfig(
        destination_url="http://127.0.0.1:%d/devstoreaccount1/backups/pg" % server.server_port, server_name="db1",
        cloud_provider="azure-blob-storage", azure_storage_key=AZURITE_KEY))
    upload = store.create_multipart("pg/db1/base/X/data.tar")
    parts = [store.upload_part("pg/db1/base/X/data.tar", upload, 1, bytearray(b"a" * 1000))]
    store.complete_multipart("pg/db1/base/X/data.tar", upload, parts)
    store.put_object("pg/db1/base/X/backup.info", bytearray(b"status=DONE\n"))
    block, _block_list, blob = [(lower(request[2]), request[3]) for request in server.requests]
    for headers, body in (block, blob):
        assert headers.get("content-md5") == content_md5(body), headers


def test_gcs_sends_content_md5_with_every_part(recorder, monkeypatch):
    server = recorder(gcs_reply)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:%d" % server.server_port)
    store = open_store(StorageConfig(destination_url="gs://bkt/pg", server_name="db1",
                                     cloud_provider="google-cloud-storage"))
    upload = store.create_multipart("pg/db1/base/X/data.tar")
    store.upload_part("pg/db1/base/X/data.tar", upload, 1, bytearray(b"a" * 1000))
    (headers, body) = [(lower(request[2]), request[3]) for request in server.requests if request[0] == "PUT"][0]
    assert headers.get("content-md5") == content_md5(body), headers


def test_s3_store_without_conditional_writes_still_reserves(recorder):
    """An S3-compatible store that answers 501 to If-None-Match: the write is made without it."""
    objects = {}
    server = recorder(None)

    def answer(method, path):
        request = server.requests[-1]
        key = urlsplit(path).path
        if method == "PUT" and "if-none-match" in lower(request[2]):
            return 501, {"Content-Type": "application/xml"}, (
                b"<Error><Code>NotImplemented</Code><Message>A header you provided implies functionality "
                b"that is not implemented</Message></Error>")
        if method == "PUT":
            objects[key] = request[3]
            return 200, {"ETag": '"x"'}, b""
        if key in objects:
            return 200, {}, objects[key]
        return 404, {"Content-Type": "application/xml"}, b"<Error><Code>NoSuchKey</Code></Error>"

    server.reply = answer
    store = open_store(StorageConfig(destination_url="s3://bkt/pg", server_name="db1", aws_access_key="testing",
                                     aws_secret_key="testing", addressing_style="path",
                                     endpoint_url="http://127.0.0.1:%d" % server.server_port))
    assert store.put_object_if_absent("pg/db1/base/X/backup.info", b"status=STARTED\nerror=run one\n") is True
    assert store.put_object_if_absent("pg/db1/base/X/backup.info", b"status=STARTED\nerror=run two\n") is False
    assert objects == {"/bkt/pg/db1/base/X/backup.info": b"status=STARTED\nerror=run one\n"}
