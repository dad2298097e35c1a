# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets out of what the engine writes and echoes: errors.redact, redact_url, and their users."""

from __future__ import annotations

import json

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import errors, layout
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import PostgresConfig, StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import parse_destination


@pytest.mark.parametrize("text, secret", [
    ("connection to 'host=db1 user=backup password=s3cr3t dbname=postgres' failed", "s3cr3t"),
    ("connection to \"host=db1 password='s3 cr\\'3t'\" failed", "s3 cr"),
    ("cannot reach postgresql://backup:s3cr3t@db1:5432/postgres", "s3cr3t"),
    ("Could not connect to the endpoint URL: \"http://AKID:s3cr3t@minio:9000/bucket?uploads\"", "s3cr3t"),
    ("token in a URL: https://s3cr3t@hc.example/ping", "s3cr3t"),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=s3cr3t==;EndpointSuffix=core.windows.net",
     "s3cr3t"),
    ("GET https://acct.blob.core.windows.net/c?sv=2024&sig=s3cr3t%2F&se=2026 failed", "s3cr3t"),
])
def test_patterns_hide_secrets_the_engine_was_not_given(text, secret):
    redacted = errors.redact(text)
    assert secret not in redacted and errors.REDACTED in redacted


def test_given_values_are_hidden_longest_first():
    assert errors.redact("key abcdef and abc", ["abc", "abcdef", None, ""]) == "key ******** and ********"


def test_secret_values_of_the_configs():
    key = {"type": "service_account", "private_key_id": "kid-s3cr3t", "private_key": "-----BEGIN\nbody\n-----END\n"}
    storage = StorageConfig(destination_url="gs://b/p", server_name="db1", cloud_provider="google-cloud-storage",
                            gcp_service_account_contents=json.dumps(key))
    postgres = PostgresConfig(password="pg-s3cr3t", primary_conninfo="host=primary password=pc-s3cr3t")
    values = errors.secret_values(storage, postgres)
    for value in ("kid-s3cr3t", key["private_key"], "-----BEGIN\\nbody\\n-----END\\n", "pg-s3cr3t"):
        assert value in values
    text = "the key %s (%s) was refused for pg-s3cr3t" % (key["private_key"], json.dumps(key["private_key"]))
    assert "body" not in errors.redact(text, values) and "pg-s3cr3t" not in errors.redact(text, values)


@pytest.mark.parametrize("url, shown", [
    ("http://user:pw@minio:9000/path", "http://********@minio:9000/path"),
    ("https://token@hc.example/ping/uuid", "https://********@hc.example/ping/uuid"),
    ("https://acct.blob.core.windows.net/c/pg?sv=1&sig=abc", "https://acct.blob.core.windows.net/c/pg?********"),
    ("s3://bucket/prefix", "s3://bucket/prefix"),
    (None, None),
])
def test_redact_url(url, shown):
    assert errors.redact_url(url) == shown


def test_backup_info_error_never_holds_a_password():
    data = layout.render({"status": "FAILED", "error": "failure uploading data (connection to 'host=db "
                                                       "password=s3cr3t' lost; http://k:s3cr3t@h/)"})
    assert b"s3cr3t" not in data and b"password=********" in data


@pytest.mark.parametrize("parameter, url", [
    ("endpoint_url", "http://AKID:s3cr3t@minio:9000"),
    ("endpoint_url", "https://s3cr3t@minio"),
    ("destination_url", "s3://AKID:s3cr3t@bucket/pg"),
])
def test_userinfo_in_urls_refused_without_echoing_it(parameter, url):
    params = {"destination_url": "s3://bucket/pg", "server_name": "db1", parameter: url}
    with pytest.raises(ConfigurationError) as raised:
        StorageConfig(**params)
    assert raised.value.parameter == parameter
    assert "s3cr3t" not in str(raised.value) and "@" in str(raised.value)


def test_bad_endpoint_url_message_hides_its_query():
    with pytest.raises(ConfigurationError) as raised:
        StorageConfig(destination_url="s3://bucket/pg", server_name="db1", endpoint_url="ftp://minio/?token=s3cr3t")
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize("url", ["s3://[b/pg", "https://[zz/c/p"])
def test_unparseable_url_is_the_url_checks_error_not_the_userinfo_checks(url):
    with pytest.raises(ConfigurationError) as raised:
        parse_destination(StorageConfig(destination_url=url, server_name="db1"))
    assert raised.value.parameter == "destination_url"
