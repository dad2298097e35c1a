# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One scheduled base backup: the pgcloud.backup engine called directly, without Ansible.

Installed by the pgcloud.backup.scheduled_backup role and started by its systemd timer or
cron entry, as the PostgreSQL OS user:

    pgcloud-backup-job.py --config /etc/pgcloud-backup/<job>/config.json

The config (JSON, no secrets) holds the engine's parameters under "storage", "postgres" and
"backup" (the parameter names of the pgcloud.backup modules) and where to report the
outcome. Secrets come from the credentials file it names (KEY=VALUE lines, values optionally
JSON-quoted), readable by the backup user only, so that they never appear in a unit file, a
command line or the journal.

Progress goes to stderr (the journal under systemd, syslog through logger under cron). After
the run, whatever its outcome, the job writes a JSON status file, optionally a node-exporter
textfile with the metrics, and optionally pings a URL (healthchecks.io style: the URL on
success, the URL + "/fail" on failure). Exit status: 0 when the backup is DONE, 1 when it
failed, 2 when the job's own configuration is unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

LOG = logging.getLogger("pgcloud-backup-job")

# Credentials file key -> (engine config section, parameter). Environment-style names, so
# that the file reads like the variables the AWS and libpq tools know.
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
REDACTED = "********"
METRIC_PREFIX = "pgcloud_backup"


class JobConfigError(Exception):
    """The job's own files are missing or malformed (not a backup failure)."""


