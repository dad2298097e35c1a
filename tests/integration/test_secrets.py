# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""No secret in any output: every module at -vvvv with marker credentials, on success and failure.

Each scenario runs playbooks/secrets.yml (check, base_backup, backup_info, snapshot_backup)
with every credential parameter of one provider set to a value that carries a marker, then
looks for each marker, and for its base64 and JSON-escaped forms, in what ansible-playbook
printed, in every task's result, and in what the modules wrote to the host's syslog (where
AnsibleModule logs every parameter that is not no_log). The scenarios prove themselves: the
S3 one must take a backup (its credentials were used, not ignored), the others must be
refused by the store, and the syslog must hold each module's invocation.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, List, Tuple

from conftest import Cloud
from fault_proxy import FaultProxy, FaultRule
from testbed import (MotoServer, PlaybookResult, PostgresCluster, StorageTarget, SyslogCapture, backup_list,
                     backup_module_args, run_module)

MARKER = "pgcloudSECRET"
SSE_C_KEY = (MARKER + "-sse-customer-key-").ljust(32, "x").encode()
PRIVATE_KEY = ("-----BEGIN PRIVATE KEY-----\n%s-private-key-body\n-----END PRIVATE KEY-----\n" % MARKER)


def secret_forms(value: str) -> List[str]:
    """The ways a secret could show up: as given, base64-encoded, JSON-escaped, or a long piece of it."""
    forms = {value, base64.b64encode(value.encode()).decode(), json.dumps(value)[1:-1]}
    return sorted(forms | {form[:16] for form in forms if len(form) > 24})


def leaked(run: PlaybookResult, syslog: SyslogCapture, secrets: List[str]) -> List[str]:
    everything = run.stdout + run.stderr + json.dumps([task.result for task in run.tasks]) + syslog.text
    return [form for secret in secrets for form in secret_forms(secret) if form in everything]


def run_logged(playbook, variables: Dict[str, Any], **options: Any) -> Tuple[PlaybookResult, SyslogCapture]:
    """playbooks/secrets.yml at -vvvv, with the host's syslog captured; every module must have logged."""
    with SyslogCapture() as syslog:
        run = playbook("secrets", variables, verbosity=4, **options)
    for module in ("check", "base_backup", "backup_info", "snapshot_backup"):
        assert "%s: Invoked with" % module in syslog.text, "no syslog line of %s: %s\n%s" % (module, syslog.text[:2000], run.output)
    return run, syslog


def aws_secrets() -> Dict[str, Any]:
    return {"aws_access_key": "AKIA" + MARKER.upper() + "1",
            "aws_secret_key": MARKER + "/aws-secret-access-key+",
            "aws_session_token": MARKER + "-aws-session-token",
            "sse_customer_key": base64.b64encode(SSE_C_KEY).decode(),
            "pg_password": MARKER + "-postgres-password"}


def plain_values(secrets: Dict[str, Any]) -> List[str]:
    values = [value for value in secrets.values() if isinstance(value, str)]
    return values + [SSE_C_KEY.decode(), PRIVATE_KEY.strip().splitlines()[1]]


def test_s3_credentials_never_shown(playbook, storage: StorageTarget, moto):
    secrets = aws_secrets()
    run, syslog = run_logged(playbook, dict(storage.module_params(), **secrets),
                             env={"AWS_ENDPOINT_URL_EC2": moto.endpoint_url})

    backup = run.task("Take a base backup")
    assert backup.get("status") == "DONE", run.output
    assert run.task("List the backups")["backups"][0]["backup_id"] == backup["backup_id"]
    assert run.task("Check the store and the server")["ok"] is True
    assert run.task("Take a snapshot backup")["failed"] is True  # no such instance in moto
    assert "<ansible.legacy.command" not in run.stdout and "ESTABLISH LOCAL CONNECTION" in run.stdout, \
        "not a -vvvv run"
    assert leaked(run, syslog, plain_values(secrets)) == []


def azure_secrets(cloud: Cloud) -> List[Dict[str, Any]]:
    key = base64.b64encode((MARKER + "-azure-account-key").encode()).decode()
    account = cloud.target.url.split("/")[3]
    endpoint = "/".join(cloud.target.url.split("/")[:4])
    return [
        {"azure_storage_key": key},
        {"azure_storage_connection_string": "DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;"
                                            "BlobEndpoint=%s;" % (account, key, endpoint)},
    ]


