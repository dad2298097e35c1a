# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions of the backup engine.

Every message is meant for the operator: it says what went wrong and, where one exists,
the parameter to change.
"""

from __future__ import annotations

from typing import Optional


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
