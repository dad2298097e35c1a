# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""file_walk.py on a directory shaped like a PGDATA with a tablespace outside it.

Reference (sections a and b): the root is `.`, root files are `./NAME`, deeper entries have
no `./` prefix; the contents (not the directories) of pg_wal, pg_replslot and friends are
excluded at the root; postmaster.pid, pgsql_tmp*, pg_internal.init and temp relations are
excluded anywhere; pg_tblspc/<oid> symlinks are not stored; pg_control is added separately;
a tablespace keeps only its PG_<major>_<catalog> directory.

PostgreSQL's base backup (basebackup.c, 13 to 18) also leaves out a stale backup_label,
tablespace_map and backup_manifest, pg_internal.init* and the forks of unlogged relations
but their init fork, and before 15 the contents of stats_temp_directory; so does the walk.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive.walk import (
    PG_CONTROL,
    WalkEntry,
    external_config_files,
    largest_first,
    tablespace_directory_prefix,
    walk_data_directory,
    walk_tablespace,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive import walk as walk_module
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import PostgresError, UnreadableFileError
from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.files import write_file

PG15 = 150018


@pytest.fixture
def cluster(tmp_path):
    """A PGDATA and a tablespace; returns (pgdata, tablespace location)."""
    pgdata = str(tmp_path / "pgdata")
    tablespace = str(tmp_path / "ts1")
    for name in (
        "PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "backup_label", "tablespace_map",
        "backup_manifest", "backup_label.old", "tablespace_map.old", ".DS_Store",
        "postmaster.pid", "postmaster.opts", "standby.signal", "recovery.conf", "postgresql.auto.conf.tmp",
        "current_logfiles.tmp", "current_logfiles",
        "global/pg_control", "global/1262", "global/pg_internal.init", "global/pg_internal.init.4242",
        "base/1/1259", "base/5/1259", "base/5/1259_fsm", "base/5/16384.1", "base/5/t3_16384", "base/5/t3_16384_fsm",
        "base/5/t12_5000.2", "base/5/pg_internal.init", "base/5/pg_internal.init.17", "base/5/PG_VERSION",
        "base/5/16400", "base/5/16400.1", "base/5/16400_fsm", "base/5/16400_vm", "base/5/16400_init",
        "base/5/16500_init", "base/5/1640", "base/5/backup_manifest",
        "base/pgsql_tmp/pgsql_tmp1234.0",
        "pg_wal/000000010000000000000001", "pg_wal/archive_status/000000010000000000000001.done",
        "pg_replslot/slot/state", "pg_stat_tmp/global.stat", "pg_stat/pgstat.stat",
        "pg_dynshmem/mmap.1", "pg_notify/0000", "pg_serial/0000", "pg_snapshots/0000-1", "pg_subtrans/0000",
        "pg_log/postgresql.log", "log/postgresql.log", "pg_xact/0000", "pg_logical/replorigin_checkpoint",
    ):
        write_file(os.path.join(pgdata, name))
    os.makedirs(os.path.join(pgdata, "pg_tblspc"))
    os.makedirs(os.path.join(pgdata, "pg_commit_ts"))
    write_file(os.path.join(tablespace, "PG_15_202209061", "5", "16385"))
    write_file(os.path.join(tablespace, "PG_15_202209061", "5", "t4_16390"))
    for name in ("16391", "16391_vm", "16391_init", "pg_internal.init", "backup_label"):
        write_file(os.path.join(tablespace, "PG_15_202209061", "5", name))
    write_file(os.path.join(tablespace, "PG_15_202209061", "pgsql_tmp", "pgsql_tmp99.1"))
    write_file(os.path.join(tablespace, "PG_14_202107181", "5", "16385"))
    write_file(os.path.join(tablespace, "lost+found", "junk"))
    write_file(os.path.join(tablespace, "README"))
    os.symlink(tablespace, os.path.join(pgdata, "pg_tblspc", "16384"))
    return pgdata, tablespace


EXPECTED_DATA_NAMES = [
    ".",
    "./PG_VERSION",
    "./current_logfiles",
    "./postgresql.auto.conf",
    "./postgresql.conf",
    "base",
    "base/1",
    "base/1/1259",
    "base/5",
    "base/5/1259",
    "base/5/1259_fsm",
    "base/5/16384.1",
    "base/5/1640",
    "base/5/16400_init",
    "base/5/16500_init",
    "base/5/PG_VERSION",
    "global",
    "global/1262",
    "log",
    "pg_commit_ts",
    "pg_dynshmem",
    "pg_log",
    "pg_logical",
    "pg_logical/replorigin_checkpoint",
    "pg_notify",
    "pg_replslot",
    "pg_serial",
    "pg_snapshots",
    "pg_stat",
    "pg_stat/pgstat.stat",
    "pg_stat_tmp",
    "pg_subtrans",
    "pg_tblspc",
    "pg_wal",
    "pg_xact",
    "pg_xact/0000",
]


def test_data_directory_member_names_and_exclusions(cluster):
    pgdata, tablespace = cluster
    entries = list(walk_data_directory(pgdata, [tablespace]))
    assert [entry.name for entry in entries] == EXPECTED_DATA_NAMES


def test_paths_point_at_the_files_of_their_member_names(cluster):
    pgdata, tablespace = cluster
    for entry in walk_data_directory(pgdata, [tablespace]):
        relative = "" if entry.name == "." else entry.name[2:] if entry.name.startswith("./") else entry.name
        assert entry.path == os.path.join(os.path.realpath(pgdata), relative).rstrip("/")
        assert os.path.lexists(entry.path)


def test_pg_control_is_not_in_the_walk(cluster):
    pgdata = cluster[0]
    names = [entry.name for entry in walk_data_directory(pgdata)]
    assert PG_CONTROL == "global/pg_control"
    assert PG_CONTROL not in names and "./global/pg_control" not in names
    assert "global/1262" in names


def test_tablespace_symlink_is_not_stored_nor_followed(cluster):
    pgdata = cluster[0]
    names = [entry.name for entry in walk_data_directory(pgdata)]
    assert "pg_tblspc" in names
    assert not [name for name in names if name.startswith("pg_tblspc/")]
    assert not [name for name in names if "16385" in name or "PG_15_" in name]


def test_directories_come_before_their_contents(cluster):
    pgdata = cluster[0]
    seen = set()
    for entry in walk_data_directory(pgdata):
        parent = os.path.dirname(entry.name) or "."
        assert parent in seen or entry.name == ".", entry.name
        seen.add(entry.name)


def test_contents_exclusion_is_anchored_at_the_root(tmp_path):
    """`pg_wal/*` and `log/*` are anchored to PGDATA: a deeper `log` directory keeps its files."""
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "pg_wal", "000000010000000000000001"))
    write_file(os.path.join(pgdata, "pg_logical", "log", "keep"))
    write_file(os.path.join(pgdata, "base", "5", "pg_wal"))
    names = [entry.name for entry in walk_data_directory(pgdata)]
    assert names == [".", "base", "base/5", "base/5/pg_wal", "pg_logical", "pg_logical/log", "pg_logical/log/keep", "pg_wal"]


