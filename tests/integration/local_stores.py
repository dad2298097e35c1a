# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Blob Storage and Google Cloud Storage on loopback, beside moto's S3 (testbed.py).

Azurite (npm, installed by scripts/setup.sh under the prefix) serves the Blob API;
gcp-storage-emulator (PyPI) serves Cloud Storage's JSON API, and gcs_emulator.py adds the XML
multipart upload API that it lacks. Each server object offers what the tests ask of moto:
buckets (containers) to create and delete, the objects under a prefix, the uploads in parts
left open, and the StorageTarget of a bucket.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any, Dict, List, Optional

from azure.storage.blob import BlobServiceClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from testbed import INTEGRATION_DIR, PREFIX, VENV_PYTHON, ChildServer, StorageTarget

AZURITE_BIN = PREFIX / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's development account, as documented by Azurite (a public, well-known key).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# gcs_emulator.py answers 403 for these buckets, as Cloud Storage does to a caller without
# access: the emulator itself never checks permissions.
GCS_FORBIDDEN_PREFIX = "forbidden-"


def unique_name(prefix: str = "pgcloud-test") -> str:
    """A bucket or container name that is valid everywhere: lowercase, digits and dashes."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


class AzuriteServer(ChildServer):
    name = "azurite"

    @property
    def account_url(self) -> str:
        return "%s/%s" % (self.endpoint_url, AZURITE_ACCOUNT)

    @property
    def connection_string(self) -> str:
        return ("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;"
                % (AZURITE_ACCOUNT, AZURITE_KEY, self.account_url))

    def command(self) -> List[str]:
        # --skipApiVersionCheck: the current azure-storage-blob speaks a newer service
        # version than the last Azurite release knows.
        return [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", str(self.log_dir / "data"), "--skipApiVersionCheck", "--silent"]

    def client(self) -> Any:
        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_bucket(self, name: Optional[str] = None) -> str:
        name = name or unique_name()
        self.client().create_container(name)
        return name

    def delete_bucket(self, name: str) -> None:
        self.client().delete_container(name)

    def list_objects(self, bucket: str, prefix: str = "") -> Dict[str, int]:
        container = self.client().get_container_client(bucket)
        return {blob.name: int(blob.size) for blob in container.list_blobs(name_starts_with=prefix)}

    def list_keys(self, bucket: str, prefix: str = "") -> List[str]:
        return sorted(self.list_objects(bucket, prefix))

    def get_object(self, bucket: str, key: str) -> bytes:
        return self.client().get_blob_client(bucket, key).download_blob().readall()

    def object_tags(self, bucket: str, key: str) -> Dict[str, str]:
        """The blob index tags of an object."""
        return dict(self.client().get_blob_client(bucket, key).get_blob_tags())

    def open_uploads(self, bucket: str) -> List[str]:
        """Blobs that have staged blocks and were never committed (an upload left open)."""
        container = self.client().get_container_client(bucket)
        every = {blob.name for blob in container.list_blobs(include=["uncommittedblobs"])}
        return sorted(every - set(self.list_objects(bucket)))

    def target(self, bucket: str, prefix: str, server_name: str) -> StorageTarget:
        return StorageTarget(self.account_url, bucket, prefix, server_name, "azure-blob-storage",
                             (("AZURE_STORAGE_CONNECTION_STRING", self.connection_string),))


class GcsServer(ChildServer):
    name = "gcs"

    def command(self) -> List[str]:
        return [str(VENV_PYTHON), str(INTEGRATION_DIR / "gcs_emulator.py"), "--port", str(self.port)]

    def client(self) -> Any:
        return gcs.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": self.endpoint_url})

    def create_bucket(self, name: Optional[str] = None) -> str:
        name = name or unique_name()
        self.client().create_bucket(name)
        return name

    def delete_bucket(self, name: str) -> None:
        bucket = self.client().bucket(name)
        for blob in list(bucket.list_blobs()):
            blob.delete()
        bucket.delete()

    def list_objects(self, bucket: str, prefix: str = "") -> Dict[str, int]:
        return {blob.name: int(blob.size) for blob in self.client().list_blobs(bucket, prefix=prefix)}

    def list_keys(self, bucket: str, prefix: str = "") -> List[str]:
        return sorted(self.list_objects(bucket, prefix))

    def get_object(self, bucket: str, key: str) -> bytes:
        return self.client().bucket(bucket).blob(key).download_as_bytes()

    def object_tags(self, bucket: str, key: str) -> Dict[str, str]:
        """The custom metadata of an object, where tags go on Cloud Storage."""
        return dict(self.client().bucket(bucket).get_blob(key).metadata or {})

    def open_uploads(self, bucket: str) -> List[str]:
        with urllib.request.urlopen(self.endpoint_url + "/_testbed/uploads", timeout=10) as response:
            uploads = json.loads(response.read())
        return sorted(upload["key"] for upload in uploads if upload["bucket"] == bucket)

    def target(self, bucket: str, prefix: str, server_name: str) -> StorageTarget:
        return StorageTarget(self.endpoint_url, bucket, prefix, server_name, "google-cloud-storage",
                             (("STORAGE_EMULATOR_HOST", self.endpoint_url),))
