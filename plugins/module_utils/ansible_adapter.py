# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything the modules share that knows about Ansible.

The engine (the other files of module_utils) never imports ansible; this file turns module
parameters into the engine's configs, the engine's log into the module's `log` result and the
host's journal, and the engine's exceptions into `fail_json` results.

A module builds its argument spec from the pieces below (one function per documentation
fragment of the same name), wraps it in `PgCloudModule`, and calls the engine inside
`module.engine_errors()`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
from typing import Any, Dict, Iterator, List, Optional

from ansible.module_utils.basic import AnsibleModule, missing_required_lib, remove_values

from .engine.config import (
    ADDRESSING_STYLES,
    AZURE_CREDENTIALS,
    CLOUD_PROVIDERS,
    ENCRYPTIONS,
    BackupConfig,
    SNAPSHOT_LOCK_MODES,
    PostgresConfig,
    SnapshotConfig,
    StorageConfig,
    from_params,
)
from .engine.errors import BackupError, ConfigurationError, MissingDependencyError, PgCloudError
from .engine.errors import redact as redact_secrets
from .engine.inputs import shown_url
from .engine.version import COLLECTION_VERSION

COLLECTION_NAME = "pgcloud.backup"
ENGINE_LOGGER = "pgcloud.backup"
# Deprecated aliases go away in the next major release.
DEPRECATED_ALIAS_REMOVAL_VERSION = "2.0.0"

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
REDACTED = "********"
# Parameters whose query string or user information may hold a secret (a SAS signature).
URL_PARAMETERS = ("destination_url", "endpoint_url")