def test_excluded_names_anywhere(tmp_path):
    pgdata = str(tmp_path / "pgdata")
    for name in ("base/5/postmaster.pid", "base/5/pg_internal.init", "base/pgsql_tmp_other/x", "global/pgsql_tmp/y",
                 "base/5/t3_16384_vm", "base/5/t3_16384_init", "base/5/t3_16384.12", "base/5/16384_t1", "base/5/t3"):
        write_file(os.path.join(pgdata, name))
    names = [entry.name for entry in walk_data_directory(pgdata)]
    # t3 and 16384_t1 are not temporary relations (t<backend>_<relfilenode>)
    assert names == [".", "base", "base/5", "base/5/16384_t1", "base/5/t3", "global"]


@pytest.mark.parametrize("name", ["backup_label", "tablespace_map", "backup_manifest", "backup_label.old",
                                  "tablespace_map.old", "postmaster.opts", "current_logfiles.tmp",
                                  "postgresql.auto.conf.tmp", "pg_internal.init.123", ".DS_Store", "pgsql_tmp9.1"])
def test_stale_and_temporary_files_are_left_out_at_any_depth(tmp_path, name):
    pgdata = str(tmp_path / "pgdata")
    for folder in ("", "base/5", "global", "pg_logical"):
        write_file(os.path.join(pgdata, folder, name))
    write_file(os.path.join(pgdata, "global", "1262"))
    names = [entry.name for entry in walk_data_directory(pgdata)]
    assert names == [".", "base", "base/5", "global", "global/1262", "pg_logical"]


