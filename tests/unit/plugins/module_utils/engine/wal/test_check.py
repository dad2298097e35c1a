# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL check's decisions (wal/check.py) and its text on the host (host/checks.py), with a
scripted archiver and store; tests/integration/test_check_wal.py runs it on real clusters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import PostgresError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.host.checks import check_text
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal import check as wal_check

SEGMENT = "000000010000000000000042"
T0 = datetime(2026, 1, 25, 3, 15, tzinfo=timezone.utc)


class ScriptedSession:
    """Answers the check's queries from a script: archiver rows in turn, then the last one again."""

    def __init__(self, archiver_rows, archive_mode="on", in_recovery=False, switch_error=None):
        self.archiver_rows = list(archiver_rows)
        self.archive_mode = archive_mode
        self.in_recovery = in_recovery
        self.switch_error = switch_error
        self.switched = 0
        self.written = 0

    def value(self, sql, parameters=()):
        if "archive_mode" in sql:
            return self.archive_mode
        if "pg_is_in_recovery" in sql:
            return self.in_recovery
        if "pg_current_xact_id" in sql:
            self.written = self.switched + 1
            return 1000
        if "pg_switch_wal" in sql:
            if self.switch_error:
                raise PostgresError(self.switch_error)
            # A switch on an idle server closes nothing: the check writes a record first.
            assert self.written == self.switched + 1, "pg_switch_wal without a WAL record written before it"
            self.switched += 1
            return SEGMENT
        raise AssertionError(sql)

    def query(self, sql, parameters=()):
        if "pg_stat_archiver" in sql:
            return [self.archiver_rows.pop(0) if len(self.archiver_rows) > 1 else self.archiver_rows[0]]
        if "pg_ls_archive_statusdir" in sql:
            return [(0, None)]
        raise AssertionError(sql)


class Destination:
    def url_of(self, *parts):
        return "s3://bucket/db1/" + "/".join(parts)


class ScriptedCatalog:
    def __init__(self, arrives_after):
        self.calls = 0
        self.arrives_after = arrives_after
        self.store = type("Store", (), {"destination": Destination()})()

    def wal_archived(self, name):
        assert name == SEGMENT
        self.calls += 1
        return self.arrives_after is not None and self.calls > self.arrives_after


def row(archived=10, last_archived=T0, failed=0, last_failed=None, wal="000000010000000000000041"):
    return (archived, wal, last_archived, failed, "000000010000000000000042" if last_failed else None, last_failed)


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(wal_check, "POLL_SECONDS", 0.01)


@pytest.mark.parametrize("given, archive_mode, wanted", [
    (None, "on", True), (None, "always", True), (None, "off", False), (True, "off", True), (False, "on", False)])
def test_unset_means_where_the_server_archives(given, archive_mode, wanted):
    assert wal_check.wal_check_wanted(given, archive_mode) is wanted


def test_segment_that_arrives_passes():
    session = ScriptedSession([row(), row(archived=11, last_archived=T0 + timedelta(seconds=1), wal=SEGMENT)])
    report = wal_check.check_wal_arrives(ScriptedCatalog(arrives_after=2), session, 30)
    assert report["error"] is None, report
    assert report["segment"] == SEGMENT and report["switched"] is True and report["in_store"] is True
    assert report["archiver"]["last_archived_wal"] == SEGMENT and report["archiver"]["archived_count"] == 11
    assert session.switched == 1


def test_segment_that_does_not_arrive_fails_after_the_timeout():
    report = wal_check.check_wal_arrives(ScriptedCatalog(arrives_after=None), ScriptedSession([row()]), 0)
    assert report["in_store"] is False
    assert report["error"].startswith("WAL segment %s did not reach s3://bucket/db1/wals within 0 s" % SEGMENT)
    assert "raise wal_archive_timeout" in report["error"]


def test_an_archiver_that_keeps_failing_ends_the_wait_early():
    """Three failures since the switch: PostgreSQL then pauses a minute; the check says why now."""
    failing = [row(failed=5 + count, last_failed=T0 + timedelta(seconds=count + 1)) for count in range(4)]
    catalog = ScriptedCatalog(arrives_after=None)
    report = wal_check.check_wal_arrives(catalog, ScriptedSession([row(failed=5)] + failing), 300)
    assert report["in_store"] is False and report["waited_seconds"] < 60
    assert "the archiver is failing: it last failed to archive 000000010000000000000042" in report["error"]
    assert report["archiver"]["failing"] is True


def test_an_archiver_failing_before_is_an_error_even_if_the_segment_arrives():
    """A failure after the last success: archive_command fails now, whatever the store holds."""
    stuck = row(last_archived=T0, failed=1, last_failed=T0 + timedelta(seconds=5))
    report = wal_check.check_wal_arrives(ScriptedCatalog(arrives_after=0), ScriptedSession([stuck]), 30)
    assert report["in_store"] is True and report["error"].startswith("the archiver is failing")


def test_a_standby_skips_the_switch_and_says_so():
    session = ScriptedSession([row()], in_recovery=True)
    report = wal_check.check_wal_arrives(ScriptedCatalog(arrives_after=None), session, 30)
    assert session.switched == 0 and report["switched"] is False and report["in_store"] is None
    assert report["error"] is None and "standby" in report["warnings"][0]


def test_archive_mode_off_is_an_error_naming_the_fix():
    session = ScriptedSession([row()], archive_mode="off")
    report = wal_check.check_wal_arrives(ScriptedCatalog(arrives_after=0), session, 30)
    assert session.switched == 0
    assert report["error"].startswith("archive_mode is off") and "check_wal: false" in report["error"]


def test_switch_refused_names_the_privilege():
    session = ScriptedSession([row()], switch_error="PostgreSQL refused SELECT pg_walfile_name: permission denied")
    with pytest.raises(PostgresError, match="EXECUTE on pg_switch_wal"):
        wal_check.check_wal_arrives(ScriptedCatalog(arrives_after=0), session, 30)


def test_host_text_names_each_part_and_the_verdict():
    report = wal_check.check_wal_arrives(ScriptedCatalog(arrives_after=None), ScriptedSession([row()]), 0)
    text = check_text({"ok": False, "storage": {"error": None, "destination_url": "s3://bucket"},
                       "postgres": {"error": None, "warnings": []}, "wal": report})
    lines = text.splitlines()
    assert lines[0] == "storage: ok (s3://bucket)" and lines[1] == "postgres: ok"
    assert lines[2].startswith("wal: FAILED: WAL segment %s did not reach" % SEGMENT)
    assert "  segment %s not in the store" % SEGMENT in lines
    assert lines[-1] == "result: FAILED"