def default_library_path() -> str:
    """<install dir>/lib, next to the <install dir>/bin this script is installed in."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")


def read_config(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as error:
        raise JobConfigError("cannot read the job config %s: %s" % (path, error)) from error
    if not isinstance(config, dict) or not isinstance(config.get("storage"), dict):
        raise JobConfigError("the job config %s has no 'storage' section" % path)
    return config


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
        line = line.strip()
        if not line or line.startswith("#"):
            continue
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
        credentials[key] = value
    return credentials


class Redactor:
    """Replaces every secret value in a text: error messages may quote a connection string."""

    def __init__(self, secrets: List[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted((value for value in secrets if value), key=len, reverse=True)

    def __call__(self, text: Optional[str]) -> Optional[str]:
        if text is None:
            return None
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


class RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        return True


def setup_logging(redact: Redactor, level: str) -> None:
    # No timestamp: the journal and syslog stamp every line themselves.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    # boto3 and urllib3 are chatty at INFO and add nothing an operator needs.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Write a file whole or not at all: readers (node-exporter, monitoring) never see half of it."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, staging = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(staging, mode)
        os.replace(staging, path)
    except BaseException:
        try:
            os.unlink(staging)
        except OSError:
            pass
        raise


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def previous_status(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            status = json.load(handle)
        return status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        return {}


def build_status(config: Dict[str, Any], previous: Dict[str, Any], started: float, finished: float,
                 result: Optional[Dict[str, Any]], error: Optional[str]) -> Dict[str, Any]:
    """The status document: this run, plus the last successful run (kept across failures)."""
    success = error is None
    status = {
        "job": config.get("job_name"),
        "server_name": config["storage"].get("server_name"),
        "destination_url": config["storage"].get("destination_url"),
        "host": socket.gethostname(),
        "result": "success" if success else "failure",
        "started_at": iso_time(started),
        "finished_at": iso_time(finished),
        "duration_seconds": round(finished - started, 3),
        "backup_id": (result or {}).get("backup_id"),
        "size_bytes": (result or {}).get("bytes_written") if success else None,
        "error": error,
    }
    if success:
        status["last_success"] = {key: status[key] for key in ("backup_id", "finished_at", "size_bytes",
                                                               "duration_seconds")}
        status["last_success"]["timestamp"] = finished
    else:
        status["last_success"] = previous.get("last_success")
    return status


def metrics_text(status: Dict[str, Any]) -> str:
    """The node-exporter textfile: one gauge per fact, labelled with job and server."""
    labels = '{job_name="%s",server_name="%s"}' % (
        _label(status.get("job") or ""), _label(status.get("server_name") or ""))
    last_success = status.get("last_success") or {}
    gauges = [
        ("last_success_timestamp_seconds", "Unix time of the end of the last successful base backup.",
         last_success.get("timestamp", 0)),
        ("last_status", "1 if the last scheduled base backup succeeded, 0 if it failed.",
         1 if status["result"] == "success" else 0),
        ("last_duration_seconds", "How long the last scheduled base backup ran, successful or not.",
         status["duration_seconds"]),
        ("last_size_bytes", "Bytes stored by the last successful base backup.", last_success.get("size_bytes") or 0),
        ("last_run_timestamp_seconds", "Unix time of the end of the last scheduled base backup run.",
         _timestamp(status["finished_at"])),
    ]
    lines = []
    for name, help_text, value in gauges:
        metric = "%s_%s" % (METRIC_PREFIX, name)
        lines += ["# HELP %s %s" % (metric, help_text), "# TYPE %s gauge" % metric, "%s%s %s" % (metric, labels, value)]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def ping(url: str, success: bool, timeout: float) -> None:
    """healthchecks.io style: GET the URL on success, URL + /fail on failure. Never raises."""
    target = url.rstrip("/") + ("" if success else "/fail")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # nosec: the operator's own URL
            LOG.info("pinged %s: HTTP %s", target, response.status)
    except (urllib.error.URLError, OSError, ValueError) as error:
        LOG.warning("could not ping %s: %s", target, error)


def report(config: Dict[str, Any], status: Dict[str, Any]) -> None:
    """Status file, metrics, ping: each is tried even when another one fails."""
    outputs = config.get("report") or {}
    status_file = outputs.get("status_file")
    if status_file:
        try:
            write_atomically(status_file, json.dumps(status, indent=2, sort_keys=True) + "\n", 0o640)
        except OSError as error:
            LOG.error("could not write the status file %s: %s", status_file, error)
    textfile = outputs.get("textfile")
    if textfile:
        try:
            write_atomically(textfile, metrics_text(status), 0o644)
        except OSError as error:
            LOG.error("could not write the metrics file %s: %s", textfile, error)
    if outputs.get("ping_url"):
        ping(outputs["ping_url"], status["result"] == "success", float(outputs.get("ping_timeout") or 10))


def run_backup(config: Dict[str, Any], credentials: Dict[str, str]) -> Dict[str, Any]:
    """The engine's take_base_backup with the config's parameters and the credentials."""
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import config as engine_config
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import operations

    sections = {name: dict(config.get(name) or {}) for name in ("storage", "postgres", "backup")}
    for key, value in credentials.items():
        section, parameter = CREDENTIAL_KEYS[key]
        sections[section][parameter] = value
    storage = engine_config.from_params(engine_config.StorageConfig, sections["storage"])
    postgres = engine_config.from_params(engine_config.PostgresConfig, sections["postgres"])
    backup = engine_config.from_params(engine_config.BackupConfig, sections["backup"])
    return operations.take_base_backup(storage, postgres, backup)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Take one scheduled base backup with the pgcloud.backup engine.")
    parser.add_argument("--config", required=True, help="the job's JSON config")
    parser.add_argument("--library", default=default_library_path(),
                        help="the folder that holds ansible_collections/pgcloud/backup (default: %(default)s)")
    arguments = parser.parse_args(argv)
    try:
        config = read_config(arguments.config)
        credentials = read_credentials(config.get("credentials_file"))
    except JobConfigError as error:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        LOG.error("%s", error)
        return 2
    redact = Redactor(list(credentials.values()))
    setup_logging(redact, config.get("log_level", "INFO"))
    sys.path.insert(0, arguments.library)

    status_file = (config.get("report") or {}).get("status_file")
    previous = previous_status(status_file) if status_file else {}
    storage = config["storage"]
    LOG.info("base backup of %s to %s started", storage.get("server_name"), storage.get("destination_url"))
    started = time.time()
    result: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    try:
        result = run_backup(config, credentials)
    except Exception as failure:  # pylint: disable=broad-except  # every failure must be reported
        error = redact(str(failure) or failure.__class__.__name__)
        # A backup that got as far as pg_backup_start has an id (recorded FAILED in the store).
        result = {"backup_id": getattr(failure, "backup_id", None)}
    finished = time.time()
    status = build_status(config, previous, started, finished, result, error)
    if error is None:
        LOG.info("base backup %s DONE in %.1fs, %s bytes stored", status["backup_id"], status["duration_seconds"],
                 status["size_bytes"])
    else:
        LOG.error("base backup FAILED after %.1fs: %s", status["duration_seconds"], error)
    report(config, status)
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
