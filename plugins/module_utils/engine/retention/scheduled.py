# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The retention of a scheduled job: its policy applied on the host, after a DONE backup or on demand.

The job's config (host_config.py) holds it under "retention", with the parameter names of
pgcloud.backup.backup_delete:

    "retention": {"retention_policy": "RECOVERY WINDOW OF 14 DAYS", "minimum_redundancy": 2,
                  "abort_uploads_older_than": 86400}

An empty or missing retention_policy means no retention. `apply_retention` is the job's step
after a DONE backup: it never raises, so that a retention that fails leaves the backup's
outcome alone; its failure is in the section it returns (the status file's "retention"),
in the metrics (`retention_metrics`) and in the log, at ERROR.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

from ..config import StorageConfig, from_params
from ..errors import ConfigurationError
from ..host_config import engine_sections
from .delete import delete_backups
from .orphans import DEFAULT_MIN_AGE, check_min_age
from .policy import check_minimum_redundancy, parse_policy

LOG = logging.getLogger("pgcloud.backup")
METRIC_PREFIX = "pgcloud_backup_retention"


def retention_settings(config: Dict[str, Any]) -> Dict[str, Any]:
    """The job's retention parameters, checked; retention_policy None when the job has none."""
    settings = dict(config.get("retention") or {})
    policy = settings.get("retention_policy") or None
    if policy is not None:
        parse_policy(policy)
    return {"retention_policy": policy,
            "minimum_redundancy": check_minimum_redundancy(settings.get("minimum_redundancy", 0)),
            "abort_uploads_older_than": check_min_age(settings.get("abort_uploads_older_than", DEFAULT_MIN_AGE))}


def run_retention(config: Dict[str, Any], credentials: Dict[str, str], backup_id: Optional[str] = None,
                  retention_policy: Optional[str] = None, minimum_redundancy: Optional[int] = None,
                  check_mode: bool = False) -> Dict[str, Any]:
    """backup_delete's result for the job's store: one backup, the given policy, or else the job's own."""
    settings = retention_settings(config)
    if minimum_redundancy is not None:
        settings["minimum_redundancy"] = minimum_redundancy
    if backup_id is None:
        retention_policy = retention_policy or settings["retention_policy"]
        if retention_policy is None:
            raise ConfigurationError(
                "retention_policy: the job has none (pgcloud_backup_retention_policy is empty); give a policy "
                "(--retention-policy) or a backup (--backup-id)", "retention_policy")
    storage = from_params(StorageConfig, engine_sections(config, credentials)["storage"])
    return delete_backups(storage, backup_id, retention_policy if backup_id is None else None,
                          settings["minimum_redundancy"], check_mode=check_mode,
                          abort_uploads_older_than=settings["abort_uploads_older_than"])


def summary(policy: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """The status file's "retention" section of a pass that succeeded."""
    deleted = result.get("deleted") or []
    return {"result": "success", "policy": policy, "error": None,
            "deleted_backups": [step["backup_id"] for step in deleted],
            "deleted_wals": sum(len(step.get("wals") or []) for step in deleted),
            "aborted_uploads": [upload["key"] for upload in result.get("aborted_uploads") or []]}


def apply_retention(config: Dict[str, Any], credentials: Dict[str, str],
                    redact: Callable[[str], Optional[str]] = str) -> Optional[Dict[str, Any]]:
    """The job's retention pass: its "retention" status section, None when the job has no policy.

    Never raises: a failure is reported in the section (its error redacted) and logged at ERROR.
    """
    policy = (config.get("retention") or {}).get("retention_policy") or None
    if policy is None:
        return None
    try:
        section = summary(policy, run_retention(config, credentials))
    except Exception as error:  # pylint: disable=broad-except  # the backup's outcome must be reported whatever this does
        message = redact(str(error) or type(error).__name__)
        LOG.error("retention %s FAILED (the backup itself is DONE): %s", policy, message)
        return {"result": "failure", "policy": policy, "error": message, "deleted_backups": [], "deleted_wals": 0,
                "aborted_uploads": []}
    LOG.info("retention %s: %d backups deleted (%s), %d WAL files, %d open uploads aborted", policy,
             len(section["deleted_backups"]), ", ".join(section["deleted_backups"]) or "none",
             section["deleted_wals"], len(section["aborted_uploads"]))
    return section


def retention_metrics(section: Optional[Dict[str, Any]], labels: str) -> List[str]:
    """node-exporter textfile lines of a retention section; none when retention did not run."""
    if not section:
        return []
    gauges = [
        ("last_status", "1 if the last retention pass succeeded, 0 if it failed.",
         1 if section.get("result") == "success" else 0),
        ("deleted_backups", "Backups deleted by the last retention pass.", len(section.get("deleted_backups") or [])),
        ("deleted_wals", "WAL files deleted by the last retention pass.", section.get("deleted_wals") or 0),
        ("aborted_uploads", "Open uploads of killed runs aborted by the last retention pass.",
         len(section.get("aborted_uploads") or [])),
    ]
    lines = []
    for name, help_text, value in gauges:
        metric = "%s_%s" % (METRIC_PREFIX, name)
        lines += ["# HELP %s %s" % (metric, help_text), "# TYPE %s gauge" % metric, "%s%s %s" % (metric, labels, value)]
    return lines
