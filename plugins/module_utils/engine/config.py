# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the engine is asked to do, validated once, as plain data.

The modules build these from their parameters (the field names are the parameter names);
tests and scripts build them directly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar
from urllib.parse import urlparse

from .errors import ConfigurationError, redact_url
from .inputs import check_host, check_key_path, check_name, check_printable, split_url

CLOUD_PROVIDERS = ("aws-s3", "azure-blob-storage", "google-cloud-storage")
COMPRESSIONS = ("gzip", "bzip2", "snappy", "lz4", "zstd")
# The checksums of backup_manifest that pg_verifybackup knows and the engine computes.
MANIFEST_CHECKSUMS = ("SHA256", "CRC32C")
RESERVED_BACKUP_NAMES = ("latest", "last", "oldest", "first", "last-failed", "latest-full", "last-full", "auto")
BACKUP_ID_PATTERN = re.compile(r"^\d{8}T\d{6}$")
MAX_TAGS = 10
# The reference tool's tag characters, with a plain space where it takes any whitespace: a
# line break or a tab is refused by S3 and breaks a Cloud Storage header.
TAG_CHARACTERS = re.compile(r"^[A-Za-z0-9 _.:/=+\-@]*$")
_TAG_TEXT = "letters, digits, spaces and _ . : / = + - @"
_AZURE_TAG = re.compile(r"^[A-Za-z0-9 _.:/=+\-]*$")
# Per store: what keys may hold (for the message), their pattern, the same for values. Azure
# blob index tags refuse '@'; a Cloud Storage tag is custom metadata, whose key becomes an
# HTTP header name (a token: no space, ':', '/', '=' or '@'), compared without case.
TAG_RULES = {
    "aws-s3": (_TAG_TEXT, TAG_CHARACTERS, _TAG_TEXT, TAG_CHARACTERS),
    "azure-blob-storage": ("letters, digits, spaces and _ . : / = + - (no @)", _AZURE_TAG,
                           "letters, digits, spaces and _ . : / = + - (no @)", _AZURE_TAG),
    "google-cloud-storage": ("letters, digits and _ . + - (no space, :, /, = or @)",
                             re.compile(r"^[A-Za-z0-9_.+\-]*$"), _TAG_TEXT, TAG_CHARACTERS),
}
# Text options that go into request headers or file names as they are: a line break there
# would split a header.
HEADER_TEXT_OPTIONS = ("aws_profile", "sse_kms_key_id", "encryption_scope", "kms_key_name", "gcp_service_account_file")
# Bounds of the numbers (documented in the doc fragments).
MAX_JOBS = 64
# The largest part of a multipart upload: S3 and Cloud Storage's XML API 5 GiB, an Azure block 4000 MiB.
MAX_PART_SIZES = {"aws-s3": 5 << 30, "azure-blob-storage": 4000 << 20, "google-cloud-storage": 5 << 30}
# Parts are 2 * max_archive_size / 10000 (the part count limit of S3 and Cloud Storage): past this
# size, one part would exceed 5 GiB.
MAX_ARCHIVE_SIZE = 25000 << 30
# Below 128 KiB/s a backup of a few GiB takes days; max_bandwidth 1 would send 5 MiB in 60 days.
MIN_BANDWIDTH = 128 << 10
READ_TIMEOUT_RANGE = (1, 3600)
KEEPALIVE_RANGE = (0, 3600)
WAL_ARCHIVE_TIMEOUT_RANGE = (0, 86400)
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
    scaled = number * base ** _SIZE_EXPONENTS[unit]
    if not math.isfinite(scaled) or scaled > 1 << 90:
        raise ConfigurationError("%s=%r is too large to be a size" % (parameter, value), parameter)
    size = int(scaled)
    if size < 1:
        raise ConfigurationError("%s must be at least 1 byte, got %r" % (parameter, value), parameter)
    return size


