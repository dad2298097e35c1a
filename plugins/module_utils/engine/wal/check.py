# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL check of `check` (module and host command): does WAL reach the store now?

On a primary, it closes the current WAL segment (pg_switch_wal), waits (at most
wal_archive_timeout) until that segment is in the store, in the barman-cloud layout, and
fails when it does not arrive or when the archiver is failing (pg_stat_archiver: a failure
after the last success). A standby cannot switch segments: there it reports the archiver only.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional

from .. import layout
from ..catalog import Catalog
from ..config import StorageConfig
from ..errors import PgCloudError, PostgresError
from ..postgres.session import PostgresSession
from .health import archiver_state, session_wal_health

LOG = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# PostgreSQL tries a file this many times in a row before it pauses for a minute: that many
# failures since the switch mean the archiver cannot archive now.
ARCHIVER_TRIES = 3
ARCHIVING_MODES = ("on", "always")


def wal_check_wanted(check_wal: Optional[bool], archive_mode: Optional[str]) -> bool:
    """check_wal as given, or, unset, whether the server archives WAL."""
    return bool(check_wal) if check_wal is not None else archive_mode in ARCHIVING_MODES


def new_report(health: Dict[str, Any]) -> Dict[str, Any]:
    archiver = {name: health.get(name) for name in ("archived_count", "last_archived_wal", "last_archived_time",
                                                    "failed_count", "last_failed_wal", "last_failed_time", "failing",
                                                    "ready_count", "oldest_ready_age_seconds")}
    return {"archive_mode": health.get("archive_mode"), "segment": None, "switched": False, "in_store": None,
            "waited_seconds": None, "archiver": archiver, "error": None, "warnings": []}


def switch_segment(session: PostgresSession) -> str:
    """Close the current WAL segment, and return its name.

    A transaction id is taken first, whose commit is a WAL record: on a server with no write
    since the last switch, pg_switch_wal does nothing and names the last segment closed, which
    may have been archived long ago, or to another store, and proves nothing about now.
    """
    try:
        session.value("SELECT pg_current_xact_id()")
        return str(session.value("SELECT pg_walfile_name(pg_switch_wal())"))
    except PostgresError as error:
        raise PostgresError("%s; the WAL check needs a superuser or EXECUTE on pg_switch_wal() "
                            "(or check_wal: false)" % error) from error


def await_segment(catalog: Catalog, session: PostgresSession, segment: str, timeout: int,
                  failures_before: int) -> Dict[str, Any]:
    """Poll the store for segment until it is there, timeout passes or the archiver keeps failing."""
    started = time.monotonic()
    while True:
        in_store = catalog.wal_archived(segment)
        state = archiver_state(session)
        elapsed = time.monotonic() - started
        if in_store or elapsed >= timeout or state["failed_count"] - failures_before >= ARCHIVER_TRIES:
            return {"in_store": in_store, "waited_seconds": round(elapsed, 1), "state": state}
        time.sleep(POLL_SECONDS)


def failure_text(report: Dict[str, Any], destination: str, timeout: int) -> Optional[str]:
    archiver = report["archiver"]
    failing = ("the archiver is failing: it last failed to archive %s at %s (%d failures since the statistics "
               "were reset; last archived %s); check archive_command and the server's log"
               % (archiver["last_failed_wal"], archiver["last_failed_time"], archiver["failed_count"],
                  archiver["last_archived_wal"] or "none"))
    if report["in_store"] is False:
        why = failing if archiver["failing"] else "raise wal_archive_timeout, or check archive_command and the server's log"
        return "WAL segment %s did not reach %s within %d s (wal_archive_timeout): %s" % (
            report["segment"], destination, timeout, why)
    return failing if archiver["failing"] else None


def check_wal_arrives(catalog: Catalog, session: PostgresSession, timeout: int) -> Dict[str, Any]:
    """The WAL check's report; its `error` says why WAL archiving does not work (None: it does)."""
    health = session_wal_health(session)
    report = new_report(health)
    if health["archive_mode"] not in ARCHIVING_MODES:
        report["error"] = "archive_mode is %s: no WAL is archived, so no backup can be restored; set archive_mode " \
                          "and archive_command (or check_wal: false)" % health["archive_mode"]
        return report
    if health["in_recovery"]:
        report["warnings"].append("the server is a standby: the WAL segment switch is skipped (pg_switch_wal runs "
                                  "only on a primary); only the archiver's state is checked")
    else:
        report.update(segment=switch_segment(session), switched=True)
        LOG.info("waiting up to %d s for WAL segment %s to reach the store", timeout, report["segment"])
        waited = await_segment(catalog, session, report["segment"], timeout, health["failed_count"])
        report.update(in_store=waited["in_store"], waited_seconds=waited["waited_seconds"])
        report["archiver"].update(waited["state"])
    report["error"] = failure_text(report, catalog.store.destination.url_of(layout.WAL_FOLDER), timeout)
    return report


def check_wal_report(storage: StorageConfig, session: PostgresSession, timeout: int) -> Dict[str, Any]:
    """check_wal_arrives over the store of storage; a store or server error is the report's error."""
    from ..storage.factory import open_store

    try:
        return check_wal_arrives(Catalog(open_store(storage)), session, timeout)
    except PgCloudError as error:
        report = new_report({})
        report["error"] = str(error)
        return report
