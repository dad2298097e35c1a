# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gcp-storage-emulator with the XML multipart upload API in front of it.

The emulator (PyPI gcp-storage-emulator) serves the JSON API that google-cloud-storage uses
for listing, reading and small uploads, but answers 501 to the XML multipart upload API
that large objects take on the real service (initiate with POST ?uploads, PUT ?partNumber=N
&uploadId=ID, complete with POST ?uploadId=ID, abort with DELETE ?uploadId=ID). This server
answers those four calls itself, as documented for Cloud Storage's XML API, stores the
completed object in the emulator through its JSON API, and forwards every other request to
the emulator unchanged. GET /_testbed/uploads lists the uploads neither completed nor
aborted, which the tests assert to be empty after a failed backup; GET /BUCKET?uploads is the
XML API's own list of them (one page), with the time each was initiated.

The emulator checks no permissions. So that the tests can see how a refusal is reported,
every request about a bucket whose name starts with "forbidden-" gets Cloud Storage's 403
answer (JSON for the JSON API, XML for the XML API).

Run: python gcs_emulator.py --port PORT   (one process: the emulator on a second, private port)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import re
import socket
import threading
import time
import uuid
from xml.etree import ElementTree
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Optional, Tuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

import google_crc32c
from gcp_storage_emulator.server import create_server

XML_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
# Request headers that become properties of the completed object.
METADATA_PREFIX = "x-goog-meta-"
FORBIDDEN_PREFIX = "forbidden-"
JSON_API_BUCKET = re.compile(r"^(?:/upload|/download)?(?:/storage/v1)?/b/([^/?]+)")
KMS_HEADER = "x-goog-encryption-kms-key-name"