def gcs_secrets() -> List[Dict[str, Any]]:
    contents = {"type": "service_account", "project_id": "acme", "private_key_id": MARKER + "keyid",
                "private_key": PRIVATE_KEY, "client_email": "backup@acme.iam.gserviceaccount.com",
                "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}
    return [{"gcp_service_account_contents": json.dumps(contents)}]


def test_cloud_credentials_never_shown_when_refused(playbook, cloud: Cloud):
    scenarios = azure_secrets(cloud) if cloud.target.cloud_provider == "azure-blob-storage" else gcs_secrets()
    for secrets in scenarios:
        secrets = dict(secrets, pg_password=MARKER + "-postgres-password")
        # Only the marker credential: the emulator's own would make the modules refuse the pair.
        target = {key: value for key, value in cloud.target.module_params().items()
                  if key != "azure_storage_connection_string"}
        run, syslog = run_logged(playbook, dict(target, **secrets))

        backup = run.task("Take a base backup")
        assert backup["failed"] is True, run.output
        assert run.task("Check the store and the server")["failed"] is True
        values = plain_values(secrets) + [MARKER + "keyid", MARKER + "-azure-account-key"]
        assert leaked(run, syslog, values) == [], secrets.keys()
        assert cloud.server.list_keys(cloud.target.bucket, cloud.target.server_prefix + "base/") == []


UPLOAD_PART = r"[?&]partNumber=\d+.*uploadId=|[?&]uploadId=.*partNumber=\d+"


class EchoingStore(FaultProxy):
    """A store (or a proxy before it) whose error for an upload part quotes secrets: the ones the
    module was given, and a conninfo password and a URL password it was not given."""

    def __init__(self, upstream_port: int, message: str) -> None:
        super().__init__(upstream_port)
        self.message = message

    def _inject(self, client, rule: FaultRule) -> None:  # type: ignore[override]
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>%s</Message>'
                '<RequestId>pgcloud-echo</RequestId></Error>' % self.message).encode()
        head = ("HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % len(body))
        client.sendall(head.encode() + body)


def test_secrets_quoted_by_an_error_stay_out_of_backup_info(moto: MotoServer, storage: StorageTarget,
                                                            source_cluster: PostgresCluster):
    """FAILED is recorded with the error's text in backup.info, in the bucket, where whoever lists
    backups reads it: no secret there, nor in the module's result or the host's log."""
    secrets = aws_secrets()
    unknown = [MARKER + "-conninfo-password", MARKER + "-url-password"]
    message = ("denied for %s/%s signed with %s; tried 'host=primary password=%s' and http://backup:%s@proxy:3128/"
               % (secrets["aws_access_key"], secrets["aws_session_token"], secrets["aws_secret_key"], unknown[0],
                  unknown[1]))
    params = dict(backup_module_args(source_cluster, storage, jobs=1, min_chunk_size="5MB",
                                     max_archive_size="40MB"),
                  aws_access_key=secrets["aws_access_key"], aws_secret_key=secrets["aws_secret_key"],
                  aws_session_token=secrets["aws_session_token"], password=secrets["pg_password"])
    with EchoingStore(moto.port, message) as store, SyslogCapture() as syslog:
        refused = store.add(FaultRule("PUT", UPLOAD_PART, "status", status=403, times=None))
        run = run_module("base_backup", dict(params, endpoint_url=store.endpoint_url))
    assert refused.injected > 0 and run.rc != 0, run.stdout
    (listed,) = backup_list(storage)
    assert listed["status"] == "FAILED"
    info = moto.get_object(storage.bucket, storage.backup_prefix(listed["backup_id"]) + "backup.info").decode()
    assert "AccessDenied" in info and "password=********" in info, info
    values = [secrets["aws_access_key"], secrets["aws_secret_key"], secrets["aws_session_token"]] + unknown
    everything = {"backup.info": info, "result": run.stdout + run.stderr, "syslog": syslog.text}
    assert {where: [form for value in values for form in secret_forms(value) if form in text]
            for where, text in everything.items()} == {"backup.info": [], "result": [], "syslog": []}
