# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the engine is asked to do, validated once, as plain data.

The modules build these from their parameters (the field names are the parameter names);
tests and scripts build them directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

from .errors import ConfigurationError

CLOUD_PROVIDERS = ("aws-s3", "azure-blob-storage", "google-cloud-storage")
COMPRESSIONS = ("gzip", "bzip2", "snappy", "lz4", "zstd")
RESERVED_BACKUP_NAMES = ("latest", "last", "oldest", "first", "last-failed", "latest-full", "last-full", "auto")
BACKUP_ID_PATTERN = re.compile(r"^\d{8}T\d{6}$")
MAX_TAGS = 10
TAG_CHARACTERS = re.compile(r"^[A-Za-z0-9\s_.:/=+\-@]*$")
ENCRYPTIONS = ("AES256", "aws:kms")
ADDRESSING_STYLES = ("auto", "virtual", "path")
AZURE_CREDENTIALS = ("azure-cli", "managed-identity", "default")
# Options that only one provider understands; given to another one, they would be ignored
# silently (by the reference tool too), and a user who asked for encryption would not get it.
PROVIDER_OPTIONS = {
    "aws-s3": ("endpoint_url", "aws_profile", "aws_irsa", "aws_access_key", "aws_secret_key", "aws_session_token",
               "addressing_style", "encryption", "sse_kms_key_id", "sse_customer_key"),
    "azure-blob-storage": ("azure_credential", "azure_storage_connection_string", "azure_storage_sas_token",
                           "azure_storage_key", "encryption_scope"),
    "google-cloud-storage": ("gcp_service_account_file", "gcp_service_account_contents", "kms_key_name"),
}

_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpezy]?)(b|ib)?\s*$", re.IGNORECASE)
_SIZE_EXPONENTS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6, "z": 7, "y": 8}

ConfigT = TypeVar("ConfigT")


def parse_size(value: Any, parameter: str) -> int:
    """Read a size the way the reference tool does: `100GB` is 100 GiB, `100GiB` is 100 * 10**9.

    The reference tool inverts the SI convention (B is base 1024, iB base 1000); users who
    copy values from its documentation get the same sizes here.
    """
    if isinstance(value, bool):
        raise ConfigurationError("%s must be a size such as 5MB, not a boolean" % parameter, parameter)
    if isinstance(value, (int, float)):
        number, unit, suffix = float(value), "", ""
    else:
        match = _SIZE_PATTERN.match(str(value))
        if not match or (match.group(2) and not match.group(3)):
            raise ConfigurationError(
                "%s=%r is not a size: use a number of bytes or a number with a unit such as 512KB, 5MB, 1.5GB"
                % (parameter, value),
                parameter,
            )
        number, unit, suffix = float(match.group(1)), match.group(2).lower(), (match.group(3) or "").lower()
    base = 1000 if suffix == "ib" else 1024
    size = int(number * base ** _SIZE_EXPONENTS[unit])
    if size < 1:
        raise ConfigurationError("%s must be at least 1 byte, got %r" % (parameter, value), parameter)
    return size


def validate_backup_name(name: Optional[str]) -> None:
    if name is None:
        return
    if not name.strip():
        raise ConfigurationError("backup_name must not be empty; leave it unset for an unnamed backup", "backup_name")
    if BACKUP_ID_PATTERN.match(name):
        raise ConfigurationError(
            "backup_name=%r looks like a backup id (YYYYMMDDTHHMMSS), which the restore tools would "
            "read as an id: choose another name" % name,
            "backup_name",
        )
    if name in RESERVED_BACKUP_NAMES:
        raise ConfigurationError(
            "backup_name=%r is reserved (%s): choose another name" % (name, ", ".join(RESERVED_BACKUP_NAMES)),
            "backup_name",
        )


def validate_tags(tags: Mapping[str, Any]) -> Dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise ConfigurationError("tags has %d entries; at most %d are allowed" % (len(tags), MAX_TAGS), "tags")
    result = {}
    for key, value in tags.items():
        key = str(key)
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise ConfigurationError(
                "tags key %r must be 1 to 128 characters and must not start with 'aws:'" % key, "tags"
            )
        text = "" if value is None else str(value)
        if not TAG_CHARACTERS.match(key) or not TAG_CHARACTERS.match(text):
            raise ConfigurationError(
                "tags %r: keys and values may only hold letters, digits, spaces and _ . : / = + - @" % key, "tags"
            )
        if len(text) > 256:
            raise ConfigurationError("tags value of %r is longer than 256 characters" % key, "tags")
        result[key] = text
    return result


