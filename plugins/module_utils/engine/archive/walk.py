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

from ..errors import PostgresError, UnreadableFileError

# Directories whose contents are not copied, at the root of PGDATA; the directories themselves
# are kept (empty) because the server expects them. PostgreSQL's base backup (basebackup.c,
# 13 to 18) leaves out these contents, which the server removes, rebuilds or zeroes at start:
# pg_stat_tmp (and, before 15, the stats_temp_directory setting, see walk_data_directory),
# pg_replslot, pg_dynshmem, pg_notify, pg_serial, pg_snapshots, pg_subtrans, and pg_wal, whose
# files a restore fetches from the WAL archive. The reference tool adds the server logs.
CONTENTS_EXCLUDED = frozenset((
    "pg_wal", "pg_xlog", "pg_log", "log",
    "pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial", "pg_stat_tmp", "pg_snapshots", "pg_subtrans",
))

# Files and directories that are never copied, wherever they are.
NAMES_EXCLUDED = frozenset((
    # PostgreSQL's base backup: temporary files of the server, the pid file, and what belongs
    # to the backup that made this cluster. A backup_label, tablespace_map or backup_manifest
    # in PGDATA is stale (a server restored from a backup keeps its backup_manifest): a
    # restore must find this backup's own, which are added after the walk.
    "postgresql.auto.conf.tmp", "current_logfiles.tmp", "postmaster.pid", "postmaster.opts",
    "backup_label", "tablespace_map", "backup_manifest", ".DS_Store",
    # Where the end of a recovery moves that backup's backup_label and tablespace_map.
    "backup_label.old", "tablespace_map.old",
    # The reference tool's: a restore decides itself whether the copy recovers as a standby.
    "recovery.conf", "standby.signal",
))
# Names starting with these: temporary files and directories, and the relation cache file
# with its temporary copies (pg_internal.init.<pid>), which the server rebuilds.
PREFIXES_EXCLUDED = ("pgsql_tmp", "pg_internal.init")

# Added on its own after the walk, so that it is the newest copy of the control file.
PG_CONTROL = "global/pg_control"

# Temporary relations (t<backend>_<relfilenode>, with forks and segments) live only for one
# session; a restored server removes them anyway.
_TEMP_RELATION = re.compile(r"^t\d+_\d+(_(fsm|vm|init))?(\.\d+)?$")
# A relation's files: <relfilenode>, then its fork and segment number.
_RELATION_FILE = re.compile(r"^(\d+)(?:_(fsm|vm|init))?(?:\.\d+)?$")
_DATABASE_DIR = re.compile(r"^\d+$")


@dataclass(frozen=True)
class WalkEntry:
    """A path on disk and the member name it gets inside the archive."""

    path: str
    name: str


def _is_excluded(name: str, parent_name: str, siblings: FrozenSet[str]) -> bool:
    if name in NAMES_EXCLUDED or name.startswith(PREFIXES_EXCLUDED):
        return True
    if _DATABASE_DIR.match(os.path.basename(parent_name)) is None:
        return False
    if _TEMP_RELATION.match(name) is not None:
        return True
    # An unlogged relation: a restored server rebuilds every fork but init from the init fork.
    relation = _RELATION_FILE.match(name)
    return relation is not None and relation.group(2) != "init" and relation.group(1) + "_init" in siblings


def _scan(directory: str) -> list:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError:
        raise UnreadableFileError(
            "cannot read directory %s as OS user %s: every directory under PGDATA and the tablespaces, and every "
            "directory a symbolic link there leads to, must be readable by the PostgreSQL OS user; fix its owner "
            "or mode, or remove it (or the link) if PostgreSQL does not need it" % (directory, os_user_name())
        ) from None


