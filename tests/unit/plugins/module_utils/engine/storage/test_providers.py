# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Blob Storage and Google Cloud Storage: URLs, credentials and the options they refuse.

Reference (format document, section a): an Azure URL is
https://ACCOUNT.blob.core.windows.net/CONTAINER/path, any other host is an emulator named
http://HOST:PORT/ACCOUNT/CONTAINER/path; a GCS URL is gs://BUCKET/path or the console URL;
slashes at both ends of the path are stripped. Their object operations are tested against
Azurite and gcp-storage-emulator in tests/integration.
"""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage import factory as storage
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError, StorageAccessDeniedError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.azure import (
    AzureBlobStore,
    account_key_credential,
    select_credential,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.gcs import GcsStore

AZURE = "azure-blob-storage"
GCS = "google-cloud-storage"
# Azurite's documented development account key (public, not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def config(url, provider, **options):
    return StorageConfig(destination_url=url, server_name="db1", cloud_provider=provider, **options)


@pytest.mark.parametrize("url, container, prefix, account_url", [
    ("https://acct.blob.core.windows.net/backups", "backups", "", "https://acct.blob.core.windows.net"),
    ("https://acct.blob.core.windows.net/backups/pg/prod/", "backups", "pg/prod", "https://acct.blob.core.windows.net"),
    ("http://127.0.0.1:10000/devstoreaccount1/backups/pg", "backups", "pg", "http://127.0.0.1:10000/devstoreaccount1"),
    ("http://azurite:10000/devstoreaccount1/backups", "backups", "", "http://azurite:10000/devstoreaccount1"),
], ids=["account-container", "account-container-path", "emulator-path", "emulator-container"])
def test_azure_url_gives_container_path_and_account(url, container, prefix, account_url):
    parsed = storage.parse_destination(config(url, AZURE))
    assert (parsed.bucket, parsed.prefix, parsed.account_url) == (container, prefix, account_url)
    assert parsed.key("base", "20261125T023350", "backup.info") == \
        "/".join(part for part in (prefix, "db1/base/20261125T023350/backup.info") if part)


@pytest.mark.parametrize("url, hint", [
    ("https://acct.blob.core.windows.net/", "the container is required"),
    ("https://acct.blob.core.windows.net", "the container is required"),
    ("http://127.0.0.1:10000/devstoreaccount1", "the container is required"),
    ("azure://container/path", "https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH"),
    ("s3://bucket/path", "https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH"),
])
def test_bad_azure_url_says_what_a_good_one_looks_like(url, hint):
    with pytest.raises(ConfigurationError) as caught:
        storage.parse_destination(config(url, AZURE))
    assert caught.value.parameter == "destination_url"
    assert hint in str(caught.value) and "azure-blob-storage" in str(caught.value)


@pytest.mark.parametrize("url, bucket, prefix", [
    ("gs://bkt", "bkt", ""),
    ("gs://bkt/pg/prod/", "bkt", "pg/prod"),
    ("https://console.cloud.google.com/storage/browser/bkt/pg", "bkt", "pg"),
    ("https://console.cloud.google.com/storage/browser/bkt", "bkt", ""),
])
def test_gcs_url_gives_bucket_and_path(url, bucket, prefix):
    parsed = storage.parse_destination(config(url, GCS))
    assert (parsed.bucket, parsed.prefix) == (bucket, prefix)


@pytest.mark.parametrize("url", ["gs://", "s3://bkt/pg", "https://storage.googleapis.com/bkt/pg",
                                 "https://console.cloud.google.com/storage/browser/"])
def test_bad_gcs_url_is_refused(url):
    with pytest.raises(ConfigurationError) as caught:
        storage.parse_destination(config(url, GCS))
    assert caught.value.parameter == "destination_url"
    assert "gs://BUCKET/PATH" in str(caught.value)


@pytest.mark.parametrize("provider, url, option, value", [
    (GCS, "gs://bkt/pg", "encryption", "AES256"),
    (AZURE, "https://a.blob.core.windows.net/c", "sse_customer_key", "file:///key"),
    (AZURE, "https://a.blob.core.windows.net/c", "endpoint_url", "http://127.0.0.1:9000"),
    ("aws-s3", "s3://bkt/pg", "kms_key_name", "projects/p/locations/l/keyRings/r/cryptoKeys/k"),
    ("aws-s3", "s3://bkt/pg", "encryption_scope", "scope1"),
    ("aws-s3", "s3://bkt/pg", "azure_storage_key", AZURITE_KEY),
    (GCS, "gs://bkt/pg", "azure_credential", "default"),
    (AZURE, "https://a.blob.core.windows.net/c", "gcp_service_account_file", "/etc/key.json"),
])
def test_an_option_of_another_provider_is_refused_not_ignored(provider, url, option, value):
    with pytest.raises(ConfigurationError) as caught:
        config(url, provider, **{option: value})
    assert caught.value.parameter == option
    assert "cloud_provider is %s" % provider in str(caught.value)


def test_azure_credentials_are_exclusive():
    with pytest.raises(ConfigurationError) as caught:
        config("https://a.blob.core.windows.net/c", AZURE, azure_storage_key=AZURITE_KEY, azure_credential="default")
    assert "azure_storage_key, azure_credential are exclusive" in str(caught.value)


def test_gcp_key_file_and_contents_are_exclusive():
    with pytest.raises(ConfigurationError) as caught:
        config("gs://bkt", GCS, gcp_service_account_file="/k.json", gcp_service_account_contents="{}")
    assert caught.value.parameter == "gcp_service_account_file"


ENVIRONMENT = {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
               "AZURE_STORAGE_SAS_TOKEN": "sv=2024&sig=x", "AZURE_STORAGE_KEY": AZURITE_KEY}


@pytest.mark.parametrize("options, environ, expected", [
    ({"azure_storage_key": "k"}, ENVIRONMENT, ("azure_storage_key", "k")),
    ({"azure_credential": "managed-identity"}, ENVIRONMENT, ("managed-identity", None)),
    ({}, ENVIRONMENT, ("azure_storage_connection_string", "UseDevelopmentStorage=true")),
    ({}, {"AZURE_STORAGE_KEY": "k", "AZURE_STORAGE_SAS_TOKEN": "t"}, ("azure_storage_sas_token", "t")),
    ({}, {"AZURE_STORAGE_KEY": "k"}, ("azure_storage_key", "k")),
    ({}, {}, ("default", None)),
], ids=["parameter", "azure_credential", "env-connection-string", "env-sas-before-key", "env-key", "default-chain"])
def test_azure_credential_comes_from_the_task_then_the_environment(options, environ, expected):
    # A parameter or an explicit azure_credential wins over the environment; among the
    # environment variables the reference tool's order holds.
    assert select_credential(config("https://a.blob.core.windows.net/c", AZURE, **options), environ) == expected


@pytest.mark.parametrize("account_url, account", [
    ("https://acct.blob.core.windows.net", "acct"),
    ("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1"),
])
def test_account_key_names_the_account_of_the_url(account_url, account):
    assert account_key_credential(account_url, "k") == {"account_name": account, "account_key": "k"}


def test_token_credential_on_plain_http_says_which_credentials_an_emulator_takes():
    with pytest.raises(ConfigurationError) as caught:
        storage.open_store(config("http://127.0.0.1:10000/devstoreaccount1/c", AZURE, azure_credential="default"))
    assert "https://" in str(caught.value) and "azure_storage_key" in str(caught.value)


def test_open_store_gives_the_azure_store():
    store = storage.open_store(config("http://127.0.0.1:9/devstoreaccount1/c/pg", AZURE, azure_storage_key=AZURITE_KEY))
    assert isinstance(store, AzureBlobStore)
    assert (store.min_chunk_size, store.max_chunks) == (64 << 10, 50000)


def test_open_store_gives_the_gcs_store(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    store = storage.open_store(config("gs://bkt/pg", GCS, tags={"team": "dba"}))
    assert isinstance(store, GcsStore)
    assert store.metadata == {"team": "dba"}
    assert (store.min_chunk_size, store.max_chunks) == (5 << 20, 10000)


@pytest.mark.parametrize("options, parameter", [
    ({"gcp_service_account_file": "/nonexistent/key.json"}, "gcp_service_account_file"),
    ({"gcp_service_account_contents": "{not json"}, "gcp_service_account_contents"),
    ({"gcp_service_account_contents": '{"type": "service_account"}'}, "gcp_service_account_contents"),
])
def test_unusable_service_account_key_names_its_option(options, parameter):
    with pytest.raises(ConfigurationError) as caught:
        storage.open_store(config("gs://bkt/pg", GCS, **options))
    assert caught.value.parameter == parameter


def test_no_google_credentials_says_where_to_give_them(monkeypatch, tmp_path):
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud login of the test runner
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # and no wait for a metadata server
    with pytest.raises(StorageAccessDeniedError) as caught:
        storage.open_store(config("gs://bkt/pg", GCS))
    assert "gcp_service_account_file" in str(caught.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(caught.value)


def test_gcs_part_checksum_is_crc32c_in_base64_computed_in_slices():
    import base64

    import google_crc32c

    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.gcs import CRC_SLICE, crc32c_of

    # The CRC32C of "123456789" is 0xE3069283 (the standard check value).
    assert crc32c_of(bytearray(b"123456789")) == "4waSgw=="
    big = bytearray(b"0123456789abcdef" * (CRC_SLICE // 8 + 3))  # three slices, the last partial
    assert crc32c_of(big) == base64.b64encode(google_crc32c.value(bytes(big)).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("url, words", [
    ("https://acct.blob.core.windows.net/c/../other/p", ("'..'",)),
    ("https://acct.blob.core.windows.net/../other/p", ("'..'",)),
    ("http://127.0.0.1:10000/devstoreaccount1/c/./p", ("'.'",)),
    ("http://127.0.0.1:10000/../devstoreaccount1/c", ("'..'",)),
    ("https://acct.blob.core.windows.net/c/a%2F..%2Fb", ("percent",)),
    ("https://acct.blob.core.windows.net/c/a\\..\\b", ("backslash",)),
    ("https://acct.blob.core.windows.net/Backups/pg", ("container", "'Backups'")),
    ("https://acct.blob.core.windows.net/-c-/pg", ("container",)),
    ("http://127.0.0.1:10000/dev_account/c", ("account",)),
    ("http://azurite_1:10000/devstoreaccount1/c", ("host", "azurite_1")),
    ("http://127.0.0.1:99999/devstoreaccount1/c", ("port",)),
    ("https://acct.blob.core.windows.net/c/pg?sv=2024&sig=SIGNATURE", ("query",)),
    ("https://acct.blob.core.windows.net/c/pg;sig=SIGNATURE", ("';'",)),
])
def test_azure_url_that_would_leave_its_container_or_fail_later_is_refused(url, words):
    with pytest.raises(ConfigurationError) as caught:
        storage.parse_destination(config(url, AZURE))
    message = str(caught.value)
    assert caught.value.parameter == "destination_url"
    assert all(word in message for word in words), message
    assert "SIGNATURE" not in message


@pytest.mark.parametrize("url", [
    "gs://../x", "gs://Bkt/pg", "gs://bkt_/pg", "gs://bkt/a/../b", "gs://bkt//b", "gs://bkt/%2e%2e",
    "https://console.cloud.google.com/storage/browser/bkt/pg?project=acme",
    "https://console.cloud.google.com/storage/browser/../bkt/pg",
    "https://console.cloud.google.com/storage/browser/bkt/../pg",
])
def test_gcs_url_that_would_leave_its_bucket_or_fail_later_is_refused(url):
    with pytest.raises(ConfigurationError) as caught:
        storage.parse_destination(config(url, GCS))
    assert caught.value.parameter == "destination_url"
    assert "acme" not in str(caught.value)
