# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How WAL archiving fares on a server, from pg_stat_archiver and pg_wal/archive_status: for the
scheduled job's status file and metrics, base backups' results and the WAL check (wal/check.py).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Dict, Optional

from ..config import PostgresConfig
from ..errors import PostgresError
from ..postgres.session import PostgresSession

LOG = logging.getLogger(__name__)

ARCHIVER_COLUMNS = ("archived_count", "last_archived_wal", "last_archived_time", "failed_count", "last_failed_wal",
                    "last_failed_time")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def archiver_state(session: PostgresSession) -> Dict[str, Any]:
    """pg_stat_archiver's counts and last files, `failing` when the last attempt failed."""
    row = session.query("SELECT %s FROM pg_stat_archiver" % ", ".join(ARCHIVER_COLUMNS))[0]
    state = dict(zip(ARCHIVER_COLUMNS, row))
    last_archived, last_failed = state["last_archived_time"], state["last_failed_time"]
    # PostgreSQL retries a failed file until it is archived: a failure after the last success
    # means the archiver is stuck on that file now.
    state["failing"] = last_failed is not None and (last_archived is None or last_failed > last_archived)
    state["archived_count"] = int(state["archived_count"] or 0)
    state["failed_count"] = int(state["failed_count"] or 0)
    return {name: _iso(value) for name, value in state.items()}


def archiver_state_if_readable(session: PostgresSession) -> Optional[Dict[str, Any]]:
    """archiver_state, or None (logged) when it cannot be read: a report, which never fails a backup."""
    try:
        return archiver_state(session)
    except Exception as error:  # pylint: disable=broad-except  # the backup is DONE whatever this says
        LOG.warning("could not read pg_stat_archiver: %s", error)
        return None


def ready_files(session: PostgresSession) -> Dict[str, Optional[float]]:
    """How many WAL files wait for the archiver (.ready) and the age in seconds of the oldest.

    pg_ls_archive_statusdir() needs a superuser or pg_monitor: without, both are None.
    """
    try:
        count, age = session.query(
            "SELECT count(*), extract(epoch FROM now() - min(modification)) FROM pg_ls_archive_statusdir() "
            "WHERE name LIKE '%%.ready'")[0]
    except PostgresError as error:
        LOG.debug("%s", error)
        return {"ready_count": None, "oldest_ready_age_seconds": None}
    return {"ready_count": int(count), "oldest_ready_age_seconds": round(float(age), 3) if age is not None else 0.0}


def session_wal_health(session: PostgresSession) -> Dict[str, Any]:
    """archive_mode, whether the server is a standby, the archiver's state and the .ready files."""
    health: Dict[str, Any] = {
        "archive_mode": session.value("SELECT setting FROM pg_settings WHERE name = 'archive_mode'"),
        "in_recovery": bool(session.value("SELECT pg_is_in_recovery()")),
    }
    health.update(archiver_state(session))
    health.update(ready_files(session))
    return health


def wal_health(postgres: PostgresConfig) -> Dict[str, Any]:
    """session_wal_health over a session of its own."""
    session = PostgresSession(postgres)
    try:
        return session_wal_health(session)
    finally:
        session.close()
