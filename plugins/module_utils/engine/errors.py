# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions of the backup engine.

Every message is meant for the operator: it says what went wrong and, where one exists,
the parameter to change.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, List, Optional
from urllib.parse import urlsplit, urlunsplit

REDACTED = "********"
# Parameters of the engine's configs whose values are secrets (StorageConfig, PostgresConfig).
SECRET_PARAMETERS = ("aws_access_key", "aws_secret_key", "aws_session_token", "sse_customer_key",
                     "azure_storage_connection_string", "azure_storage_sas_token", "azure_storage_key",
                     "gcp_service_account_contents", "password", "primary_conninfo")
# Fields of a Google service account key that are secrets on their own.
_KEY_FILE_SECRETS = ("private_key", "private_key_id")
# Secrets inside texts whose values the engine was not given: a conninfo password, the user
# and password of a URL, an Azure account key or SAS signature inside a connection string.
_SECRET_PATTERNS = (
    re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", re.IGNORECASE),
    re.compile(r"(\b[a-z][a-z0-9+.-]*://)([^/:@\s]*:)?[^/@\s]+@", re.IGNORECASE),
    re.compile(r"(\b(?:AccountKey|SharedAccessSignature|sig)=)[^;&\s'\"]+", re.IGNORECASE),
)


class PgCloudError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigurationError(PgCloudError):
    """A parameter value, or a combination of them, that cannot work."""

    def __init__(self, message: str, parameter: Optional[str] = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class MissingDependencyError(PgCloudError):
    """A Python library needed for the requested feature is not installed on the host."""

    def __init__(self, library: str, purpose: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(
            "the Python library %s is required for %s; install it on the managed host "
            "(for example: pip install %s)" % (library, purpose, library)
        )
        self.library = library
        self.purpose = purpose
        self.cause = cause


class StorageError(PgCloudError):
    """The object store refused or failed a request."""


class StorageUnreachableError(StorageError):
    """No answer from the object store: DNS, connection refused, TLS or timeout."""


class BucketNotFoundError(StorageError):
    """The store answered, but the bucket or container does not exist."""


class StorageAccessDeniedError(StorageError):
    """The store answered, but the credentials are missing or not allowed."""


class SnapshotError(PgCloudError):
    """The compute API refused or failed a request for an instance, a disk or a snapshot."""


class SnapshotPreconditionError(SnapshotError):
    """The instance, its disks or their mounts do not allow a snapshot backup of this server."""


class BackupNotFoundError(PgCloudError):
    """No backup with the given id or name exists for the server at the destination."""


class PostgresError(PgCloudError):
    """The PostgreSQL server refused a connection or a backup step."""


class UnreadableFileError(PgCloudError):
    """A file to back up that the OS user running the backup may not read."""


class BackupError(PgCloudError):
    """A backup that started and failed; FAILED has been recorded where possible."""

    def __init__(self, message: str, backup_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.backup_id = backup_id


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (SDK messages run to many lines), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def redact(text: str, secrets: Iterable[Optional[str]] = ()) -> str:
    """The text without secrets: the values given, and those the patterns above recognise.

    Used on every error text the engine writes where it stays (backup.info's error), and by
    the callers on what they echo, since a library's message may quote a connection string.
    """
    for value in sorted({value for value in secrets if value}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _SECRET_PATTERNS[0].sub(lambda match: match.group(1) + REDACTED, text)
    # The user name stays (it helps), the password goes; a user part alone may be a token.
    text = _SECRET_PATTERNS[1].sub(lambda match: match.group(1) + (match.group(2) or "") + REDACTED + "@", text)
    return _SECRET_PATTERNS[2].sub(lambda match: match.group(1) + REDACTED, text)


def secret_values(*configs: Any) -> List[str]:
    """The secret values of engine configs, with the forms an error could quote them in."""
    values: List[str] = []
    for config in configs:
        for name in SECRET_PARAMETERS:
            value = getattr(config, name, None)
            if isinstance(value, str) and value:
                values.append(value)
                if name == "gcp_service_account_contents":
                    values += _key_file_secrets(value)
    return values + [json.dumps(value)[1:-1] for value in values]


def _key_file_secrets(contents: str) -> List[str]:
    try:
        key = json.loads(contents)
    except ValueError:
        return []
    if not isinstance(key, dict):
        return []
    return [key[field] for field in _KEY_FILE_SECRETS if isinstance(key.get(field), str) and key[field]]


def redact_url(url: Optional[str]) -> Optional[str]:
    """A URL fit to echo: its user and password, and its query (a SAS token, say), hidden."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
