# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input, one case a row: every module fails clearly and touches nothing.

Each case runs one module (as a host runs it) against the real stores and the real cluster,
with one thing wrong: a malformed URL, a mismatched provider, a bad size or tag, a rule of the
reference tool broken, a wrong credential, a missing bucket, an endpoint or a server that
does not answer, a role that may not take backups. Each must give `failed: true`, a message
that names the parameter or the cause, no traceback, no object and no open upload in the
store, and no session left on the server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Tuple, Union

import pytest

from local_stores import AzuriteServer
from testbed import MotoServer, PostgresCluster, free_port, run_module

BUCKET = "pgcloud-bad-input"
NO_BACKUP_ROLE = "pgcloud_no_backup"
# Removes a parameter from the module's baseline.
REMOVE = object()


@dataclass(frozen=True)
class Bed:
    """What the cases point at: the S3 store, the Azure one and the source cluster."""

    moto: MotoServer
    azurite: AzuriteServer
    container: str
    cluster: PostgresCluster

    def postgres(self) -> Dict[str, Any]:
        return dict(self.cluster.connection_params)

    def s3(self, case: str) -> Dict[str, Any]:
        return {"destination_url": "s3://%s/%s" % (BUCKET, case), "server_name": "source",
                "endpoint_url": self.moto.endpoint_url}

    def azure(self, case: str) -> Dict[str, Any]:
        return {"destination_url": "%s/%s/%s" % (self.azurite.account_url, self.container, case),
                "server_name": "source", "cloud_provider": "azure-blob-storage"}

    def baseline(self, module: str, case: str) -> Dict[str, Any]:
        params = self.s3(case)
        if module in ("base_backup", "check", "snapshot_backup"):
            params.update(self.postgres())
        if module == "snapshot_backup":
            params.update({"snapshot_instance": "i-0123456789abcdef0", "snapshot_disks": ["vol-0123456789abcdef0"],
                           "aws_region": "us-east-1"})
        return params


