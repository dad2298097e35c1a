# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared test doubles and fixtures of the engine's unit tests.

`InMemoryStore` implements the ObjectStore interface of storage.py in memory, with the
instruments the uploader and tar tests need: a log of every call, the highest number of
parts uploading at once, an optional delay per part and an optional failing part.
`moto_endpoint` is a real S3 HTTP server (moto) on loopback for the S3 store tests.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import os
import socket
import threading
import time
import uuid
import zlib

import boto3
import lz4.frame
import moto.server
import pytest
import snappy
import zstandard

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import StorageError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.postgres.session import ServerFacts
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.base import ObjectStore, StoredObject
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import parse_destination
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.files import write_file

DEFAULT_URL = "s3://test-bucket/some/path"
DEFAULT_SERVER = "db1"


class InMemoryStore(ObjectStore):
    """An object store held in a dict, thread-safe, that records what it is asked to do."""

    def __init__(self, destination_url=DEFAULT_URL, server_name=DEFAULT_SERVER, **config):
        storage = StorageConfig(destination_url=destination_url, server_name=server_name, **config)
        super().__init__(parse_destination(storage), storage)
        self.objects = {}
        self.uploads = {}
        self.calls = []
        self.put_history = []  # (key, data) of every successful put, in order
        self.part_delay = 0.0
        self.part_gate = None  # a threading.Event every part upload waits for, when set here
        self.fail_part = None  # callable(key, number) -> bool
        self.fail_put = None  # callable(key) -> bool
        self.fail_abort = False
        self.check_error = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._next_upload = 0

    # --- the ObjectStore interface -------------------------------------------------------

    def check(self):
        self._record("check")
        if self.check_error is not None:
            raise self.check_error

    def put_object(self, key, data):
        self._record("put", key, len(data))
        if self.fail_put is not None and self.fail_put(key):
            raise StorageError("simulated failure of the upload of %s" % key)
        with self._lock:
            self.objects[key] = bytes(data)
            self.put_history.append((key, bytes(data)))

    def get_object(self, key):
        with self._lock:
            return self.objects.get(key)

    def list_objects(self, prefix):
        with self._lock:
            items = sorted(self.objects.items())
        for key, data in items:
            if key.startswith(prefix):
                yield StoredObject(key, len(data))

    def list_folders(self, prefix):
        with self._lock:
            keys = sorted(self.objects)
        seen = []
        for key in keys:
            if key.startswith(prefix) and "/" in key[len(prefix):]:
                folder = key[len(prefix):].split("/", 1)[0]
                if folder not in seen:
                    seen.append(folder)
        return iter(seen)

    def create_multipart(self, key):
        with self._lock:
            self._next_upload += 1
            upload = "upload-%d" % self._next_upload
            self.uploads[upload] = {"key": key, "parts": {}, "state": "open"}
        self._record("create", key, upload)
        return upload

    def upload_part(self, key, upload, number, data):
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._record("part", key, upload, number, len(data))
            if self.part_gate is not None:
                self.part_gate.wait(30)
            if self.part_delay:
                time.sleep(self.part_delay)
            if self.fail_part is not None and self.fail_part(key, number):
                raise StorageError("simulated failure of part %d of %s" % (number, key))
            with self._lock:
                if self.uploads[upload]["state"] != "open":
                    raise StorageError("upload %s of %s is %s" % (upload, key, self.uploads[upload]["state"]))
                self.uploads[upload]["parts"][number] = bytes(data)
            return {"PartNumber": number, "ETag": "etag-%d" % number}
        finally:
            with self._lock:
                self.in_flight -= 1

    def complete_multipart(self, key, upload, parts):
        self._record("complete", key, upload, [part["PartNumber"] for part in parts])
        with self._lock:
            state = self.uploads[upload]
            numbers = sorted(part["PartNumber"] for part in parts)
            if state["state"] != "open" or numbers != sorted(state["parts"]):
                raise StorageError("cannot complete %s: parts %s, uploaded %s" % (key, numbers, sorted(state["parts"])))
            self.objects[key] = b"".join(state["parts"][number] for number in numbers)
            state["state"] = "complete"

    def abort_multipart(self, key, upload):
        self._record("abort", key, upload)
        if self.fail_abort:
            raise StorageError("simulated failure of the abort of %s" % key)
        with self._lock:
            self.uploads[upload]["state"] = "aborted"

    # --- what the tests look at --------------------------------------------------------

    def _record(self, *call):
        with self._lock:
            self.calls.append(call)

    def calls_of(self, kind):
        with self._lock:
            return [call for call in self.calls if call[0] == kind]

    def part_sizes(self, upload):
        with self._lock:
            return [len(data) for _number, data in sorted(self.uploads[upload]["parts"].items())]


# --- decoders of the restore tool: each asserts that the object is exactly one stream ------------


def decode_gzip(data):
    engine = zlib.decompressobj(31)
    plain = engine.decompress(data)
    assert engine.eof, "the gzip stream is not terminated"
    assert engine.unused_data == b"", "more than one gzip member in the object"
    assert gzip.decompress(data) == plain
    return plain


