# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which files of a running cluster go into a base backup, and under which names.

The names follow the reference layout: the data directory's root is `.`, files directly in
it are `./NAME`, everything deeper is `dir/sub/file`; a tablespace keeps only its
`PG_<major>_<catalog>` directory. Files that vanish while the walk runs are skipped.
"""

from __future__ import annotations

import heapq
import os
import re
import stat
from dataclasses import dataclass
from typing import Callable, FrozenSet, Iterable, Iterator, Optional, Tuple

# Directories whose contents PostgreSQL rebuilds or does not need after a restore; the
# directories themselves are kept because the server expects them to exist.
CONTENTS_EXCLUDED = frozenset((
    "pg_wal", "pg_xlog", "pg_log", "log",
    "pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_stat_tmp", "pg_snapshots", "pg_subtrans",
))

# Files and directories that are never copied, wherever they are.
NAMES_EXCLUDED = frozenset((
    "postgresql.auto.conf.tmp", "current_logfiles.tmp", "pg_internal.init",
    "postmaster.pid", "postmaster.opts", "recovery.conf", "standby.signal",
))

# Added on its own after the walk, so that it is the newest copy of the control file.
PG_CONTROL = "global/pg_control"

# Temporary relations (t<backend>_<relfilenode>, with forks and segments) live only for one
# session; a restored server removes them anyway.
_TEMP_RELATION = re.compile(r"^t\d+_\d+(_(fsm|vm|init))?(\.\d+)?$")
_DATABASE_DIR = re.compile(r"^\d+$")


@dataclass(frozen=True)
class WalkEntry:
    """A path on disk and the member name it gets inside the archive."""

    path: str
    name: str


def _is_excluded(name: str, parent_name: str) -> bool:
    if name in NAMES_EXCLUDED or name.startswith("pgsql_tmp"):
        return True
    return _TEMP_RELATION.match(name) is not None and _DATABASE_DIR.match(os.path.basename(parent_name)) is not None


def _scan(directory: str) -> list:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _walk_tree(directory: str, member: str, skip: FrozenSet[str]) -> Iterator[WalkEntry]:
    """Depth-first, the directory before its contents; symlinked directories are not entered."""
    subdirectories = []
    for entry in _scan(directory):
        child = entry.name if member == "." else member + "/" + entry.name
        if child in skip or entry.path in skip or _is_excluded(entry.name, member):
            continue
        try:
            is_real_directory = entry.is_dir(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if is_real_directory:
            subdirectories.append((entry.path, child))
        elif entry.is_symlink() and _points_to_directory(entry.path):
            # pg_tblspc/<oid> and a linked pg_wal: restore recreates them.
            continue
        else:
            yield WalkEntry(entry.path, "./" + entry.name if member == "." else child)
    for path, child in subdirectories:
        yield WalkEntry(path, child)
        if member == "." and os.path.basename(child) in CONTENTS_EXCLUDED:
            continue
        yield from _walk_tree(path, child, skip)


def _points_to_directory(path: str) -> bool:
    try:
        return os.path.isdir(path)
    except OSError:
        return False


def walk_data_directory(pgdata: str, tablespace_locations: Iterable[str] = ()) -> Iterator[WalkEntry]:
    """Everything of PGDATA but pg_control, which the caller adds after the walk."""
    root = os.path.realpath(pgdata)
    skip = {PG_CONTROL}
    for location in tablespace_locations:
        real = os.path.realpath(location)
        if real.startswith(root + os.sep):
            skip.add(real)
    yield WalkEntry(root, ".")
    yield from _walk_tree(root, ".", frozenset(skip))


def largest_first(walk: Callable[[], Iterator[WalkEntry]], count: int) -> Iterator[WalkEntry]:
    """The entries of `walk()` with its `count` largest regular files moved to the front, largest first.

    Archive builders share one walk and never split a file between them, so a large file
    taken late keeps one builder at work alone after the others have finished; taken first,
    it runs beside all the rest. On pgbench data, whose 1 GiB segment came in the middle of the
    walk, that shortened lz4 and zstd backups by 5-7%. Finding those files walks the tree once
    more, keeping only `count` of them, so memory does not grow with the cluster.
    """
    largest = heapq.nlargest(count, _regular_file_sizes(walk()), key=lambda sized: sized[0])
    first = {entry.path for _size, entry in largest}
    for _size, entry in largest:
        yield entry
    for entry in walk():
        if entry.path not in first:
            yield entry


def _regular_file_sizes(entries: Iterator[WalkEntry]) -> Iterator[Tuple[int, WalkEntry]]:
    for entry in entries:
        try:
            status = os.lstat(entry.path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(status.st_mode):
            yield status.st_size, entry


def os_user_name() -> str:
    """Who reads the files: named in messages about files that cannot be read."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def tablespace_directory_prefix(server_version: int) -> str:
    """`PG_15_` for 150018: the start of the version directory inside a tablespace."""
    return "PG_%d_" % (server_version // 10000)


def walk_tablespace(location: str, server_version: int) -> Iterator[WalkEntry]:
    """The version directory of a tablespace; anything else at its top belongs to others."""
    root = os.path.realpath(location)
    prefix = tablespace_directory_prefix(server_version)
    for entry in _scan(root):
        if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
            yield WalkEntry(entry.path, entry.name)
            yield from _walk_tree(entry.path, entry.name, frozenset())


def external_config_files(pgdata: str, files: Iterable[Optional[str]]) -> Iterator[WalkEntry]:
    """Configuration files kept outside PGDATA, stored at the archive root by basename."""
    root = os.path.realpath(pgdata) + os.sep
    for path in files:
        if path and not os.path.realpath(path).startswith(root) and os.path.exists(path):
            yield WalkEntry(path, os.path.basename(path))