class _TreeWalk:
    """The walk of one tree: what it leaves out, and where each symbolic link leads.

    A symbolic link to a directory (other than pg_tblspc/<oid>, which a restore recreates) is
    stored as the directory it leads to, under the link's name: a linked pg_wal or log
    becomes an empty directory, any other its contents too, so that a restore gets them
    back. A link to a file, or one that leads nowhere, stays a link, as in the reference tool.
    """

    def __init__(self, skip: FrozenSet[str], tablespaces: Tuple[str, ...] = (),
                 contents_excluded: FrozenSet[str] = frozenset()) -> None:
        self.skip = skip
        self.tablespaces = tablespaces
        self.contents_excluded = contents_excluded

    def walk(self, directory: str, member: str, inside: Tuple[str, ...]) -> Iterator[WalkEntry]:
        """Depth-first, the directory before its contents; `inside` holds the real paths of
        the directories the walk is in, to refuse a link that leads back into one of them.
        Every path the walk meets is a real one: it starts at a real path and follows links by
        their real targets."""
        entries = _scan(directory)
        siblings = frozenset(entry.name for entry in entries)
        subdirectories = []
        for entry in entries:
            child = entry.name if member == "." else member + "/" + entry.name
            if child in self.skip or entry.path in self.skip or _is_excluded(entry.name, member, siblings):
                continue
            resolved = self._resolve(entry, member, inside)
            if resolved is None:
                continue
            path, is_directory = resolved
            if is_directory:
                subdirectories.append((path, child))
            else:
                yield WalkEntry(path, "./" + entry.name if member == "." else child)
        for path, child in subdirectories:
            yield WalkEntry(path, child)
            if child in self.contents_excluded:
                continue
            yield from self.walk(path, child, inside + (path,))

    def _resolve(self, entry: os.DirEntry, member: str, inside: Tuple[str, ...]) -> Optional[Tuple[str, bool]]:
        """(the path to read, whether it is a directory to enter), or None to leave it out."""
        try:
            if entry.is_dir(follow_symlinks=False):
                return entry.path, True
            if not entry.is_symlink():
                return entry.path, False
        except FileNotFoundError:
            return None
        if member == "pg_tblspc":
            return None  # a tablespace: archived on its own, and restore recreates the link
        target = os.path.realpath(entry.path)
        if not _points_to_directory(target):
            return entry.path, False
        if any(target == location or target.startswith(location + os.sep) for location in self.tablespaces):
            return None  # archived with its tablespace
        for real in inside:
            if real == target or real.startswith(target + os.sep):
                raise PostgresError(
                    "%s is a symbolic link to %s, which contains it: a backup would copy that directory without "
                    "end; remove the link or point it at a directory outside PGDATA and the tablespaces"
                    % (entry.path, target))
        return target, True


def _points_to_directory(path: str) -> bool:
    try:
        return os.path.isdir(path)
    except OSError:
        return False


def data_directory_member(pgdata: str, path: str) -> Optional[str]:
    """The member name of a directory inside PGDATA, given absolute or relative to PGDATA; None outside it."""
    root = os.path.realpath(pgdata)
    real = os.path.realpath(os.path.join(root, path))
    if not real.startswith(root + os.sep):
        return None
    return os.path.relpath(real, root).replace(os.sep, "/")


def walk_data_directory(pgdata: str, tablespace_locations: Iterable[str] = (),
                        contents_excluded: Iterable[Optional[str]] = ()) -> Iterator[WalkEntry]:
    """Everything of PGDATA but pg_control, which the caller adds after the walk.

    `contents_excluded`: more directories whose contents are left out, absolute or relative to
    PGDATA: the server's stats_temp_directory before PostgreSQL 15.
    """
    root = os.path.realpath(pgdata)
    tablespaces = tuple(os.path.realpath(location) for location in tablespace_locations)
    # Paths met in the walk are real ones: a tablespace is skipped inside PGDATA and behind a link.
    skip = {PG_CONTROL, *tablespaces}
    excluded = set(CONTENTS_EXCLUDED)
    for path in contents_excluded:
        member = data_directory_member(root, path) if path else None
        if member:
            excluded.add(member)
    yield WalkEntry(root, ".")
    yield from _TreeWalk(frozenset(skip), tablespaces, frozenset(excluded)).walk(root, ".", (root,))


def largest_first(walk: Callable[[], Iterator[WalkEntry]], count: int) -> Iterator[WalkEntry]:
    """The entries of `walk()` with its `count` largest regular files moved to the front, largest first.

    Archive builders share one walk and never split a file between them, so a large file
    taken late keeps one builder at work alone after the others have finished; taken first,
    it runs beside all the rest. On pgbench data, whose 1 GiB segment came in the middle of the
    walk, that shortened lz4 and zstd backups by 5-7%. Finding those files walks the tree once
    more, keeping only `count` of them, so memory does not grow with the cluster.
    """
    largest = heapq.nlargest(count, _regular_file_sizes(walk()), key=lambda sized: sized[0])
    # By entry, not path: a directory reached through a link holds the same paths under other names.
    first = {entry for _size, entry in largest}
    for _size, entry in largest:
        yield entry
    for entry in walk():
        if entry not in first:
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
            real = os.path.realpath(entry.path)
            yield from _TreeWalk(frozenset()).walk(entry.path, entry.name, (real,))


def external_config_files(pgdata: str, files: Iterable[Optional[str]]) -> Iterator[WalkEntry]:
    """Configuration files kept outside PGDATA, stored at the archive root by basename."""
    root = os.path.realpath(pgdata) + os.sep
    for path in files:
        if path and not os.path.realpath(path).startswith(root) and os.path.exists(path):
            yield WalkEntry(path, os.path.basename(path))