def decode_bzip2(data):
    engine = bz2.BZ2Decompressor()
    plain = engine.decompress(data)
    assert engine.eof, "the bzip2 stream is not terminated"
    assert engine.unused_data == b"", "more than one bzip2 stream in the object"
    return plain


def decode_zstd(data):
    engine = zstandard.ZstdDecompressor().decompressobj()
    plain = engine.decompress(data)
    assert engine.eof, "the zstd frame is not terminated"
    assert engine.unused_data == b"", "more than one zstd frame in the object"
    return plain


def decode_lz4(data):
    plain, used = lz4.frame.decompress(data, return_bytes_read=True)
    assert used == len(data), "more than one lz4 frame in the object"
    return plain


def snappy_chunks(data):
    """The chunks of the snappy framing format: (type, length)."""
    chunks, offset = [], 0
    while offset < len(data):
        kind, length = data[offset], int.from_bytes(data[offset + 1:offset + 4], "little")
        chunks.append((kind, length))
        offset += 4 + length
    assert offset == len(data), "the snappy object ends inside a chunk"
    return chunks


def decode_snappy(data):
    chunks = snappy_chunks(data)
    assert chunks[0] == (0xFF, 6) and data[4:10] == b"sNaPpY", "no snappy stream identifier first"
    assert [kind for kind, _length in chunks].count(0xFF) == 1, "more than one snappy stream in the object"
    engine = snappy.StreamDecompressor()
    plain = engine.decompress(data)
    engine.flush()  # raises if the stream is incomplete
    return plain


RESTORE_DECODERS = {
    None: lambda data: data,
    "gzip": decode_gzip,
    "bzip2": decode_bzip2,
    "snappy": decode_snappy,
    "lz4": decode_lz4,
    "zstd": decode_zstd,
}


@pytest.fixture
def restore_decoders():
    """compression name -> function(object bytes) -> tar bytes, as barman-cloud-restore decodes them."""
    return dict(RESTORE_DECODERS)


@pytest.fixture
def memory_store():
    """A factory of InMemoryStore; keyword arguments go to StorageConfig."""
    return InMemoryStore


@pytest.fixture
def store():
    return InMemoryStore()


# --- a real S3 endpoint: moto's HTTP server on loopback ------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield "http://%s:%d" % (host, port)
    server.stop()


@pytest.fixture
def aws_environment(monkeypatch, tmp_path):
    """No credentials, profile or region of the host leak into the tests."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_bucket(moto_endpoint, aws_environment):
    """A new, empty bucket on the moto server; returns (bucket name, boto3 client)."""
    client = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    name = "bkt-%s" % uuid.uuid4().hex[:12]
    client.create_bucket(Bucket=name)
    return name, client


@pytest.fixture
def s3_config(moto_endpoint, s3_bucket):
    """A factory of StorageConfig for the moto bucket; keyword arguments override the defaults."""
    bucket = s3_bucket[0]

    def make(path="backups/pg", server_name=DEFAULT_SERVER, **overrides):
        settings = dict(destination_url="s3://%s/%s" % (bucket, path) if path else "s3://%s" % bucket,
                        server_name=server_name, endpoint_url=moto_endpoint,
                        aws_access_key="testing", aws_secret_key="testing")
        settings.update(overrides)
        return StorageConfig(**settings)

    return make


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def facts(tmp_path):
    """The facts of a small data directory with one tablespace, written under tmp_path."""
    pgdata = str(tmp_path / "pgdata")
    tablespace = str(tmp_path / "ts1")
    etc = str(tmp_path / "etc")
    write_file(os.path.join(pgdata, "PG_VERSION"), b"15\n")
    write_file(os.path.join(pgdata, "global", "1262"), os.urandom(8192))
    write_file(os.path.join(pgdata, "global", "pg_control"), os.urandom(8192))
    write_file(os.path.join(pgdata, "base", "5", "1259"), os.urandom(20000))
    write_file(os.path.join(pgdata, "pg_hba.conf"), b"local all all peer\n")
    write_file(os.path.join(pgdata, "postmaster.pid"), b"1\n")
    write_file(os.path.join(tablespace, "PG_15_202209061", "5", "16385"), os.urandom(9000))
    write_file(os.path.join(etc, "postgresql.conf"), b"port = 5432\n")
    os.makedirs(os.path.join(pgdata, "pg_tblspc"))
    os.symlink(tablespace, os.path.join(pgdata, "pg_tblspc", "16384"))
    return ServerFacts(
        version=150018, data_directory=pgdata, wal_segment_size=16 << 20, systemid="7711931547866333808",
        config_file=os.path.join(etc, "postgresql.conf"), hba_file=os.path.join(pgdata, "pg_hba.conf"),
        ident_file=os.path.join(etc, "pg_ident.conf"), included_files=[], tablespaces=[("ts1", 16384, tablespace)],
        data_checksums="on", summarize_wal=None, in_recovery=False, backup_privileges=True, archive_mode="on",
        cluster_size=123456,
    )