def validate_backup_name(name: Optional[str]) -> None:
    """A name that backup.info keeps and the restore tools find as it was given.

    backup.info is read line by line with the spaces at both ends of a value stripped, and a
    value `None` read as no name; the restore tools read a name that looks like a backup id
    (or a Python digit string in that shape) as an id, and the shortcuts below as shortcuts.
    """
    if name is None:
        return
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError("backup_name must not be empty; leave it unset for an unnamed backup", "backup_name")
    check_printable(name, "backup_name", "backup_name=%r" % name)
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
    if name == "None":
        raise ConfigurationError(
            "backup_name='None' is read back from backup.info as no name at all: choose another name", "backup_name")


HTTP_URL_EXAMPLE = "http(s)://HOST[:PORT], for example https://s3.eu-west-1.amazonaws.com"


def refuse_userinfo(url: Optional[str], parameter: str) -> None:
    """A user or password in a URL would be echoed in logs and results: credentials have parameters of their own."""
    try:
        netloc = urlparse(url).netloc if url else ""
    except ValueError:  # not a URL at all: the URL's own check says so
        return
    if "@" in netloc:
        raise ConfigurationError(
            "%s=%r holds a user name or password (USER:PASSWORD@), which would be shown wherever the URL is: "
            "remove it and give the credentials with aws_access_key/aws_secret_key, azure_storage_key or "
            "gcp_service_account_file" % (parameter, redact_url(url)), parameter,
        )


def validate_http_url(url: Optional[str], parameter: str, example: str = HTTP_URL_EXAMPLE) -> None:
    """An http(s) URL of a service: a valid host and port, no query, fragment or user information."""
    if url is None:
        return
    parts = split_url(url, parameter, example)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError("%s=%r is not an HTTP URL: use %s" % (parameter, url, example), parameter)
    check_host(parts, parameter, example)
    check_key_path(parts.path, parameter, "%s=%r" % (parameter, url))


def validate_endpoint_url(url: Optional[str]) -> None:
    validate_http_url(url, "endpoint_url")


def _tag_text(text: str, description: str, pattern: Any, what: str, cloud_provider: str) -> str:
    if not pattern.match(text):
        raise ConfigurationError("tags %s may only hold %s with cloud_provider %s" % (what, description, cloud_provider),
                                 "tags")
    if text != text.strip():
        raise ConfigurationError("tags %s starts or ends with a space, which the stores and the reference tool "
                                 "strip: remove it" % what, "tags")
    return text


def validate_tags(tags: Mapping[str, Any], cloud_provider: str = "aws-s3") -> Dict[str, str]:
    """Tags the store of cloud_provider takes as they are (checked before any backup starts)."""
    if not isinstance(tags, Mapping):
        raise ConfigurationError("tags must be a dictionary of names and values (for example team: dba)", "tags")
    if len(tags) > MAX_TAGS:
        raise ConfigurationError("tags has %d entries; at most %d are allowed" % (len(tags), MAX_TAGS), "tags")
    key_text, key_pattern, value_text, value_pattern = TAG_RULES.get(cloud_provider, TAG_RULES["aws-s3"])
    result: Dict[str, str] = {}
    # Cloud Storage compares metadata names without case.
    seen = set()
    for raw_key, value in tags.items():
        key = str(raw_key)
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise ConfigurationError(
                "tags key %r must be 1 to 128 characters and must not start with 'aws:'" % key, "tags"
            )
        _tag_text(key, key_text, key_pattern, "key %r" % key, cloud_provider)
        text = _tag_text("" if value is None else str(value), value_text, value_pattern, "value of %r" % key,
                         cloud_provider)
        if len(text) > 256:
            raise ConfigurationError("tags value of %r is longer than 256 characters" % key, "tags")
        same = key.lower() if cloud_provider == "google-cloud-storage" else key
        if same in seen:
            raise ConfigurationError("tags has the key %r twice%s: keep one" % (
                key, " (Cloud Storage ignores the case of metadata names)" if same != key else ""), "tags")
        seen.add(same)
        result[key] = text
    return result


_TRUE_WORDS = ("true", "yes", "on", "1", "y", "t")
_FALSE_WORDS = ("false", "no", "off", "0", "n", "f", "")