def test_unlogged_relations_keep_only_their_init_fork(tmp_path):
    pgdata = str(tmp_path / "pgdata")
    for name in ("16400", "16400.1", "16400.2", "16400_fsm", "16400_vm", "16400_init",  # unlogged
                 "16401", "16401_fsm", "16401.1",  # logged: no init fork
                 "1640", "164000", "16400_foo"):  # other relfilenodes, and a name that is no relation file
        write_file(os.path.join(pgdata, "base", "5", name))
    write_file(os.path.join(pgdata, "pg_logical", "16400"))
    write_file(os.path.join(pgdata, "pg_logical", "16400_init"))
    names = [entry.name for entry in walk_data_directory(pgdata)]
    assert names == [".", "base", "base/5", "base/5/1640", "base/5/164000", "base/5/16400_foo", "base/5/16400_init",
                     "base/5/16401", "base/5/16401.1", "base/5/16401_fsm",
                     "pg_logical", "pg_logical/16400", "pg_logical/16400_init"]


@pytest.mark.parametrize("setting", ["stats", "./stats", "{pgdata}/stats", "{pgdata}/base/../stats"])
def test_contents_of_the_stats_temp_directory_before_15_are_left_out(tmp_path, setting):
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "stats", "global.stat"))
    write_file(os.path.join(pgdata, "base", "5", "1259"))
    names = [entry.name for entry in walk_data_directory(pgdata, (), [setting.format(pgdata=pgdata)])]
    assert names == [".", "base", "base/5", "base/5/1259", "stats"]


@pytest.mark.parametrize("setting", [None, "", "/run/postgresql/13-main.pg_stat_tmp", "../elsewhere", "."])
def test_a_stats_temp_directory_outside_pgdata_changes_nothing(tmp_path, setting):
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "stats", "global.stat"))
    names = [entry.name for entry in walk_data_directory(pgdata, (), [setting])]
    assert names == [".", "stats", "stats/global.stat"]


def test_tablespace_inside_pgdata_is_skipped(tmp_path):
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "PG_VERSION"))
    write_file(os.path.join(pgdata, "inside_ts", "PG_15_202209061", "5", "16385"))
    assert [entry.name for entry in walk_data_directory(pgdata, [os.path.join(pgdata, "inside_ts")])] == [".", "./PG_VERSION"]
    assert "inside_ts" in [entry.name for entry in walk_data_directory(pgdata)]


def test_pgdata_given_through_a_symlink_is_walked_at_its_real_path(cluster, tmp_path):
    pgdata = cluster[0]
    link = str(tmp_path / "link-to-pgdata")
    os.symlink(pgdata, link)
    entries = list(walk_data_directory(link))
    assert [entry.name for entry in entries] == EXPECTED_DATA_NAMES
    assert entries[0] == WalkEntry(os.path.realpath(pgdata), ".")


# --- symbolic links inside PGDATA ---------------------------------------------------------------------
# A link to a directory is stored as that directory, under the link's name (its contents too,
# unless they are excluded); links in pg_tblspc are left to the tablespaces; a link to a file,
# or to nothing, stays a link, as in the reference tool.


def test_symlinked_directories_whose_contents_are_excluded_become_empty_directories(tmp_path):
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "PG_VERSION"))
    for name in ("pg_wal", "log", "pg_stat_tmp", "pg_replslot"):
        write_file(str(tmp_path / ("elsewhere-" + name) / "file"))
        os.symlink(str(tmp_path / ("elsewhere-" + name)), os.path.join(pgdata, name))
    entries = list(walk_data_directory(pgdata))
    assert [entry.name for entry in entries] == [".", "./PG_VERSION", "log", "pg_replslot", "pg_stat_tmp", "pg_wal"]
    # the directory the link leads to, so that the archive stores a directory with its mode
    assert entries[-1].path == os.path.realpath(str(tmp_path / "elsewhere-pg_wal"))


def test_a_symlinked_directory_is_stored_with_its_contents(tmp_path):
    pgdata = str(tmp_path / "pgdata")
    outside = tmp_path / "disk2" / "pg_xact"
    write_file(str(outside / "0000"), b"x" * 10)
    write_file(str(outside / "sub" / "0001"))
    write_file(str(outside / "postmaster.pid"))  # exclusions apply behind the link too
    write_file(os.path.join(pgdata, "user", "notes.txt"))
    os.symlink(str(outside), os.path.join(pgdata, "pg_xact"))
    os.symlink(os.path.join(pgdata, "user"), os.path.join(pgdata, "user_again"))  # a link inside PGDATA
    entries = list(walk_data_directory(pgdata))
    assert [entry.name for entry in entries] == [
        ".", "pg_xact", "pg_xact/0000", "pg_xact/sub", "pg_xact/sub/0001",
        "user", "user/notes.txt", "user_again", "user_again/notes.txt"]
    paths = {entry.name: entry.path for entry in entries}
    assert paths["pg_xact"] == os.path.realpath(str(outside))
    assert paths["pg_xact/sub/0001"] == os.path.join(os.path.realpath(str(outside)), "sub", "0001")
    assert paths["user_again/notes.txt"] == paths["user/notes.txt"]


