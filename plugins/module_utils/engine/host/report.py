# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the scheduled job (host/job.py) reports after each run: a JSON status file, a
node-exporter textfile of metrics and a healthchecks.io style ping. Each is written whole or
not at all, and a failure of one never stops the others."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import REDACTED, redact_url

LOG = logging.getLogger("pgcloud-backup")
METRIC_PREFIX = "pgcloud_backup"


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


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


def write_in_place(path: str, text: str) -> None:
    """Rewrite an existing file in place, for a folder the job may not create files in."""
    with open(path, "r+", encoding="utf-8") as stream:
        stream.write(text)
        stream.truncate()
        stream.flush()
        os.fsync(stream.fileno())


def write_metrics(path: str, text: str) -> None:
    """By rename where the folder lets the job create files, else in the file the role pre-created.

    The role leaves the mode of a textfile folder it did not create alone (other collectors'
    files are there), so the job may only be allowed to write its own file.
    """
    try:
        write_atomically(path, text, 0o644)
    except PermissionError:
        write_in_place(path, text)


def previous_status(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            status = json.load(handle)
        return status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        return {}


def archiving_setup(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """What the role recorded when it set WAL archiving up (wal-archiving.json beside the status
    file): whether PostgreSQL must restart for archive_mode to take effect."""
    status_file = (config.get("report") or {}).get("status_file")
    if not status_file:
        return None
    return previous_status(os.path.join(os.path.dirname(status_file), "wal-archiving.json")) or None


def build_status(config: Dict[str, Any], previous: Dict[str, Any], started: float, finished: float,
                 result: Optional[Dict[str, Any]], error: Optional[str],
                 wal: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The status document: this run, plus the last successful run (kept across failures)."""
    success = error is None
    status = {
        "job": config.get("job_name"),
        "server_name": config["storage"].get("server_name"),
        "destination_url": redact_url(config["storage"].get("destination_url")),
        "host": socket.gethostname(),
        "result": "success" if success else "failure",
        "started_at": iso_time(started),
        "finished_at": iso_time(finished),
        "duration_seconds": round(finished - started, 3),
        "backup_id": (result or {}).get("backup_id"),
        "size_bytes": (result or {}).get("bytes_written") if success else None,
        "error": error,
        "wal_archiving": wal,
        "wal_archiving_setup": archiving_setup(config),
    }
    if success:
        status["last_success"] = {key: status[key] for key in ("backup_id", "finished_at", "size_bytes",
                                                               "duration_seconds")}
        status["last_success"]["timestamp"] = finished
    else:
        status["last_success"] = previous.get("last_success")
    return status


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _timestamp(iso: Optional[str]) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else 0


def backup_gauges(status: Dict[str, Any]) -> List[Tuple[str, str, Any]]:
    last_success = status.get("last_success") or {}
    return [
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


def wal_gauges(wal: Optional[Dict[str, Any]]) -> List[Tuple[str, str, Any]]:
    """WAL archiving health as the job saw it at the end of its run; all but the first only when read."""
    gauges: List[Tuple[str, str, Any]] = [
        ("wal_status_read", "1 if the job could read the WAL archiver's state at the end of its run, else 0.",
         1 if wal and not wal.get("error") else 0)]
    if not wal or wal.get("error"):
        return gauges
    age = wal.get("oldest_ready_age_seconds")
    return gauges + [
        ("wal_archived_count", "WAL files archived since the server's statistics were reset (pg_stat_archiver).",
         wal.get("archived_count") or 0),
        ("wal_failed_count", "Failed archive_command calls since the statistics were reset (pg_stat_archiver).",
         wal.get("failed_count") or 0),
        ("wal_last_archived_timestamp_seconds", "Unix time the last WAL file was archived.",
         _timestamp(wal.get("last_archived_time"))),
        ("wal_last_failed_timestamp_seconds", "Unix time archive_command last failed (0: never).",
         _timestamp(wal.get("last_failed_time"))),
        ("wal_ready_count", "WAL files waiting to be archived (.ready in pg_wal/archive_status).",
         wal.get("ready_count") if wal.get("ready_count") is not None else "NaN"),
        ("wal_oldest_ready_age_seconds", "Age of the oldest WAL file waiting to be archived (0: none waits).",
         age if age is not None else "NaN"),
    ]


def metrics_text(status: Dict[str, Any]) -> str:
    """The node-exporter textfile: one gauge per fact, labelled with job and server."""
    labels = '{job_name="%s",server_name="%s"}' % (
        _label(status.get("job") or ""), _label(status.get("server_name") or ""))
    lines = []
    for name, help_text, value in backup_gauges(status) + wal_gauges(status.get("wal_archiving")):
        metric = "%s_%s" % (METRIC_PREFIX, name)
        lines += ["# HELP %s %s" % (metric, help_text), "# TYPE %s gauge" % metric, "%s%s %s" % (metric, labels, value)]
    if status.get("retention"):
        from ..retention.scheduled import retention_metrics

        lines += retention_metrics(status["retention"], labels)
    return "\n".join(lines) + "\n"


def url_host(url: str) -> str:
    """The host of a URL, the one part of a ping URL that may be logged (the rest is a token)."""
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(not a URL)"


def http_get(url: str, timeout: float) -> Any:
    """GET url, as urllib's default opener does (the job runs without Ansible's open_url)."""
    return urllib.request.build_opener().open(url, timeout=timeout)  # nosec: the operator's own URL


def ping(url: str, success: bool, timeout: float) -> None:
    """healthchecks.io style: GET the URL on success, URL + /fail on failure. Never raises.

    The URL is a secret (whoever has it can report for this job): only its host is logged.
    """
    target = url.rstrip("/") + ("" if success else "/fail")
    kind = "success" if success else "failure"
    try:
        with http_get(target, timeout) as response:
            LOG.info("pinged %s (%s): HTTP %s", url_host(url), kind, response.status)
    except (urllib.error.URLError, OSError, ValueError) as error:
        LOG.warning("could not ping %s (%s): %s", url_host(url), kind, str(error).replace(url.rstrip("/"), REDACTED))


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
            write_metrics(textfile, metrics_text(status))
        except OSError as error:
            LOG.error("could not write the metrics file %s: %s", textfile, error)
    if outputs.get("ping_url"):
        ping(outputs["ping_url"], status["result"] == "success", float(outputs.get("ping_timeout") or 10))
