# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""retention/policy.py: the verdicts of barman-cloud-backup-delete's policies (reference section 4)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.retention.policy import (
    check_minimum_redundancy, judge, obsolete_ids, parse_policy)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, redundancy, days", [
    ("REDUNDANCY 2", 2, None), ("redundancy 0", 0, None), ("  Redundancy   12 ", 12, None),
    ("RECOVERY WINDOW OF 7 DAYS", None, 7), ("recovery window of 1 day", None, 1),
    ("RECOVERY WINDOW OF 2 WEEKS", None, 14), ("recovery window of 3 months", None, 93),
    ("RECOVERY WINDOW OF 1 MONTH", None, 31),
])
def test_parse_policy(text, redundancy, days):
    policy = parse_policy(text)
    assert policy.redundancy == redundancy
    assert policy.window == (timedelta(days=days) if days is not None else None)


@pytest.mark.parametrize("text", ["", "REDUNDANCY", "REDUNDANCY -1", "REDUNDANCY two", "KEEP 3",
                                  "RECOVERY WINDOW OF 7 YEARS", "RECOVERY WINDOW 7 DAYS", None, "REDUNDANCY 2 3"])
def test_unparseable_policies_name_the_option(text):
    with pytest.raises(ConfigurationError) as caught:
        parse_policy(text)
    assert caught.value.parameter == "retention_policy" and "REDUNDANCY n" in str(caught.value)


@pytest.mark.parametrize("value", [-1, "2", None, True, 1.5])
def test_minimum_redundancy_must_be_a_whole_number(value):
    with pytest.raises(ConfigurationError) as caught:
        check_minimum_redundancy(value)
    assert caught.value.parameter == "minimum_redundancy"


def backups(*spec):
    """(id suffix, status, days before NOW it ended)"""
    return [{"backup_id": "202611%02dT000000" % day, "status": status, "end_time": NOW - timedelta(days=age)}
            for day, status, age in spec]


CATALOG = backups((1, "DONE", 30), (2, "DONE", 25), (3, "FAILED", 20), (4, "DONE", 15), (5, "DONE", 10),
                  (6, "STARTED", 1), (7, "DONE", 5))


def test_redundancy_keeps_the_n_newest_done():
    verdicts = judge(CATALOG, {}, parse_policy("REDUNDANCY 2"), 0, NOW)
    assert verdicts == {"20261101T000000": "OBSOLETE", "20261102T000000": "OBSOLETE", "20261103T000000": "-",
                        "20261104T000000": "OBSOLETE", "20261105T000000": "VALID", "20261106T000000": "-",
                        "20261107T000000": "VALID"}
    assert obsolete_ids(verdicts) == ["20261101T000000", "20261102T000000", "20261104T000000"]


def test_redundancy_zero_deletes_every_unkept_done_backup_and_minimum_raises_it():
    assert len(obsolete_ids(judge(CATALOG, {}, parse_policy("REDUNDANCY 0"), 0, NOW))) == 5
    assert obsolete_ids(judge(CATALOG, {}, parse_policy("REDUNDANCY 0"), 3, NOW)) == [
        "20261101T000000", "20261102T000000"]


def test_kept_backups_are_never_obsolete_but_fill_a_place():
    keeps = {"20261105T000000": "full", "20261101T000000": "standalone"}
    verdicts = judge(CATALOG, keeps, parse_policy("REDUNDANCY 2"), 0, NOW)
    assert verdicts["20261105T000000"] == "KEEP:FULL" and verdicts["20261101T000000"] == "KEEP:STANDALONE"
    assert obsolete_ids(verdicts) == ["20261102T000000", "20261104T000000"]


def test_window_keeps_the_newest_backup_that_ended_before_it():
    verdicts = judge(CATALOG, {}, parse_policy("RECOVERY WINDOW OF 12 DAYS"), 0, NOW)
    # 07 (5 days) and 05 (10 days) are inside; 04 (15 days) is the one a restore to 12 days ago needs.
    assert obsolete_ids(verdicts) == ["20261101T000000", "20261102T000000"]
    assert verdicts["20261104T000000"] == "VALID"


def test_window_with_minimum_redundancy_marks_obsolete_star():
    verdicts = judge(CATALOG, {}, parse_policy("RECOVERY WINDOW OF 1 DAY"), 3, NOW)
    assert verdicts["20261107T000000"] == "VALID"
    assert verdicts["20261105T000000"] == "OBSOLETE*" and verdicts["20261104T000000"] == "OBSOLETE*"
    assert obsolete_ids(verdicts) == ["20261101T000000", "20261102T000000"]


def test_window_month_is_31_days():
    assert obsolete_ids(judge(CATALOG, {}, parse_policy("RECOVERY WINDOW OF 1 MONTH"), 0, NOW)) == []
    two = backups((1, "DONE", 40), (2, "DONE", 32), (3, "DONE", 1))
    assert obsolete_ids(judge(two, {}, parse_policy("RECOVERY WINDOW OF 1 MONTH"), 0, NOW)) == ["20261101T000000"]


def test_a_naive_end_time_is_read_in_the_hosts_zone():
    naive = [{"backup_id": "20261101T000000", "status": "DONE", "end_time": datetime(2026, 1, 1)},
             {"backup_id": "20261102T000000", "status": "DONE", "end_time": datetime(2026, 1, 2)},
             {"backup_id": "20261103T000000", "status": "DONE", "end_time": None}]
    assert obsolete_ids(judge(naive, {}, parse_policy("RECOVERY WINDOW OF 7 DAYS"), 0, NOW)) == ["20261101T000000"]
