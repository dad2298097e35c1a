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
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Type, TypeVar
from urllib.parse import urlparse

from .errors import ConfigurationError, redact_url

CLOUD_PROVIDERS = ("aws-s3", "azure-blob-storage", "google-cloud-storage")
COMPRESSIONS = ("gzip", "bzip2", "snappy", "lz4", "zstd")
# The checksums of backup_manifest that pg_verifybackup knows and the engine computes.
MANIFEST_CHECKSUMS = ("SHA256", "CRC32C")
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


def validate_endpoint_url(url: Optional[str]) -> None:
    if url is None:
        return
    refuse_userinfo(url, "endpoint_url")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or " " in url:
        raise ConfigurationError(
            "endpoint_url=%r is not an HTTP URL: use http(s)://HOST[:PORT], for example https://s3.eu-west-1.amazonaws.com"
            % redact_url(url), "endpoint_url",
        )


def refuse_userinfo(url: Optional[str], parameter: str) -> None:
    """A user or password in a URL would be echoed in logs and results: credentials have parameters of their own."""
    if url and "@" in urlparse(url).netloc:
        raise ConfigurationError(
            "%s=%r holds a user name or password (USER:PASSWORD@), which would be shown wherever the URL is: "
            "remove it and give the credentials with aws_access_key/aws_secret_key, azure_storage_key or "
            "gcp_service_account_file" % (parameter, redact_url(url)), parameter,
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
        validate_endpoint_url(self.endpoint_url)
        refuse_userinfo(self.destination_url, "destination_url")
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
    # A backup from a standby: the primary to switch WAL on, and how long to wait for the
    # WAL file that ends the backup to reach the destination.
    primary_conninfo: Optional[str] = None
    wal_archive_timeout: int = 300

    def __post_init__(self) -> None:
        for name in ("keepalive_interval", "wal_archive_timeout"):
            value = getattr(self, name)
            if value is None or int(value) < 0:
                raise ConfigurationError("%s must be 0 (off) or a positive number of seconds" % name, name)
            setattr(self, name, int(value))
        if self.primary_conninfo is not None and not self.primary_conninfo.strip():
            raise ConfigurationError("primary_conninfo must not be empty: give the primary's conninfo, "
                                     "such as 'host=db1 user=postgres', or leave it unset", "primary_conninfo")
        if self.dbname is None:
            self.dbname = "postgres"


@dataclass
class BackupConfig:
    """What kind of base backup to take."""

    compression: Optional[str] = None
    max_archive_size: Any = "100GB"
    backup_name: Optional[str] = None
    # None: CRC32C where google-crc32c runs in C, else SHA256 (manifest.default_algorithm).
    manifest_checksum: Optional[str] = None
    # Refuse a backup from a primary that archives no WAL: it could not be restored. False
    # for users who ship WAL another way.
    require_wal_archiving: bool = True

    def __post_init__(self) -> None:
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise ConfigurationError(
                "compression=%r is not one of %s" % (self.compression, ", ".join(COMPRESSIONS)), "compression"
            )
        if self.manifest_checksum is not None and self.manifest_checksum not in MANIFEST_CHECKSUMS:
            raise ConfigurationError("manifest_checksum=%r is not one of %s" % (
                self.manifest_checksum, ", ".join(MANIFEST_CHECKSUMS)), "manifest_checksum")
        self.max_archive_size = parse_size(self.max_archive_size, "max_archive_size")
        validate_backup_name(self.backup_name)


SNAPSHOT_LOCK_MODES = ("governance", "compliance")
LOCK_DURATION_DAYS = (1, 36500)
LOCK_COOL_OFF_HOURS = (1, 72)
LOCK_EXPIRATION_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# The snapshot provider of each cloud_provider (the names snapshots_info carries).
SNAPSHOT_PROVIDERS = {"aws-s3": "aws", "azure-blob-storage": "azure", "google-cloud-storage": "gcp"}
_AWS_LOCK_OPTIONS = ("aws_snapshot_lock_mode", "aws_snapshot_lock_duration", "aws_snapshot_lock_cool_off_period",
                     "aws_snapshot_lock_expiration_date")


@dataclass
class SnapshotConfig:
    """Which disks of which compute instance to snapshot, and how.

    cloud_provider chooses the compute API (EC2, Azure Compute, Compute Engine), as it does
    for the reference tool; the object store that keeps backup.info is configured apart.
    """

    snapshot_instance: str
    snapshot_disks: List[str]
    cloud_provider: str = "aws-s3"
    aws_region: Optional[str] = None
    aws_await_snapshots_timeout: int = 3600
    aws_snapshot_lock_mode: Optional[str] = None
    aws_snapshot_lock_duration: Optional[int] = None
    aws_snapshot_lock_cool_off_period: Optional[int] = None
    aws_snapshot_lock_expiration_date: Optional[str] = None
    azure_subscription_id: Optional[str] = None
    azure_resource_group: Optional[str] = None
    gcp_project: Optional[str] = None
    gcp_zone: Optional[str] = None

    def __post_init__(self) -> None:
        if self.cloud_provider not in SNAPSHOT_PROVIDERS:
            raise ConfigurationError(
                "cloud_provider=%r is not one of %s" % (self.cloud_provider, ", ".join(SNAPSHOT_PROVIDERS)),
                "cloud_provider",
            )
        self.snapshot_disks = [str(disk) for disk in (self.snapshot_disks or [])]
        missing = [name for name in ("snapshot_instance", "snapshot_disks") if not getattr(self, name)]
        if missing:
            raise ConfigurationError(
                "a snapshot backup needs %s: name the compute instance and at least one of its disks"
                % " and ".join(missing), missing[0],
            )
        duplicates = sorted({disk for disk in self.snapshot_disks if self.snapshot_disks.count(disk) > 1})
        if duplicates:
            raise ConfigurationError("snapshot_disks names %s more than once" % ", ".join(duplicates), "snapshot_disks")
        if int(self.aws_await_snapshots_timeout) < 1:
            raise ConfigurationError("aws_await_snapshots_timeout must be a positive number of seconds",
                                     "aws_await_snapshots_timeout")
        self.aws_await_snapshots_timeout = int(self.aws_await_snapshots_timeout)
        self._check_provider_options()
        self._check_lock()

    @property
    def provider(self) -> str:
        return SNAPSHOT_PROVIDERS[self.cloud_provider]

    def _check_provider_options(self) -> None:
        if self.provider == "gcp":
            for name in ("gcp_project", "gcp_zone"):
                if not getattr(self, name):
                    raise ConfigurationError(
                        "%s is required for snapshots with cloud_provider=google-cloud-storage: set the project "
                        "and the zone of the instance and its disks (gcp_project, gcp_zone)" % name, name,
                    )
        if self.provider == "azure":
            for name in ("azure_subscription_id", "azure_resource_group"):
                if not getattr(self, name):
                    raise ConfigurationError(
                        "%s is required for snapshots with cloud_provider=azure-blob-storage: set the subscription "
                        "and the resource group of the VM and its disks" % name, name,
                    )
        if self.provider != "aws":
            for name in _AWS_LOCK_OPTIONS:
                if getattr(self, name) is not None:
                    raise ConfigurationError(
                        "%s locks EC2 snapshots and needs cloud_provider=aws-s3; remove it" % name, name)

    def _check_lock(self) -> None:
        mode = self.aws_snapshot_lock_mode
        if mode is None:
            for name in _AWS_LOCK_OPTIONS[1:]:
                if getattr(self, name) is not None:
                    raise ConfigurationError(
                        "%s has no effect without aws_snapshot_lock_mode: set aws_snapshot_lock_mode "
                        "(governance or compliance) or remove %s" % (name, name), name,
                    )
            return
        if mode not in SNAPSHOT_LOCK_MODES:
            raise ConfigurationError("aws_snapshot_lock_mode=%r is not one of %s" % (mode, ", ".join(SNAPSHOT_LOCK_MODES)),
                                     "aws_snapshot_lock_mode")
        duration, expiration = self.aws_snapshot_lock_duration, self.aws_snapshot_lock_expiration_date
        if duration is not None and expiration is not None:
            raise ConfigurationError(
                "aws_snapshot_lock_duration and aws_snapshot_lock_expiration_date are exclusive: lock for a number "
                "of days or until a date, not both", "aws_snapshot_lock_duration",
            )
        if duration is None and expiration is None:
            raise ConfigurationError(
                "aws_snapshot_lock_mode needs aws_snapshot_lock_duration (days) or aws_snapshot_lock_expiration_date: "
                "set one of them", "aws_snapshot_lock_mode",
            )
        if duration is not None:
            self.aws_snapshot_lock_duration = _in_range(duration, LOCK_DURATION_DAYS, "aws_snapshot_lock_duration", "days")
        if expiration is not None:
            _check_expiration(expiration)
        cool_off = self.aws_snapshot_lock_cool_off_period
        if cool_off is not None:
            if mode != "compliance":
                raise ConfigurationError(
                    "aws_snapshot_lock_cool_off_period applies to the compliance mode only: set "
                    "aws_snapshot_lock_mode=compliance or remove the cool-off period", "aws_snapshot_lock_cool_off_period",
                )
            self.aws_snapshot_lock_cool_off_period = _in_range(
                cool_off, LOCK_COOL_OFF_HOURS, "aws_snapshot_lock_cool_off_period", "hours")

    def lock_expiration(self) -> Optional[datetime]:
        if self.aws_snapshot_lock_expiration_date is None:
            return None
        return _check_expiration(self.aws_snapshot_lock_expiration_date)


def _in_range(value: Any, bounds: Any, parameter: str, unit: str) -> int:
    low, high = bounds
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or not low <= number <= high:
        raise ConfigurationError("%s must be a whole number of %s from %d to %d, got %r" % (parameter, unit, low, high, value),
                                 parameter)
    return number


def _check_expiration(text: str) -> datetime:
    parameter = "aws_snapshot_lock_expiration_date"
    try:
        moment = datetime.strptime(text, LOCK_EXPIRATION_FORMAT).replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        raise ConfigurationError(
            "%s=%r is not a UTC time in the form YYYY-MM-DDTHH:MM:SS.sssZ, such as 2031-01-31T00:00:00.000Z"
            % (parameter, text), parameter,
        )
    if moment - datetime.now(timezone.utc) < timedelta(days=1):
        raise ConfigurationError(
            "%s=%s is less than a day ahead: EC2 locks a snapshot for at least one day; choose a later date"
            % (parameter, text), parameter,
        )
    return moment


def from_params(config_class: Type[ConfigT], params: Mapping[str, Any]) -> ConfigT:
    """Build a config from a mapping that may hold other keys too (a module's params)."""
    names = {item.name for item in fields(config_class)}  # type: ignore[arg-type]
    return config_class(**{key: value for key, value in params.items() if key in names and value is not None})