def test_a_symlinked_directory_inside_a_tablespace_is_stored_with_its_contents(tmp_path):
    location = tmp_path / "ts1"
    write_file(str(tmp_path / "disk2" / "16385"))
    os.makedirs(str(location / "PG_15_202209061"))
    os.symlink(str(tmp_path / "disk2"), str(location / "PG_15_202209061" / "5"))
    assert [entry.name for entry in walk_tablespace(str(location), PG15)] == [
        "PG_15_202209061", "PG_15_202209061/5", "PG_15_202209061/5/16385"]


def test_links_to_files_and_dangling_links_stay_links(tmp_path):
    pgdata = str(tmp_path / "pgdata")
    write_file(str(tmp_path / "ssl" / "server.crt"))
    write_file(os.path.join(pgdata, "PG_VERSION"))
    os.symlink(str(tmp_path / "ssl" / "server.crt"), os.path.join(pgdata, "server.crt"))
    os.symlink(str(tmp_path / "nowhere"), os.path.join(pgdata, "gone"))
    entries = list(walk_data_directory(pgdata))
    assert [entry.name for entry in entries] == [".", "./PG_VERSION", "./gone", "./server.crt"]
    assert all(os.path.islink(entry.path) for entry in entries[2:])


def test_a_link_to_a_tablespace_is_left_to_the_tablespace(cluster):
    pgdata, tablespace = cluster
    os.symlink(tablespace, os.path.join(pgdata, "ts_shortcut"))
    os.symlink(os.path.join(tablespace, "PG_15_202209061"), os.path.join(pgdata, "pg_logical", "deeper"))
    names = [entry.name for entry in walk_data_directory(pgdata, [tablespace])]
    assert names == EXPECTED_DATA_NAMES


def test_a_link_to_a_folder_that_holds_a_tablespace_skips_the_tablespace(cluster, tmp_path):
    pgdata, tablespace = cluster
    shared = tmp_path / "shared"
    write_file(str(shared / "kept"))
    write_file(str(shared / "ts2" / "PG_15_202209061" / "5" / "16400"))  # another tablespace's location
    os.symlink(tablespace, str(shared / "ts_link"))
    os.symlink(str(shared), os.path.join(pgdata, "pg_logical", "shared"))
    os.symlink(tablespace, os.path.join(pgdata, "direct"))
    names = [entry.name for entry in walk_data_directory(pgdata, [tablespace, str(shared / "ts2")])]
    assert [name for name in names if "shared" in name or "direct" in name] == ["pg_logical/shared", "pg_logical/shared/kept"]


def test_an_unreadable_directory_fails_with_its_path_and_the_fix(tmp_path, monkeypatch):
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "base", "5", "1259"))
    real_scandir = os.scandir

    def refuse(path):
        if path.endswith("base"):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    # Tests run as root, whom directory modes do not stop.
    monkeypatch.setattr(walk_module.os, "scandir", refuse)
    with pytest.raises(UnreadableFileError) as caught:
        list(walk_data_directory(pgdata))
    message = str(caught.value)
    assert message.startswith("cannot read directory %s as OS user " % os.path.join(os.path.realpath(pgdata), "base"))
    assert "fix its owner or mode" in message


@pytest.mark.parametrize("link, target", [
    ("loop", "{pgdata}"),                   # PGDATA itself
    ("base/5/up", "{pgdata}/base"),         # a directory the walk is in
    ("root", "/"),                          # a directory that holds PGDATA
    ("a/to_b", "{pgdata}/b"),               # two links that lead into each other
])
def test_a_link_that_leads_back_into_the_walk_fails_clearly(tmp_path, link, target):
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "base", "5", "1259"))
    write_file(os.path.join(pgdata, "b", "file"))
    os.makedirs(os.path.join(pgdata, "a"), exist_ok=True)
    os.symlink(os.path.join(pgdata, "a"), os.path.join(pgdata, "b", "to_a"))
    os.symlink(target.format(pgdata=pgdata), os.path.join(pgdata, link))
    with pytest.raises(PostgresError) as raised:
        list(walk_data_directory(pgdata))
    message = str(raised.value)
    assert " is a symbolic link to " in message and "remove the link" in message