Params = Union[Dict[str, Any], Callable[[Bed], Dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    """A module, what differs from its baseline, and the words its failure message must hold."""

    name: str
    module: str
    params: Params
    expected: Tuple[str, ...]


def azure_params(**extra: Any) -> Callable[[Bed], Dict[str, Any]]:
    def build(bed: Bed) -> Dict[str, Any]:
        return dict(bed.azure("case"), endpoint_url=REMOVE, **extra)
    return build


def gcs_params(**extra: Any) -> Dict[str, Any]:
    return dict({"destination_url": "gs://pgcloud-bad-input/case", "cloud_provider": "google-cloud-storage",
                 "endpoint_url": REMOVE}, **extra)


# A pasted SAS URL's query: its signature must never come back in a result.
SAS_SIGNATURE = "pgcloudSasSignature0123456789"
SAS_QUERY = "sv=2024-11-04&ss=b&srt=co&sp=rwdl&sig=%s" % SAS_SIGNATURE
WRONG_AZURE_KEY = base64.b64encode(b"not the account key of devstoreaccount1 at all!").decode()
MANY_TAGS = {"key%02d" % number: "value" for number in range(60)}

CASES = [
    # The destination and the provider.
    Case("url-without-scheme", "base_backup", {"destination_url": "acme-backups/pg"}, ("destination_url", "s3://")),
    Case("url-of-another-scheme", "base_backup", {"destination_url": "ftp://acme/pg"}, ("destination_url", "s3://")),
    Case("url-without-bucket", "base_backup", {"destination_url": "s3:///pg"}, ("destination_url",)),
    Case("gcs-url-with-s3-provider", "base_backup", {"destination_url": "gs://acme/pg"}, ("destination_url", "aws-s3")),
    Case("s3-url-with-azure-provider", "base_backup", azure_params(destination_url="s3://acme/pg"),
         ("destination_url", "azure-blob-storage")),
    Case("azure-url-without-container", "base_backup",
         azure_params(destination_url="https://acme.blob.core.windows.net/"), ("destination_url", "container")),
    Case("gcs-url-without-bucket", "base_backup", gcs_params(destination_url="gs:///pg"), ("destination_url", "bucket")),
    Case("unknown-provider", "base_backup", {"cloud_provider": "aws-s4"}, ("cloud_provider", "aws-s3")),
    Case("unknown-parameter", "base_backup", {"compresion": "gzip"}, ("compresion",)),
    Case("missing-server-name", "base_backup", {"server_name": REMOVE}, ("server_name",)),
    Case("server-name-with-slash", "base_backup", {"server_name": "db/1"}, ("server_name",)),
    Case("endpoint-not-a-url", "base_backup", {"endpoint_url": "not a url"}, ("endpoint_url",)),
    # Sizes and numbers.
    Case("unknown-compression", "base_backup", {"compression": "zip"}, ("compression", "zstd")),
    Case("archive-size-not-a-size", "base_backup", {"max_archive_size": "10 parsecs"}, ("max_archive_size", "5MB")),
    Case("archive-size-zero", "base_backup", {"max_archive_size": "0"}, ("max_archive_size",)),
    Case("chunk-size-not-a-size", "base_backup", {"min_chunk_size": "5 MB please"}, ("min_chunk_size",)),
    Case("bandwidth-negative", "base_backup", {"max_bandwidth": "-1MB"}, ("max_bandwidth",)),
    Case("jobs-zero", "base_backup", {"jobs": 0}, ("jobs",)),
    Case("jobs-not-a-number", "base_backup", {"jobs": "many"}, ("jobs",)),
    Case("read-timeout-zero", "base_backup", {"read_timeout": 0}, ("read_timeout",)),
    Case("keepalive-negative", "base_backup", {"keepalive_interval": -1}, ("keepalive_interval",)),
    Case("port-not-a-number", "base_backup", {"port": "fivefourthreetwo"}, ("port",)),
    Case("addressing-style-unknown", "base_backup", {"addressing_style": "sideways"}, ("addressing_style",)),
    # Tags and names.
    Case("tags-not-a-dict", "base_backup", {"tags": ["env", "prod"]}, ("tags",)),
    Case("tags-too-many", "base_backup", {"tags": MANY_TAGS}, ("tags", "10")),
    Case("tag-with-forbidden-character", "base_backup", {"tags": {"env": "prod;drop"}}, ("tags", "env")),
    Case("tag-value-too-long", "base_backup", {"tags": {"note": "x" * 300}}, ("tags", "256")),
    Case("backup-name-like-an-id", "base_backup", {"backup_name": "20240101T000000"}, ("backup_name", "id")),
    Case("backup-name-reserved", "base_backup", {"backup_name": "latest"}, ("backup_name", "reserved")),
    Case("backup-name-blank", "base_backup", {"backup_name": "  "}, ("backup_name",)),
    # Encryption and options of another provider.
    Case("encryption-unknown", "base_backup", {"encryption": "aes"}, ("encryption",)),
    Case("kms-key-without-kms", "base_backup", {"sse_kms_key_id": "alias/backup"}, ("sse_kms_key_id", "encryption")),
    Case("sse-c-with-sse-s3", "base_backup",
         {"sse_customer_key": base64.b64encode(b"k" * 32).decode(), "encryption": "AES256"},
         ("sse_customer_key", "encryption")),
    Case("sse-c-key-too-short", "base_backup", {"sse_customer_key": base64.b64encode(b"short").decode()},
         ("sse_customer_key", "256-bit")),
    Case("azure-scope-with-s3", "base_backup", {"encryption_scope": "backups"}, ("encryption_scope", "azure")),
    Case("gcs-kms-with-s3", "base_backup", {"kms_key_name": "projects/p/keys/k"}, ("kms_key_name", "google")),
    Case("azure-credential-with-s3", "base_backup", {"azure_credential": "managed-identity"},
         ("azure_credential", "azure-blob-storage")),
    Case("aws-profile-with-gcs", "base_backup", gcs_params(aws_profile="prod"), ("aws_profile", "aws-s3")),
    Case("irsa-with-profile", "base_backup", {"aws_irsa": True, "aws_profile": "prod"}, ("aws_irsa", "aws_profile")),
    Case("two-azure-credentials", "base_backup", azure_params(azure_storage_sas_token="sv=x", azure_storage_key="a2V5"),
         ("azure_storage_sas_token", "azure_storage_key", "exclusive")),
    Case("two-gcp-credentials", "base_backup",
         gcs_params(gcp_service_account_file="/etc/sa.json", gcp_service_account_contents='{"type": "service_account"}'),
         ("gcp_service_account_file", "gcp_service_account_contents")),
    Case("gcp-credentials-not-json", "base_backup", gcs_params(gcp_service_account_contents="{not json"),
         ("gcp_service_account_contents",)),
    Case("gcp-credentials-file-missing", "base_backup",
         gcs_params(gcp_service_account_file="/nonexistent/service-account.json"),
         ("gcp_service_account_file", "/nonexistent/service-account.json")),
    Case("aws-key-without-secret", "base_backup", {"aws_access_key": "AKIAEXAMPLE"}, ("aws_secret_key",)),
    # What only the store or the server can tell.
    Case("bucket-missing", "base_backup", {"destination_url": "s3://no-such-bucket-anywhere/pg"},
         ("no-such-bucket-anywhere", "does not exist")),
    Case("endpoint-unreachable", "base_backup", lambda bed: {"endpoint_url": "http://127.0.0.1:%d" % free_port()},
         ("127.0.0.1",)),
    Case("azure-wrong-key", "base_backup", azure_params(azure_storage_key=WRONG_AZURE_KEY), ("403", "credential")),
    Case("postgres-down", "base_backup", lambda bed: {"port": free_port()}, ("postgresql",)),
    Case("database-missing", "base_backup", {"dbname": "no_such_database"}, ("no_such_database",)),
    Case("role-without-backup-privileges", "base_backup", {"user": NO_BACKUP_ROLE}, (NO_BACKUP_ROLE, "pg_backup_start")),
    # Issue 18: input that was accepted and should not be.
    Case("server-name-dot-dot", "base_backup", {"server_name": ".."}, ("server_name", "'..'")),
    Case("server-name-dot", "check", {"server_name": "."}, ("server_name", "'.'")),
    Case("server-name-newline", "base_backup", {"server_name": "db\n1"}, ("server_name", "U+000A")),
    Case("server-name-percent", "base_backup", {"server_name": "%2e%2e"}, ("server_name", "percent")),
    Case("url-dot-segments", "base_backup", {"destination_url": "s3://%s/a/../x" % BUCKET}, ("destination_url", "'..'")),
    Case("azure-url-dot-segments", "base_backup",
         lambda bed: dict(bed.azure("case"), endpoint_url=REMOVE,
                          destination_url="%s/%s/../other/p" % (bed.azurite.account_url, bed.container)),
         ("destination_url", "'..'")),
    Case("url-empty-segment", "base_backup", {"destination_url": "s3://%s/a//x" % BUCKET}, ("destination_url", "empty")),
    Case("url-backslash", "backup_info", {"destination_url": "s3://%s/a\\..\\x" % BUCKET},
         ("destination_url", "backslash")),
    Case("url-newline", "base_backup", {"destination_url": "s3://%s/pg\nExecStart=/bin/sh" % BUCKET},
         ("destination_url", "U+000A")),
    Case("azure-url-with-sas-query", "base_backup",
         lambda bed: dict(bed.azure("case"), endpoint_url=REMOVE, destination_url="%s/%s/pg?%s" % (
             bed.azurite.account_url, bed.container, SAS_QUERY)), ("destination_url", "query")),
    Case("url-with-fragment", "check", {"destination_url": "s3://%s/pg#%s" % (BUCKET, SAS_QUERY)},
         ("destination_url", "fragment")),
    Case("url-not-parseable", "base_backup", {"destination_url": "s3://[b/pg"}, ("destination_url",)),
    Case("endpoint-host-with-underscore", "base_backup", {"endpoint_url": "http://minio_1:9000"},
         ("endpoint_url", "minio_1")),
    Case("endpoint-port-out-of-range", "check", {"endpoint_url": "http://127.0.0.1:99999"}, ("endpoint_url", "port")),
    Case("backup-name-trailing-space", "base_backup", {"backup_name": "nightly "}, ("backup_name", "whitespace")),
    Case("backup-name-newline", "base_backup", {"backup_name": "weekly\nrun"}, ("backup_name", "U+000A")),
    Case("backup-name-none", "base_backup", {"backup_name": "None"}, ("backup_name",)),
    Case("azure-tag-with-at", "base_backup", azure_params(tags={"owner": "dba@example.com"}),
         ("tags", "owner", "azure-blob-storage")),
    Case("gcs-tag-with-newline", "base_backup", gcs_params(tags={"team": "dba\nX-Injected: 1"}), ("tags", "team")),
    Case("s3-tag-with-tab", "base_backup", {"tags": {"team": "dba\tops"}}, ("tags", "team")),
    Case("jobs-too-many", "base_backup", {"jobs": 10000}, ("jobs", "64")),
    Case("chunk-past-part-limit", "base_backup", {"min_chunk_size": "6GB"}, ("min_chunk_size", "5120")),
    Case("azure-chunk-past-block-limit", "base_backup", azure_params(min_chunk_size="4001MB"), ("min_chunk_size", "4000")),
    Case("bandwidth-too-low", "base_backup", {"max_bandwidth": 1}, ("max_bandwidth", "128KB")),
    Case("archive-size-past-part-limit", "base_backup", {"max_archive_size": "30000GB"}, ("max_archive_size", "25000GB")),
    Case("keepalive-too-long", "base_backup", {"keepalive_interval": 100000}, ("keepalive_interval", "3600")),
    # snapshot_backup and the reference tool's snapshot rules.
    Case("snapshot-disk-twice", "snapshot_backup", {"snapshot_disks": ["vol-1", "vol-1"]}, ("snapshot_disks", "vol-1")),
    Case("snapshot-without-instance", "snapshot_backup", {"snapshot_instance": REMOVE}, ("snapshot_instance",)),
    Case("snapshot-with-compression", "snapshot_backup", {"compression": "gzip"}, ("compression",)),
    Case("lock-mode-alone", "snapshot_backup", {"aws_snapshot_lock_mode": "governance"},
         ("aws_snapshot_lock_duration", "aws_snapshot_lock_expiration_date")),
    Case("lock-duration-and-date", "snapshot_backup",
         {"aws_snapshot_lock_mode": "governance", "aws_snapshot_lock_duration": 7,
          "aws_snapshot_lock_expiration_date": "2099-01-31T00:00:00.000Z"},
         ("aws_snapshot_lock_duration", "aws_snapshot_lock_expiration_date")),
    Case("lock-duration-zero", "snapshot_backup", {"aws_snapshot_lock_mode": "compliance", "aws_snapshot_lock_duration": 0},
         ("aws_snapshot_lock_duration", "1")),
    Case("lock-cool-off-with-governance", "snapshot_backup",
         {"aws_snapshot_lock_mode": "governance", "aws_snapshot_lock_duration": 7, "aws_snapshot_lock_cool_off_period": 2},
         ("aws_snapshot_lock_cool_off_period", "compliance")),
    Case("lock-date-malformed", "snapshot_backup",
         {"aws_snapshot_lock_mode": "governance", "aws_snapshot_lock_expiration_date": "next tuesday"},
         ("aws_snapshot_lock_expiration_date", "YYYY")),
    Case("lock-duration-without-mode", "snapshot_backup", {"aws_snapshot_lock_duration": 7},
         ("aws_snapshot_lock_duration", "aws_snapshot_lock_mode")),
    Case("gcp-snapshot-without-zone", "snapshot_backup", gcs_params(gcp_project="acme"), ("gcp_zone",)),
    # backup_info and check.
    Case("show-a-missing-backup", "backup_info", {"backup": "no-such-backup"}, ("no-such-backup",)),
    Case("list-with-bad-url", "backup_info", {"destination_url": "s3:/acme"}, ("destination_url",)),
    Case("check-with-bad-url", "check", {"destination_url": "https://acme/pg"}, ("destination_url",)),
    Case("check-with-backup-option", "check", {"compression": "gzip"}, ("compression",)),
]


@pytest.fixture(scope="module")
def bed(moto: MotoServer, azurite: AzuriteServer, source_cluster: PostgresCluster) -> Iterator[Bed]:
    moto.create_bucket(BUCKET)
    container = azurite.create_bucket()
    source_cluster.execute("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN" % (NO_BACKUP_ROLE, NO_BACKUP_ROLE))
    try:
        yield Bed(moto, azurite, container, source_cluster)
    finally:
        source_cluster.execute("DROP ROLE IF EXISTS %s" % NO_BACKUP_ROLE)
        moto.delete_bucket(BUCKET)
        azurite.delete_bucket(container)


def case_params(bed: Bed, case: Case) -> Dict[str, Any]:
    params = bed.baseline(case.module, case.name)
    params.update(case.params(bed) if callable(case.params) else case.params)
    return {key: value for key, value in params.items() if value is not REMOVE}


def test_at_least_forty_cases_cover_every_module():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)
    assert {case.module for case in CASES} == {"base_backup", "snapshot_backup", "backup_info", "check"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_fails_clearly_and_writes_nothing(bed: Bed, case: Case):
    run = run_module(case.module, case_params(bed, case))

    result = run.result
    assert run.rc != 0 and result.get("failed") is True, result
    message = result["msg"]
    missing = [word for word in case.expected if word.lower() not in message.lower()]
    assert not missing, "the message lacks %s: %r" % (missing, message)
    assert "Traceback" not in message and "exception" not in result, result
    assert "Traceback" not in run.stderr, run.stderr
    assert SAS_SIGNATURE not in run.stdout + run.stderr
    assert result.get("changed") is not True
    if case.module == "check" and "parameter" in result:
        # Refused by the engine rather than by Ansible's checks: the report's keys are there.
        assert (result["ok"], result["storage"], result["postgres"]) == (False, None, None), result
    assert bed.moto.list_keys(BUCKET) == []
    assert bed.moto.multipart_uploads(BUCKET) == []
    assert bed.azurite.list_keys(bed.container) == []
    assert bed.cluster.sessions_left(timeout=5) == []


@pytest.mark.parametrize("module", ["base_backup", "check", "backup_info"])
def test_a_url_query_is_not_echoed_in_the_invocation_either(bed: Bed, module: str):
    # Ansible adds the parameters to the result as `invocation` when asked to
    # (_ansible_inject_invocation, the default before ansible-core 2.21).
    params = dict(bed.baseline(module, "invocation"), _ansible_inject_invocation=True,
                  destination_url="s3://%s/pg?%s" % (BUCKET, SAS_QUERY))
    run = run_module(module, params)

    assert run.result.get("failed") is True and run.result["parameter"] == "destination_url", run.result
    assert run.result["invocation"]["module_args"]["destination_url"] == "s3://%s/pg" % BUCKET
    assert SAS_SIGNATURE not in run.stdout + run.stderr