# Secrets that no_log cannot know about: a password inside a conninfo string or a URI given
# as dbname, which libpq accepts and which may reappear in an error message.
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(\bpostgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


# --- argument specs ------------------------------------------------------------------------
# Each function returns a new dict, so a module may change its copy freely.


def deprecated_alias(name: str) -> Dict[str, str]:
    """The deprecated_aliases entry of an old spelling, removed in the next major release."""
    return {"name": name, "version": DEPRECATED_ALIAS_REMOVAL_VERSION, "collection_name": COLLECTION_NAME}


def storage_argument_spec() -> Dict[str, Dict[str, Any]]:
    """The destination and the object store connection: every module has these."""
    return {
        "destination_url": {"type": "str", "required": True},
        "server_name": {"type": "str", "required": True},
        "cloud_provider": {"type": "str", "default": "aws-s3", "choices": list(CLOUD_PROVIDERS)},
        "endpoint_url": {"type": "str"},
        "aws_profile": {"type": "str", "aliases": ["profile"], "deprecated_aliases": [deprecated_alias("profile")]},
        "aws_irsa": {"type": "bool", "default": False},
        "aws_access_key": {"type": "str", "aliases": ["access_key"], "no_log": True},
        "aws_secret_key": {"type": "str", "aliases": ["secret_key"], "no_log": True},
        "aws_session_token": {"type": "str", "aliases": ["session_token"], "no_log": True},
        "read_timeout": {"type": "int", "default": 60},
        "addressing_style": {"type": "str", "default": "auto", "choices": list(ADDRESSING_STYLES)},
        "azure_credential": {
            "type": "str",
            "choices": list(AZURE_CREDENTIALS),
            "aliases": ["credential"],
            "deprecated_aliases": [deprecated_alias("credential")],
        },
        "azure_storage_connection_string": {"type": "str", "no_log": True},
        "azure_storage_sas_token": {"type": "str", "no_log": True},
        "azure_storage_key": {"type": "str", "no_log": True},
        "gcp_service_account_file": {"type": "path"},
        "gcp_service_account_contents": {"type": "jsonarg", "no_log": True},
    }


def sse_customer_key_argument_spec() -> Dict[str, Dict[str, Any]]:
    """The SSE-C key: writers encrypt with it, readers need it to read what was written with it."""
    return {"sse_customer_key": {"type": "str", "no_log": True}}


def postgres_argument_spec() -> Dict[str, Dict[str, Any]]:
    """The PostgreSQL connection; unset values fall back to libpq's environment and defaults."""
    return {
        "host": {"type": "str", "aliases": ["login_host"]},
        "port": {"type": "int", "aliases": ["login_port"]},
        "user": {"type": "str", "aliases": ["login_user"]},
        "dbname": {"type": "str", "default": "postgres", "aliases": ["login_db"]},
        "password": {"type": "str", "aliases": ["login_password"], "no_log": True},
    }


def upload_argument_spec() -> Dict[str, Dict[str, Any]]:
    """What only the modules that write a backup have (base_backup, snapshot_backup)."""
    spec: Dict[str, Dict[str, Any]] = {
        "tags": {"type": "dict"},
        "encryption": {"type": "str", "choices": list(ENCRYPTIONS)},
        "sse_kms_key_id": {"type": "str"},
        "encryption_scope": {"type": "str"},
        "kms_key_name": {"type": "str"},
        "immediate_checkpoint": {"type": "bool", "default": False},
        "keepalive_interval": {"type": "int", "default": 60},
        "primary_conninfo": {"type": "str", "no_log": True},
        "wal_archive_timeout": {"type": "int", "default": 300},
        "require_wal_archiving": {"type": "bool", "default": True},
        "backup_name": {"type": "str", "aliases": ["name"]},
    }
    spec.update(sse_customer_key_argument_spec())
    return spec


def snapshot_argument_spec() -> Dict[str, Dict[str, Any]]:
    """The instance, its disks and the options of each cloud's snapshots (snapshot_backup)."""
    return {
        "snapshot_instance": {"type": "str", "required": True},
        "snapshot_disks": {"type": "list", "elements": "str", "required": True, "aliases": ["snapshot_disk"]},
        "aws_region": {"type": "str"},
        "aws_await_snapshots_timeout": {"type": "int", "default": 3600},
        "aws_snapshot_lock_mode": {"type": "str", "choices": list(SNAPSHOT_LOCK_MODES)},
        "aws_snapshot_lock_duration": {"type": "int"},
        "aws_snapshot_lock_cool_off_period": {"type": "int"},
        "aws_snapshot_lock_expiration_date": {"type": "str"},
        "azure_subscription_id": {"type": "str"},
        "azure_resource_group": {"type": "str"},
        "gcp_project": {"type": "str", "aliases": ["snapshot_gcp_project"],
                        "deprecated_aliases": [deprecated_alias("snapshot_gcp_project")]},
        "gcp_zone": {"type": "str", "aliases": ["snapshot_zone"],
                     "deprecated_aliases": [deprecated_alias("snapshot_zone")]},
    }


def snapshot_rules() -> Dict[str, Any]:
    """Combinations of snapshot parameters that cannot work; the engine checks ranges, dates and
    that a cool-off period goes with the compliance mode."""
    return {
        "mutually_exclusive": [["aws_snapshot_lock_duration", "aws_snapshot_lock_expiration_date"]],
        "required_if": [
            ["cloud_provider", "google-cloud-storage", ["gcp_project", "gcp_zone"]],
            ["cloud_provider", "azure-blob-storage", ["azure_subscription_id", "azure_resource_group"]],
            ["aws_snapshot_lock_mode", "governance",
             ["aws_snapshot_lock_duration", "aws_snapshot_lock_expiration_date"], True],
            ["aws_snapshot_lock_mode", "compliance",
             ["aws_snapshot_lock_duration", "aws_snapshot_lock_expiration_date"], True],
        ],
        "required_by": {
            "aws_snapshot_lock_duration": ["aws_snapshot_lock_mode"],
            "aws_snapshot_lock_expiration_date": ["aws_snapshot_lock_mode"],
            "aws_snapshot_lock_cool_off_period": ["aws_snapshot_lock_mode"],
        },
    }


def storage_rules() -> Dict[str, Any]:
    """Combinations of storage parameters that cannot work, as AnsibleModule arguments."""
    return {
        # IRSA takes its credentials from the pod's web identity, not from a profile.
        "mutually_exclusive": [
            ["aws_profile", "aws_irsa"],
            ["azure_storage_connection_string", "azure_storage_sas_token", "azure_storage_key", "azure_credential"],
            ["gcp_service_account_file", "gcp_service_account_contents"],
        ],
        "required_together": [["aws_access_key", "aws_secret_key"]],
        "required_by": {"aws_session_token": ["aws_access_key", "aws_secret_key"]},
    }


def upload_rules() -> Dict[str, Any]:
    """Combinations of upload parameters that cannot work; the engine checks the values."""
    return {
        # SSE-C replaces the store's own encryption; S3 refuses both on one object.
        "mutually_exclusive": [["sse_customer_key", "encryption"], ["sse_customer_key", "sse_kms_key_id"]],
        # The engine also checks that encryption is aws:kms, which Ansible cannot express.
        "required_by": {"sse_kms_key_id": ["encryption"]},
    }


def merge_argument_specs(*specs: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """One argument spec from several; a name defined twice is a programming error."""
    merged: Dict[str, Dict[str, Any]] = {}
    for spec in specs:
        for name, option in spec.items():
            if name in merged:
                raise ValueError("option %s is defined by two argument spec pieces" % name)
            merged[name] = option
    return merged


def merge_rules(*rules: Dict[str, Any]) -> Dict[str, Any]:
    """One set of AnsibleModule rule arguments (mutually_exclusive, required_by, ...) from several."""
    merged: Dict[str, Any] = {}
    for rule_set in rules:
        for kind, entries in rule_set.items():
            if isinstance(entries, dict):
                merged.setdefault(kind, {}).update(entries)
            else:
                merged.setdefault(kind, []).extend(entries)
    return merged


# --- output hygiene ------------------------------------------------------------------------


def redact(text: str) -> str:
    """The text without passwords written inside conninfo strings or postgres:// URIs."""
    text = _CONNINFO_PASSWORD.sub(lambda match: match.group(1) + REDACTED, text)
    # The engine's patterns too: the password of any URL, Azure keys and SAS signatures.
    return redact_secrets(_URI_PASSWORD.sub(lambda match: match.group(1) + REDACTED + "@", text))


def log_level_for(verbosity: int) -> int:
    """The engine's log level: progress and steps always, details from -vv on, as Ansible's own output."""
    return logging.DEBUG if verbosity >= 2 else logging.INFO


class EngineLogCollector(logging.Handler):
    """Keeps the engine's log records as lines for the result and sends each to the host's journal.

    The journal copy lets an operator follow a backup that runs for hours (journalctl, syslog)
    while Ansible waits for the result.
    """

    def __init__(self, module: AnsibleModule, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.module = module
        self.lines: List[str] = []
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = redact(self.format(record))
            self.lines.append(line)
            # AnsibleModule.log removes no_log values before writing to the journal/syslog.
            self.module.log(line)
            if record.levelno >= logging.WARNING:
                # Warnings leave the module without the no_log scrubbing of its result.
                self.module.warn(remove_values(redact(record.getMessage()), self.module.no_log_values))
        except Exception:  # a log line must never break a backup
            self.handleError(record)


# --- the module wrapper --------------------------------------------------------------------


class PgCloudModule:
    """An AnsibleModule with the engine's log attached and its errors turned into results."""

    def __init__(self, argument_spec: Dict[str, Dict[str, Any]], rules: Optional[Dict[str, Any]] = None,
                 supports_check_mode: bool = True) -> None:
        self.module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=supports_check_mode,
                                    **(rules or {}))
        self._logger = logging.getLogger(ENGINE_LOGGER)
        self._previous_level = self._logger.level
        level = log_level_for(getattr(self.module, "_verbosity", 0))
        self.log_collector = EngineLogCollector(self.module, level)
        self._logger.addHandler(self.log_collector)
        self._logger.setLevel(level)

    @property
    def params(self) -> Dict[str, Any]:
        return self.module.params

    @property
    def check_mode(self) -> bool:
        return bool(self.module.check_mode)

    @property
    def log_lines(self) -> List[str]:
        return list(self.log_collector.lines)

    # parameters -> engine configs; a ConfigurationError from these is an engine error too

    def storage_config(self) -> StorageConfig:
        return from_params(StorageConfig, self.params)

    def postgres_config(self) -> PostgresConfig:
        return from_params(PostgresConfig, self.params)

    def backup_config(self) -> BackupConfig:
        return from_params(BackupConfig, self.params)

    def snapshot_config(self) -> SnapshotConfig:
        return from_params(SnapshotConfig, self.params)

    def warn(self, message: str) -> None:
        self.module.warn(remove_values(redact(message), self.module.no_log_values))

    # results

    def exit_json(self, **result: Any) -> None:
        self.module.exit_json(**self._with_common_fields(result))

    def fail_json(self, msg: str, **result: Any) -> None:
        self.module.fail_json(msg=redact(msg), **self._with_common_fields(result))

    def _with_common_fields(self, result: Dict[str, Any]) -> Dict[str, Any]:
        result = dict(result)
        result.setdefault("changed", False)
        shown = shown_params(self.params)
        if shown != self.params:
            # Ansible echoes the parameters as `invocation` (when asked to): not a URL's query.
            result.setdefault("invocation", {"module_args": shown})
        result["version"] = COLLECTION_VERSION
        result["log"] = self.log_lines
        self._detach_log()
        return result

    def _detach_log(self) -> None:
        self._logger.removeHandler(self.log_collector)
        self._logger.setLevel(self._previous_level)

    @contextlib.contextmanager
    def engine_errors(self) -> Iterator[None]:
        """Run engine calls; an engine exception ends the module with a clear failure result.

        Expected errors fail outside the except block, so that no traceback of them is
        attached; an unexpected one carries its traceback, which is what a bug report needs.
        """
        failure: Optional[Dict[str, Any]] = None
        try:
            yield
        except PgCloudError as error:
            failure = failure_result(error)
        except Exception as error:  # pylint: disable=broad-exception-caught
            self.fail_json(msg="unexpected error in pgcloud.backup: %s: %s" % (type(error).__name__, error),
                           exception=traceback.format_exc())
        if failure is not None:
            self.fail_json(**failure)


def shown_params(params: Dict[str, Any]) -> Dict[str, Any]:
    """The parameters with their URLs cut before a query, a fragment or user information."""
    shown = dict(params)
    for name in URL_PARAMETERS:
        if isinstance(shown.get(name), str):
            shown[name] = shown_url(shown[name])
    return shown


def failure_result(error: PgCloudError) -> Dict[str, Any]:
    """The fail_json arguments (msg and extra result fields) for an expected engine error."""
    if isinstance(error, MissingDependencyError):
        result = {"msg": missing_required_lib(error.library, reason="for %s" % error.purpose)}
        if error.cause is not None:
            result["import_error"] = str(error.cause)
        return result
    message = str(error)
    if isinstance(error, ConfigurationError):
        if error.parameter and error.parameter not in message:
            message = "%s: %s" % (error.parameter, message)
        return {"msg": message, "parameter": error.parameter}
    if isinstance(error, BackupError):
        return {"msg": message, "backup_id": error.backup_id}
    return {"msg": message}
