# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files the scheduled_backup role writes for a job on the database host, read.

    <config_root>/<job>/config.json       the engine's parameters under "storage", "postgres",
                                          "backup" (and "wal"), no secrets
    <config_root>/<job>/credentials.env   KEY=VALUE lines (values optionally JSON-quoted),
                                          readable by the backup user only

Read by the host's command (cli.py, and the scheduled job of host/job.py) that runs without
Ansible; its log lines go to stderr with every secret redacted (setup_logging).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional

from .errors import PgCloudError, redact

CONFIG_ROOT = "/etc/pgcloud-backup"
DEFAULT_JOB = "pgcloud-backup"

# Credentials file key -> (engine config section, parameter).
CREDENTIAL_KEYS = {
    "AWS_ACCESS_KEY_ID": ("storage", "aws_access_key"),
    "AWS_SECRET_ACCESS_KEY": ("storage", "aws_secret_key"),
    "AWS_SESSION_TOKEN": ("storage", "aws_session_token"),
    "PGCLOUD_SSE_CUSTOMER_KEY": ("storage", "sse_customer_key"),
    "AZURE_STORAGE_CONNECTION_STRING": ("storage", "azure_storage_connection_string"),
    "AZURE_STORAGE_SAS_TOKEN": ("storage", "azure_storage_sas_token"),
    "AZURE_STORAGE_KEY": ("storage", "azure_storage_key"),
    "PGCLOUD_GCP_SERVICE_ACCOUNT_CONTENTS": ("storage", "gcp_service_account_contents"),
    "PGPASSWORD": ("postgres", "password"),
    "PGCLOUD_PRIMARY_CONNINFO": ("postgres", "primary_conninfo"),
}


class JobConfigError(PgCloudError):
    """The job's own files are missing or malformed."""


def config_path(job: Optional[str], config_file: Optional[str]) -> str:
    return config_file or os.path.join(CONFIG_ROOT, job or DEFAULT_JOB, "config.json")


def read_config(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as error:
        raise JobConfigError("cannot read the job config %s: %s" % (path, error)) from error
    if not isinstance(config, dict) or not isinstance(config.get("storage"), dict):
        raise JobConfigError("the job config %s has no 'storage' section" % path)
    return config


def _credential_line(path: str, number: int, line: str) -> Optional[tuple]:
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    key, separator, value = line.partition("=")
    key = key.strip()
    if not separator or key not in CREDENTIAL_KEYS:
        # The line itself may hold a secret: name the line, never show it.
        raise JobConfigError("line %d of %s is not one of %s=..." % (number, path, "/".join(CREDENTIAL_KEYS)))
    value = value.strip()
    if value.startswith('"'):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise JobConfigError("line %d of %s: the quoted value is not valid" % (number, path)) from error
    return key, value


def read_credentials(path: Optional[str]) -> Dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments are skipped; a "..." value is JSON-decoded."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise JobConfigError("cannot read the credentials file %s: %s" % (path, error)) from error
    credentials = {}
    for number, line in enumerate(lines, 1):
        item = _credential_line(path, number, line)
        if item:
            credentials[item[0]] = item[1]
    return credentials


def engine_sections(config: Dict[str, Any], credentials: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """The config's storage, postgres and backup parameters, with the credentials put in."""
    sections = {name: dict(config.get(name) or {}) for name in ("storage", "postgres", "backup")}
    for key, value in credentials.items():
        section, parameter = CREDENTIAL_KEYS[key]
        sections[section][parameter] = value
    return sections


class Redactor:
    """Replaces every secret value in a text: error messages may quote a connection string.

    The engine's patterns (errors.redact) come after: they also hide secrets the job was not
    given, a conninfo password or the password of a URL.
    """

    def __init__(self, secrets: List[str]) -> None:
        self.secrets = [value for value in secrets if value]

    def __call__(self, text: Optional[str]) -> Optional[str]:
        return None if text is None else redact(text, self.secrets)


class _RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        return True


def setup_logging(redactor: Redactor, level: Any = "INFO") -> None:
    """Log lines to stderr, redacted. No timestamp: PostgreSQL's log and the journal stamp every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s pgcloud-backup: %(message)s"))
    handler.addFilter(_RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "azure", "google"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