@dataclass
class StorageConfig:
    """Where backups go and how to talk to the store."""

    destination_url: str
    server_name: str
    cloud_provider: str = "aws-s3"
    endpoint_url: Optional[str] = None
    aws_profile: Optional[str] = None
    aws_irsa: bool = False
    aws_access_key: Optional[str] = None
    aws_secret_key: Optional[str] = None
    aws_session_token: Optional[str] = None
    read_timeout: Optional[int] = None
    addressing_style: Optional[str] = None
    encryption: Optional[str] = None
    sse_kms_key_id: Optional[str] = None
    sse_customer_key: Optional[str] = None
    azure_credential: Optional[str] = None
    azure_storage_connection_string: Optional[str] = None
    azure_storage_sas_token: Optional[str] = None
    azure_storage_key: Optional[str] = None
    encryption_scope: Optional[str] = None
    gcp_service_account_file: Optional[str] = None
    gcp_service_account_contents: Optional[str] = None
    kms_key_name: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    jobs: int = 2
    min_chunk_size: Optional[Any] = None
    max_bandwidth: Optional[Any] = None

    def __post_init__(self) -> None:
        if self.cloud_provider not in CLOUD_PROVIDERS:
            raise ConfigurationError(
                "cloud_provider=%r is not one of %s" % (self.cloud_provider, ", ".join(CLOUD_PROVIDERS)),
                "cloud_provider",
            )
        if not self.server_name or "/" in self.server_name:
            raise ConfigurationError(
                "server_name=%r must be a non-empty name without '/'" % self.server_name, "server_name"
            )
        if self.jobs is None or int(self.jobs) < 1:
            raise ConfigurationError("jobs must be a positive integer, got %r" % self.jobs, "jobs")
        self.jobs = int(self.jobs)
        if self.read_timeout is not None and int(self.read_timeout) < 1:
            raise ConfigurationError("read_timeout must be a positive number of seconds", "read_timeout")
        self.tags = validate_tags(self.tags or {})
        self.min_chunk_size = None if self.min_chunk_size in (None, "") else parse_size(self.min_chunk_size, "min_chunk_size")
        self.max_bandwidth = None if self.max_bandwidth in (None, "", 0, "0") else parse_size(self.max_bandwidth, "max_bandwidth")
        self._check_provider_options()
        self._check_encryption()

    def _check_provider_options(self) -> None:
        for provider, names in PROVIDER_OPTIONS.items():
            if provider == self.cloud_provider:
                continue
            for name in names:
                value = getattr(self, name)
                if value not in (None, False, "") and not (name == "addressing_style" and value == "auto"):
                    raise ConfigurationError(
                        "%s is an option of cloud_provider %s, but cloud_provider is %s: remove it or change "
                        "cloud_provider" % (name, provider, self.cloud_provider),
                        name,
                    )
        if self.azure_credential not in (None,) + AZURE_CREDENTIALS:
            raise ConfigurationError(
                "azure_credential=%r is not one of %s" % (self.azure_credential, ", ".join(AZURE_CREDENTIALS)),
                "azure_credential",
            )
        azure_secrets = [name for name in ("azure_storage_connection_string", "azure_storage_sas_token",
                                           "azure_storage_key") if getattr(self, name)]
        if len(azure_secrets) > 1 or (azure_secrets and self.azure_credential):
            raise ConfigurationError(
                "give one Azure credential: %s are exclusive" % ", ".join(azure_secrets + (
                    ["azure_credential"] if self.azure_credential else [])),
                azure_secrets[0],
            )
        if self.gcp_service_account_file and self.gcp_service_account_contents:
            raise ConfigurationError(
                "gcp_service_account_file and gcp_service_account_contents are exclusive: give one",
                "gcp_service_account_file",
            )

    def _check_encryption(self) -> None:
        if self.encryption not in (None,) + ENCRYPTIONS:
            raise ConfigurationError(
                "encryption=%r is not one of %s" % (self.encryption, ", ".join(ENCRYPTIONS)), "encryption"
            )
        if self.addressing_style not in (None,) + ADDRESSING_STYLES:
            raise ConfigurationError(
                "addressing_style=%r is not one of %s" % (self.addressing_style, ", ".join(ADDRESSING_STYLES)),
                "addressing_style",
            )
        if self.sse_kms_key_id and self.encryption != "aws:kms":
            raise ConfigurationError(
                "sse_kms_key_id is only used with encryption=aws:kms; set encryption: aws:kms or remove sse_kms_key_id",
                "sse_kms_key_id",
            )
        if self.sse_customer_key and (self.encryption or self.sse_kms_key_id):
            raise ConfigurationError(
                "sse_customer_key (SSE-C) cannot be combined with encryption or sse_kms_key_id: choose one",
                "sse_customer_key",
            )
        if self.aws_irsa and self.aws_profile:
            raise ConfigurationError(
                "aws_irsa and aws_profile are exclusive: IRSA takes credentials from the pod's web identity",
                "aws_irsa",
            )


@dataclass
class PostgresConfig:
    """How to reach the PostgreSQL server to back up."""

    host: Optional[str] = None
    port: Optional[int] = None
    user: Optional[str] = None
    dbname: str = "postgres"
    password: Optional[str] = None
    immediate_checkpoint: bool = False
    keepalive_interval: int = 60

    def __post_init__(self) -> None:
        if self.keepalive_interval is None or int(self.keepalive_interval) < 0:
            raise ConfigurationError(
                "keepalive_interval must be 0 (off) or a positive number of seconds", "keepalive_interval"
            )
        self.keepalive_interval = int(self.keepalive_interval)
        if self.dbname is None:
            self.dbname = "postgres"


@dataclass
class BackupConfig:
    """What kind of base backup to take."""

    compression: Optional[str] = None
    max_archive_size: Any = "100GB"
    backup_name: Optional[str] = None

    def __post_init__(self) -> None:
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise ConfigurationError(
                "compression=%r is not one of %s" % (self.compression, ", ".join(COMPRESSIONS)), "compression"
            )
        self.max_archive_size = parse_size(self.max_archive_size, "max_archive_size")
        validate_backup_name(self.backup_name)


def from_params(config_class: Type[ConfigT], params: Mapping[str, Any]) -> ConfigT:
    """Build a config from a mapping that may hold other keys too (a module's params)."""
    names = {item.name for item in fields(config_class)}  # type: ignore[arg-type]
    return config_class(**{key: value for key, value in params.items() if key in names and value is not None})