class Uploads:
    """Multipart uploads in progress: id -> bucket, key, headers of the initiate call, parts."""

    def __init__(self) -> None:
        self._uploads: Dict[str, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def start(self, bucket: str, key: str, headers: Dict[str, str]) -> str:
        upload_id = uuid.uuid4().hex
        with self._lock:
            self._uploads[upload_id] = {"bucket": bucket, "key": key, "headers": headers, "parts": {},
                                        "initiated": time.time()}
        return upload_id

    def get(self, upload_id: str, bucket: str, key: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None or (upload["bucket"], upload["key"]) != (bucket, key):
            return None
        return upload

    def end(self, upload_id: str) -> None:
        with self._lock:
            self._uploads.pop(upload_id, None)

    def listing(self) -> list:
        with self._lock:
            return [{"bucket": item["bucket"], "key": item["key"], "upload_id": upload_id,
                     "initiated": item["initiated"]} for upload_id, item in self._uploads.items()]


class FrontHandler(BaseHTTPRequestHandler):
    """The XML multipart calls and the test listing here; everything else to the emulator."""

    protocol_version = "HTTP/1.1"
    server: "FrontServer"

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
        """Quiet: the tests read the server's log only when it fails to start."""

    def parse_request(self) -> bool:
        # Runs before every do_* method: the forbidden buckets are refused there.
        if not super().parse_request():
            return False
        if self._bucket_of_request().startswith(FORBIDDEN_PREFIX):
            self._body()
            self._refuse()
            return False
        return True

    def _bucket_of_request(self) -> str:
        path = urlsplit(self.path).path
        match = JSON_API_BUCKET.match(path)
        return unquote(match.group(1) if match else path.lstrip("/").partition("/")[0])

    def _refuse(self) -> None:
        message = "caller does not have storage.buckets.get access to the Google Cloud Storage bucket."
        if JSON_API_BUCKET.match(urlsplit(self.path).path):
            body = json.dumps({"error": {"code": 403, "message": message,
                                         "errors": [{"reason": "forbidden", "message": message}]}}).encode()
            self._reply(HTTPStatus.FORBIDDEN, body, "application/json")
        else:
            self._xml_error(HTTPStatus.FORBIDDEN, "AccessDenied", message)

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if urlsplit(self.path).path == "/_testbed/uploads":
            self._reply(HTTPStatus.OK, json.dumps(self.server.uploads.listing()).encode(), "application/json")
        elif bucket and not key and "uploads" in query:
            self._list_uploads(bucket, query.get("prefix", [""])[0])
        else:
            self._forward()

    def do_POST(self) -> None:
        bucket, key, query = self._target()
        if key and "uploads" in query:
            self._initiate(bucket, key)
        elif key and "uploadId" in query:
            self._complete(bucket, key, query["uploadId"][0])
        else:
            self._forward()

    def do_PUT(self) -> None:
        bucket, key, query = self._target()
        if key and "uploadId" in query and "partNumber" in query:
            self._upload_part(bucket, key, query["uploadId"][0], int(query["partNumber"][0]))
        else:
            self._forward()

    def do_DELETE(self) -> None:
        bucket, key, query = self._target()
        if key and "uploadId" in query:
            self.server.uploads.end(query["uploadId"][0])
            self._body()
            self._reply(HTTPStatus.NO_CONTENT, b"")
        else:
            self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    # --- the XML multipart upload API

    def _target(self) -> Tuple[str, str, Dict[str, list]]:
        parts = urlsplit(self.path)
        bucket, key = parts.path.lstrip("/").partition("/")[::2]
        return unquote(bucket), unquote(key), parse_qs(parts.query, keep_blank_values=True)

    def _initiate(self, bucket: str, key: str) -> None:
        self._body()
        if not self.server.bucket_exists(bucket):
            self._xml_error(HTTPStatus.NOT_FOUND, "NoSuchBucket", "The specified bucket does not exist.")
            return
        headers = {name.lower(): value for name, value in self.headers.items()
                   if name.lower().startswith(METADATA_PREFIX) or name.lower() in (KMS_HEADER, "content-type")}
        upload_id = self.server.uploads.start(bucket, key, headers)
        root = ElementTree.Element("InitiateMultipartUploadResult", xmlns=XML_NAMESPACE)
        for tag, text in (("Bucket", bucket), ("Key", key), ("UploadId", upload_id)):
            ElementTree.SubElement(root, tag).text = text
        self._reply(HTTPStatus.OK, ElementTree.tostring(root, xml_declaration=True, encoding="UTF-8"),
                    "application/xml")

    def _list_uploads(self, bucket: str, prefix: str) -> None:
        root = ElementTree.Element("ListMultipartUploadsResult", xmlns=XML_NAMESPACE)
        ElementTree.SubElement(root, "Bucket").text = bucket
        ElementTree.SubElement(root, "IsTruncated").text = "false"
        for item in sorted(self.server.uploads.listing(), key=lambda upload: (upload["key"], upload["initiated"])):
            if item["bucket"] != bucket or not item["key"].startswith(prefix):
                continue
            upload = ElementTree.SubElement(root, "Upload")
            initiated = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(item["initiated"]))
            for tag, text in (("Key", item["key"]), ("UploadId", item["upload_id"]), ("StorageClass", "STANDARD"),
                              ("Initiated", "%s.%03dZ" % (initiated, int(item["initiated"] % 1 * 1000)))):
                ElementTree.SubElement(upload, tag).text = text
        self._reply(HTTPStatus.OK, ElementTree.tostring(root, xml_declaration=True, encoding="UTF-8"),
                    "application/xml")

    def _upload_part(self, bucket: str, key: str, upload_id: str, number: int) -> None:
        data = self._body()
        upload = self.server.uploads.get(upload_id, bucket, key)
        if upload is None:
            self._xml_error(HTTPStatus.NOT_FOUND, "NoSuchUpload", "The requested upload was not found.")
            return
        digest = hashlib.md5(data).digest()
        sent_md5 = self.headers.get("Content-MD5")
        if sent_md5 is not None and sent_md5 != base64.b64encode(digest).decode():
            # As Cloud Storage's XML API: a part whose bytes do not match its Content-MD5 is refused.
            self._xml_error(HTTPStatus.BAD_REQUEST, "BadDigest", "The Content-MD5 you specified did not match.")
            return
        etag = '"%s"' % digest.hex()
        upload["parts"][number] = (etag, data)
        # Cloud Storage reports the part's checksums; the SDK's part upload checks crc32c.
        hashes = "crc32c=%s,md5=%s" % (base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode(),
                                       base64.b64encode(digest).decode())
        self._reply(HTTPStatus.OK, b"", extra_headers={"ETag": etag, "x-goog-hash": hashes})

    def _complete(self, bucket: str, key: str, upload_id: str) -> None:
        document = ElementTree.fromstring(self._body())
        upload = self.server.uploads.get(upload_id, bucket, key)
        if upload is None:
            self._xml_error(HTTPStatus.NOT_FOUND, "NoSuchUpload", "The requested upload was not found.")
            return
        pieces = []
        for part in document.iter():
            if part.tag.rsplit("}", 1)[-1] != "Part":
                continue
            fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in part}
            stored = upload["parts"].get(int(fields["PartNumber"]))
            if stored is None or stored[0].strip('"') != fields["ETag"].strip('"'):
                self._xml_error(HTTPStatus.BAD_REQUEST, "InvalidPart", "Part %s is missing." % fields["PartNumber"])
                return
            pieces.append(stored[1])
        self.server.store_object(bucket, key, b"".join(pieces), upload["headers"])
        self.server.uploads.end(upload_id)
        root = ElementTree.Element("CompleteMultipartUploadResult", xmlns=XML_NAMESPACE)
        for tag, text in (("Bucket", bucket), ("Key", key), ("ETag", '"%s-%d"' % (upload_id, len(pieces)))):
            ElementTree.SubElement(root, tag).text = text
        self._reply(HTTPStatus.OK, ElementTree.tostring(root, xml_declaration=True, encoding="UTF-8"),
                    "application/xml")

    def _xml_error(self, status: HTTPStatus, code: str, message: str) -> None:
        root = ElementTree.Element("Error")
        ElementTree.SubElement(root, "Code").text = code
        ElementTree.SubElement(root, "Message").text = message
        self._reply(status, ElementTree.tostring(root, xml_declaration=True, encoding="UTF-8"), "application/xml")

    # --- plumbing

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: HTTPStatus, body: bytes, content_type: Optional[str] = None,
               extra_headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        body = self._body()
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in ("content-length", "transfer-encoding", "connection")}
        status, reply_headers, reply = self.server.emulator_request(self.command, self.path, body, headers)
        self.send_response(status)
        for name, value in reply_headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class FrontServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, emulator_port: int) -> None:
        super().__init__(("127.0.0.1", port), FrontHandler)
        self.emulator_port = emulator_port
        self.uploads = Uploads()

    def emulator_request(self, method: str, path: str, body: bytes,
                         headers: Dict[str, str]) -> Tuple[int, list, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.emulator_port, timeout=300)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def bucket_exists(self, bucket: str) -> bool:
        return self.emulator_request("GET", "/storage/v1/b/%s" % quote(bucket, safe=""), b"", {})[0] == HTTPStatus.OK

    def store_object(self, bucket: str, key: str, data: bytes, headers: Dict[str, str]) -> None:
        """A JSON API multipart upload: the object's resource (with its metadata), then its bytes."""
        resource: Dict[str, Any] = {"name": key}
        metadata = {name[len(METADATA_PREFIX):]: value for name, value in headers.items()
                    if name.startswith(METADATA_PREFIX)}
        if metadata:
            resource["metadata"] = metadata
        if KMS_HEADER in headers:
            resource["kmsKeyName"] = headers[KMS_HEADER]
        boundary = uuid.uuid4().hex
        body = b"".join((
            b"--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" % boundary.encode(),
            json.dumps(resource).encode(),
            b"\r\n--%s\r\nContent-Type: %s\r\n\r\n" % (
                boundary.encode(), headers.get("content-type", "application/octet-stream").encode()),
            data,
            b"\r\n--%s--\r\n" % boundary.encode(),
        ))
        status, reply = self.emulator_request(
            "POST", "/upload/storage/v1/b/%s/o?uploadType=multipart" % quote(bucket, safe=""), body,
            {"Content-Type": "multipart/related; boundary=%s" % boundary})[::2]
        if status != HTTPStatus.OK:
            raise RuntimeError("the emulator refused the completed object %s/%s: %s %r" % (
                bucket, key, status, reply[:200]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    emulator_port = free_port()
    emulator = create_server("127.0.0.1", emulator_port, in_memory=True)
    emulator.start()
    front = FrontServer(arguments.port, emulator_port)
    try:
        front.serve_forever()
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