def test_walk_of_a_vanished_directory_is_empty_not_an_error(tmp_path):
    pgdata = str(tmp_path / "pgdata")
    write_file(os.path.join(pgdata, "base", "5", "1259"))
    walk = walk_data_directory(pgdata)
    assert next(walk).name == "."
    assert next(walk).name == "base"
    os.remove(os.path.join(pgdata, "base", "5", "1259"))
    os.rmdir(os.path.join(pgdata, "base", "5"))
    assert list(walk) == []


def test_tablespace_keeps_only_its_version_directory(cluster):
    tablespace = cluster[1]
    entries = list(walk_tablespace(tablespace, PG15))
    assert [entry.name for entry in entries] == ["PG_15_202209061", "PG_15_202209061/5", "PG_15_202209061/5/16385",
                                                 "PG_15_202209061/5/16391_init"]
    assert entries[2].path == os.path.join(os.path.realpath(tablespace), "PG_15_202209061", "5", "16385")


@pytest.mark.parametrize("version, prefix", [(150018, "PG_15_"), (130020, "PG_13_"), (170002, "PG_17_"), (180000, "PG_18_")])
def test_tablespace_directory_prefix(version, prefix):
    assert tablespace_directory_prefix(version) == prefix


def test_external_config_files_are_stored_by_basename(tmp_path, cluster):
    pgdata = cluster[0]
    etc = tmp_path / "etc"
    write_file(str(etc / "postgresql.conf"))
    write_file(str(etc / "pg_hba.conf"))
    files = [str(etc / "postgresql.conf"), str(etc / "pg_hba.conf"), str(etc / "pg_ident.conf"),
             os.path.join(pgdata, "postgresql.conf"), None]
    assert list(external_config_files(pgdata, files)) == [
        WalkEntry(str(etc / "postgresql.conf"), "postgresql.conf"),
        WalkEntry(str(etc / "pg_hba.conf"), "pg_hba.conf"),
    ]


def test_largest_first_moves_the_largest_files_to_the_front_and_keeps_every_entry_once(tmp_path):
    pgdata = tmp_path / "pgdata"
    sizes = {"base/5/1247": 10, "base/5/16398": 9000, "base/5/16398.1": 3000, "base/5/16402": 5000,
             "global/1260": 20, "PG_VERSION": 3}
    for name, size in sizes.items():
        write_file(str(pgdata / name), b"x" * size)
    walk = list(walk_data_directory(str(pgdata)))

    ordered = list(largest_first(lambda: walk_data_directory(str(pgdata)), 3))

    assert [entry.name for entry in ordered[:3]] == ["base/5/16398", "base/5/16402", "base/5/16398.1"]
    assert sorted(ordered, key=lambda entry: entry.name) == sorted(walk, key=lambda entry: entry.name)
    assert ordered[3:] == [entry for entry in walk if entry not in ordered[:3]]


def test_largest_first_never_moves_directories_and_hands_out_what_its_first_pass_found(tmp_path):
    pgdata = tmp_path / "pgdata"
    write_file(str(pgdata / "base/5/16398"), b"x" * 100)
    write_file(str(pgdata / "base/5/16399"), b"x" * 50)
    passes = []

    def walk():
        passes.append(True)
        if len(passes) == 2:  # the second pass runs after a file was dropped
            os.remove(str(pgdata / "base/5/16399"))
        return walk_data_directory(str(pgdata))

    names = [entry.name for entry in largest_first(walk, 10)]

    # A file dropped meanwhile is still handed out (the archive skips a file that vanished);
    # the directories keep their places in the walk.
    assert names == ["base/5/16398", "base/5/16399", ".", "base", "base/5"]


def test_largest_first_keeps_a_large_file_reached_twice_through_a_link(tmp_path):
    pgdata = tmp_path / "pgdata"
    write_file(str(pgdata / "user" / "big"), b"x" * 1000)
    write_file(str(pgdata / "user" / "small"), b"x")
    os.symlink(str(pgdata / "user"), str(pgdata / "user_again"))
    ordered = [entry.name for entry in largest_first(lambda: walk_data_directory(str(pgdata)), 1)]
    assert sorted(ordered) == sorted(entry.name for entry in walk_data_directory(str(pgdata)))
    assert ordered[0] == "user/big" and "user_again/big" in ordered