def boolean(value: Any, parameter: str) -> bool:
    """A boolean, or the text of one as a command line (-e name=false) or a JSON file gives it."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in _TRUE_WORDS:
        return True
    if text in _FALSE_WORDS:
        return False
    raise ConfigurationError("%s must be true or false, got %r" % (parameter, value), parameter)


def bounded_number(value: Any, parameter: str, bounds: Tuple[int, int], description: str) -> int:
    """A whole number within bounds, from a number or its text; description says what is allowed."""
    low, high = bounds
    try:
        number = None if isinstance(value, bool) else int(str(value).strip())
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise ConfigurationError("%s must be %s, got %r" % (parameter, description, value), parameter)
    return number


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
        if not isinstance(self.server_name, str) or not self.server_name or "/" in self.server_name:
            raise ConfigurationError(
                "server_name=%r must be a non-empty name without '/'" % self.server_name, "server_name"
            )
        check_name(self.server_name, "server_name")
        for name in HEADER_TEXT_OPTIONS:
            if isinstance(getattr(self, name), str):
                check_printable(getattr(self, name), name)
        self.aws_irsa = boolean(self.aws_irsa, "aws_irsa")
        self.jobs = bounded_number(self.jobs, "jobs", (1, MAX_JOBS),
                                   "a positive integer (parallel uploads) of at most %d" % MAX_JOBS)
        if self.read_timeout is not None:
            self.read_timeout = bounded_number(self.read_timeout, "read_timeout", READ_TIMEOUT_RANGE,
                                               "a positive number of seconds, at most %d" % READ_TIMEOUT_RANGE[1])
        self.tags = validate_tags({} if self.tags is None else self.tags, self.cloud_provider)
        validate_endpoint_url(self.endpoint_url)
        refuse_userinfo(self.destination_url, "destination_url")
        self._check_sizes()
        self._check_provider_options()
        self._check_encryption()
        self._check_destination()

    def _check_sizes(self) -> None:
        self.min_chunk_size = None if self.min_chunk_size in (None, "") else parse_size(self.min_chunk_size, "min_chunk_size")
        self.max_bandwidth = None if self.max_bandwidth in (None, "", 0, "0") else parse_size(self.max_bandwidth, "max_bandwidth")
        largest = MAX_PART_SIZES[self.cloud_provider]
        if self.min_chunk_size is not None and self.min_chunk_size > largest:
            raise ConfigurationError(
                "min_chunk_size=%r is larger than the largest part %s takes (%d MiB): give at most %dMB"
                % (self.min_chunk_size, self.cloud_provider, largest >> 20, largest >> 20), "min_chunk_size")
        if self.max_bandwidth is not None and self.max_bandwidth < MIN_BANDWIDTH:
            raise ConfigurationError(
                "max_bandwidth=%d bytes per second would take days for a few GiB: give at least 128KB, or 0 "
                "for no limit" % self.max_bandwidth, "max_bandwidth")

    def _check_destination(self) -> None:
        """What no destination_url may hold, whatever the store; storage.factory.parse_destination
        applies the provider's own rules before a store is opened."""
        parts = split_url(self.destination_url, "destination_url", "s3://BUCKET/PATH, gs://BUCKET/PATH or "
                          "https://ACCOUNT.blob.core.windows.net/CONTAINER/PATH")
        check_key_path(parts.path, "destination_url", "destination_url=%r" % self.destination_url)

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
        self.immediate_checkpoint = boolean(self.immediate_checkpoint, "immediate_checkpoint")
        for name, bounds in (("keepalive_interval", KEEPALIVE_RANGE), ("wal_archive_timeout", WAL_ARCHIVE_TIMEOUT_RANGE)):
            setattr(self, name, bounded_number(getattr(self, name), name, bounds,
                                               "0 (off) or a positive number of seconds, at most %d" % bounds[1]))
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
        if self.max_archive_size > MAX_ARCHIVE_SIZE:
            raise ConfigurationError(
                "max_archive_size is over 25000GB, where one upload part would pass the 5 GiB limit of S3 and "
                "Cloud Storage (archives are capped at 1 TiB anyway): give at most 25000GB", "max_archive_size")
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
