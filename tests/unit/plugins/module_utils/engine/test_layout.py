# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""backup_info.py: `backup.info` exactly as barman-cloud-backup 3.20.1 writes it.

EXAMPLE_LINES is the real file of the reference format doc (section a, "backup.info
format"), a plain backup of PostgreSQL 15 with `-n mybackup`, copied line by line.
"""

from __future__ import annotations

import ast
import io
from datetime import datetime, timedelta, timezone

# barman.infofile needs barman.output imported first.
import barman.output  # noqa: F401
import barman.infofile
import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout

EXAMPLE_LINES = [
    r"backup_label='START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000098\n"
    r"BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-25 02:33:53 UTC\n"
    r"LABEL: Barman backup cloud 20261125T023350\nSTART TIMELINE: 1\n'",
    "backup_name=mybackup",
    "begin_offset=40",
    "begin_time=2026-11-25 02:33:50.633943+00:00",
    "begin_wal=000000010000000000000002",
    "begin_xlog=0/2000028",
    "children_backup_ids=None",
    "cluster_size=23203529",
    "compression=None",
    "config_file=/var/lib/postgresql/15/main/postgresql.conf",
    "copy_stats={'total_time': 4.593103, 'number_of_workers': 2, 'analysis_time': 0, 'analysis_time_per_item': "
    "{'16384': 0, 'data': 0}, 'copy_time_per_item': {'16384': 0.033171, 'data': 0.649237}, "
    "'serialized_copy_time_per_item': {'16384': 0.015641, 'data': 0.34414}, 'copy_time': 0.649237, "
    "'serialized_copy_time': 0.359781}",
    "data_checksums=on",
    "deduplicated_size=None",
    "encryption=None",
    "end_offset=312",
    "end_time=2026-11-25 02:33:54.716105+00:00",
    "end_wal=000000010000000000000002",
    "end_xlog=0/2000138",
    "error=None",
    "hba_file=/var/lib/postgresql/15/main/pg_hba.conf",
    "ident_file=/var/lib/postgresql/15/main/pg_ident.conf",
    "included_files=None",
    "mode=None",
    "parent_backup_id=None",
    "pgdata=/var/lib/postgresql/15/main",
    "server_name=cloud",
    "size=None",
    "status=DONE",
    "summarize_wal=None",
    "systemid=7711931547866333808",
    "tablespaces=[('ts1', 16384, '/srv/pg_ts1')]",
    "timeline=1",
    "version=150018",
    "xlog_segment_size=16777216",
]

UTC = timezone.utc


def example_fields():
    """The example as the engine holds it: Python values, every field present."""
    return {
        "backup_label": (
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000098\n"
            "BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-25 02:33:53 UTC\n"
            "LABEL: Barman backup cloud 20261125T023350\nSTART TIMELINE: 1\n"
        ),
        "backup_name": "mybackup",
        "begin_offset": 40,
        "begin_time": datetime(2026, 11, 25, 2, 33, 50, 633943, tzinfo=UTC),
        "begin_wal": "000000010000000000000002",
        "begin_xlog": "0/2000028",
        "children_backup_ids": None,
        "cluster_size": 23203529,
        "compression": None,
        "config_file": "/var/lib/postgresql/15/main/postgresql.conf",
        "copy_stats": {
            "total_time": 4.593103, "number_of_workers": 2, "analysis_time": 0,
            "analysis_time_per_item": {"16384": 0, "data": 0},
            "copy_time_per_item": {"16384": 0.033171, "data": 0.649237},
            "serialized_copy_time_per_item": {"16384": 0.015641, "data": 0.34414},
            "copy_time": 0.649237, "serialized_copy_time": 0.359781,
        },
        "data_checksums": "on",
        "deduplicated_size": None,
        "encryption": None,
        "end_offset": 312,
        "end_time": datetime(2026, 11, 25, 2, 33, 54, 716105, tzinfo=UTC),
        "end_wal": "000000010000000000000002",
        "end_xlog": "0/2000138",
        "error": None,
        "hba_file": "/var/lib/postgresql/15/main/pg_hba.conf",
        "ident_file": "/var/lib/postgresql/15/main/pg_ident.conf",
        "included_files": None,
        "mode": None,
        "parent_backup_id": None,
        "pgdata": "/var/lib/postgresql/15/main",
        "server_name": "cloud",
        "size": None,
        "status": "DONE",
        "summarize_wal": None,
        "systemid": "7711931547866333808",
        "tablespaces": [("ts1", 16384, "/srv/pg_ts1")],
        "timeline": 1,
        "version": 150018,
        "xlog_segment_size": 16777216,
    }


def lines_of(data):
    assert data.endswith(b"\n")
    return data.decode("utf-8").split("\n")[:-1]


# --- render ----------------------------------------------------------------------------------------


def test_render_of_the_reference_example_is_byte_for_byte_the_reference_file():
    assert layout.render(example_fields()) == ("\n".join(EXAMPLE_LINES) + "\n").encode("utf-8")


def test_keys_are_sorted_and_no_spaces_around_equals():
    lines = lines_of(layout.render(example_fields()))
    keys = [line.split("=", 1)[0] for line in lines]
    assert keys == sorted(keys)
    assert all(" " not in key for key in keys)
    assert len(keys) == len(set(keys)) == len(EXAMPLE_LINES) == 34  # every field but snapshots_info


def test_backup_name_is_omitted_when_unset():
    fields = example_fields()
    fields["backup_name"] = None
    expected = [line for line in EXAMPLE_LINES if not line.startswith("backup_name=")]
    assert lines_of(layout.render(fields)) == expected
    del fields["backup_name"]
    assert lines_of(layout.render(fields)) == expected


def test_snapshots_info_is_omitted_when_unset_and_sorted_between_size_and_status_when_set():
    assert not [line for line in lines_of(layout.render(example_fields())) if line.startswith("snapshots_info")]
    fields = example_fields()
    fields["snapshots_info"] = {"provider": "aws", "provider_info": {"account_id": "1", "region": "eu-west-1"}, "snapshots": []}
    keys = [line.split("=", 1)[0] for line in lines_of(layout.render(fields))]
    assert keys[keys.index("size") + 1:keys.index("status")] == ["snapshots_info"]


def test_every_other_field_is_written_even_when_none():
    lines = lines_of(layout.render({"status": "STARTED"}))
    expected = [line.split("=", 1)[0] + "=None" for line in EXAMPLE_LINES if not line.startswith("backup_name=")]
    expected[expected.index("status=None")] = "status=STARTED"
    assert lines == expected


def test_unknown_key_is_rejected():
    fields = example_fields()
    fields["backup_id"] = "20261125T023350"  # comes from the directory name, never a key
    with pytest.raises(ValueError, match="backup_id"):
        layout.render(fields)
    with pytest.raises(ValueError, match="my_extra_key"):
        layout.render({"status": "DONE", "my_extra_key": 1})


def test_literal_fields_are_python_literals_and_none_when_empty():
    fields = {"tablespaces": [], "copy_stats": {}, "included_files": [], "backup_label": ""}
    lines = dict(line.split("=", 1) for line in lines_of(layout.render(fields)))
    assert (lines["tablespaces"], lines["copy_stats"], lines["included_files"], lines["backup_label"]) == ("None",) * 4
    fields = {"tablespaces": [("ts1", 16384, "/srv/ts1"), ("ts 2", 16390, "/srv/it's")],
              "included_files": ["/etc/postgresql/extra.conf"]}
    lines = dict(line.split("=", 1) for line in lines_of(layout.render(fields)))
    assert ast.literal_eval(lines["tablespaces"]) == [("ts1", 16384, "/srv/ts1"), ("ts 2", 16390, "/srv/it's")]
    assert lines["included_files"] == "['/etc/postgresql/extra.conf']"


def test_error_is_kept_on_one_line():
    data = layout.render({"status": "FAILED", "error": "failure uploading data (connection reset\nby peer)"})
    assert "error=failure uploading data (connection reset by peer)" in lines_of(data)


def test_timestamps_keep_their_offset():
    paris = timezone(timedelta(hours=1))
    data = layout.render({"begin_time": datetime(2026, 11, 25, 3, 33, 50, 633943, tzinfo=paris)})
    assert "begin_time=2026-11-25 03:33:50.633943+01:00" in lines_of(data)


# --- parse -----------------------------------------------------------------------------------------


def test_parse_of_render_gives_the_same_fields():
    fields = example_fields()
    assert layout.parse(layout.render(fields)) == fields


def test_parse_of_the_reference_file():
    parsed = layout.parse(("\n".join(EXAMPLE_LINES) + "\n").encode("utf-8"))
    assert parsed == example_fields()
    assert isinstance(parsed["tablespaces"][0][1], int)
    assert parsed["begin_time"].utcoffset() == timedelta(0)


def test_parse_skips_blank_and_comment_lines_and_strips_spaces():
    data = b"# written by hand\n\n  status = DONE  \nversion= 150018\nbegin_wal =None\n"
    assert layout.parse(data) == {"status": "DONE", "version": 150018, "begin_wal": None}


def test_parse_keeps_unknown_keys_as_text():
    assert layout.parse(b"status=DONE\nfuture_field=42\n") == {"status": "DONE", "future_field": "42"}


def test_describe_time():
    assert layout.describe_time(datetime(2026, 11, 25, 2, 33, 50, 633943, tzinfo=UTC)) == "2026-11-25T02:33:50.633943+00:00"
    assert layout.describe_time(None) is None


# --- the reference implementation itself -----------------------------------------------------------


@pytest.fixture
def barman_backup_info():
    return barman.infofile.BackupInfo


def test_field_set_is_barmans(barman_backup_info):

    barman_fields = sorted(name for name, value in vars(barman_backup_info).items() if isinstance(value, barman.infofile.Field))
    assert sorted(layout.FIELDS) == barman_fields


def test_render_is_what_barman_writes(barman_backup_info):
    for fields in (example_fields(), dict(example_fields(), backup_name=None, status="STARTED", end_time=None)):
        written = io.BytesIO()
        barman_backup_info("20261125T023350", **fields).save(file_object=written)
        assert layout.render(fields) == written.getvalue()


def test_parse_of_a_file_written_by_barman(barman_backup_info):
    written = io.BytesIO()
    barman_backup_info("20261125T023350", **example_fields()).save(file_object=written)
    assert layout.parse(written.getvalue()) == example_fields()


def test_barman_reads_what_render_writes(barman_backup_info):
    loaded = barman_backup_info("20261125T023350")
    loaded.load(file_object=io.BytesIO(layout.render(example_fields())))
    for name, value in example_fields().items():
        assert getattr(loaded, name) == value, name
    assert loaded.tablespaces[0].oid == 16384


def test_fields_are_written_in_the_reference_order():
    """Sorted, as the reference tool writes them; the dataclass declares them in that order."""
    assert list(layout.FIELDS) == sorted(layout.FIELDS)
    assert len(layout.FIELDS) == 35


def test_typed_backup_info_round_trips():
    info = layout.BackupInfo(status=layout.DONE, begin_time=datetime(2026, 12, 1, 1, 2, 3, tzinfo=timezone.utc),
                             timeline=1, tablespaces=[("ts", 16385, "/srv/ts")], copy_stats={"copy_time": 1.5},
                             backup_name="nightly")
    again = layout.BackupInfo.parse(info.render())
    assert again == info
    parsed = layout.parse(info.render())
    assert again.fields() == {name: parsed.get(name) for name in layout.FIELDS}


def test_typed_backup_info_keeps_keys_it_does_not_know():
    info = layout.BackupInfo.parse(b"status=DONE\nnew_key_of_a_later_barman=7\n")
    assert (info.status, info.unknown) == ("DONE", {"new_key_of_a_later_barman": "7"})
    assert b"new_key_of_a_later_barman" not in info.render()
