# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Extraction of one decoded tar stream into a folder, refusing what could write outside it.

A member is refused when its name is absolute or holds `..`, when it is a link whose target
lies outside the folder, or when it is a device or a FIFO: a backup holds none of these, so
one is a sign of a damaged or forged archive. Files are created without following a symlink
at their own name, and only in directories that resolve inside the folder. The
`pg_tblspc/<oid>` links are not taken from an archive: the restore makes them point at the
tablespaces' new locations.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Set, Tuple

from ..errors import PgCloudError
from .tar_reader import (DEVICE, DIRECTORY, FIFO, REGULAR, SYMLINK, Member, TarFormatError, TarReader,
                         TarStream, TruncatedError, UnknownMemberError)

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# Pieces (up to tar_reader.READ_SIZE each) waiting for the writing thread.
WRITE_DEPTH = 16
_UTIME_OF_DESCRIPTOR = os.utime in os.supports_fd


class RestoreError(PgCloudError):
    """A restore that could not complete; what it wrote has been removed (or the message says)."""


class UnsafeArchiveError(RestoreError):
    """An archive member that would be written outside the restore's folder."""


@dataclass
class Folder:
    """A folder archives are extracted into, shared by the threads extracting into it."""

    root: str
    directories: List[Tuple[str, int, float]] = field(default_factory=list)
    checked: Set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.root = os.path.realpath(self.root)

    def inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)


@dataclass
class Extracted:
    files: int = 0
    bytes: int = 0


def member_path(folder: Folder, name: str) -> str:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise UnsafeArchiveError("archive member %r has an absolute path or a '..': refused" % name)
    return os.path.join(folder.root, *parts) if parts else folder.root


def _parent_checked(folder: Folder, path: str, name: str) -> None:
    """Create the member's parent directories, and check that they resolve inside the folder."""
    parent = os.path.dirname(path)
    if parent in folder.checked:
        return
    os.makedirs(parent, mode=0o700, exist_ok=True)
    if not folder.inside(os.path.realpath(parent)):
        raise UnsafeArchiveError("archive member %r would be written outside %s through a link: refused"
                                 % (name, folder.root))
    with folder.lock:
        folder.checked.add(parent)


class FileWriter:
    """Writes the files of one archive on a thread of its own, so that writing overlaps the
    decoding and parsing of what follows (both release the GIL only in part); at most `depth`
    pieces wait. An error while writing is raised by the next call after it.

    Items: ("file", path, data, mode, mtime) for a file whose data is at hand, or ("open",
    path), ("data", data)..., ("close", mode, mtime) for a larger one."""

    def __init__(self, depth: int = WRITE_DEPTH) -> None:
        self._queue: "queue.Queue[Optional[Tuple[Any, ...]]]" = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._descriptor: Optional[int] = None
        self._path = ""
        self._thread = threading.Thread(target=self._run, name="pgcloud-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self._apply(item)
            except BaseException as error:  # raised in the extracting thread
                self._error = error
                self._close_descriptor()
            finally:
                self._queue.task_done()

    def _apply(self, item: Tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "data":
            self._write(item[1])
        elif kind == "file":
            self._open(item[1])
            self._write(item[2])
            self._close(item[3], item[4])
        elif kind == "open":
            self._open(item[1])
        else:
            self._close(item[1], item[2])

    def _open(self, path: str) -> None:
        self._descriptor = os.open(path, _WRITE_FLAGS, 0o600)
        self._path = path

    def _write(self, data: memoryview) -> None:
        while data:
            data = data[os.write(self._descriptor, data):]  # type: ignore[arg-type]

    def _close(self, mode: int, mtime: float) -> None:
        descriptor = self._descriptor
        os.fchmod(descriptor, mode)  # type: ignore[arg-type]
        if _UTIME_OF_DESCRIPTOR:
            os.utime(descriptor, (mtime, mtime))  # type: ignore[arg-type]
            self._close_descriptor()
        else:
            self._close_descriptor()
            os.utime(self._path, (mtime, mtime))

    def _close_descriptor(self) -> None:
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)

    def put(self, *item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def sync(self) -> None:
        """Wait until everything queued is written."""
        self._queue.join()
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _write_file(tar: TarReader, member: Member, path: str, counts: Extracted, writer: FileWriter) -> None:
    pieces = tar.data(member)
    first = next(pieces, memoryview(b""))
    if len(first) == member.size:  # the whole file is in one decoded piece: one item
        writer.put("file", path, first, member.mode, member.mtime)
        for _padding in pieces:
            pass
    else:
        writer.put("open", path)
        writer.put("data", first)
        for piece in pieces:
            writer.put("data", piece)
        writer.put("close", member.mode, member.mtime)
    counts.bytes += member.size
    counts.files += 1


def _write_link(folder: Folder, member: Member, path: str, writer: FileWriter) -> None:
    if member.kind == SYMLINK:
        if os.path.isabs(member.linkname):
            raise UnsafeArchiveError("archive member %r is a link to the absolute path %r, outside the restore: "
                                     "refused" % (member.name, member.linkname))
        resolved = os.path.realpath(os.path.join(os.path.dirname(path), member.linkname))
        if not folder.inside(resolved):
            raise UnsafeArchiveError("archive member %r links to %r, outside %s: refused"
                                     % (member.name, member.linkname, folder.root))
        os.symlink(member.linkname, path)
        return
    source = member_path(folder, member.linkname)
    writer.sync()  # the file linked to may still be in the writer's queue
    if not folder.inside(os.path.realpath(source)):
        raise UnsafeArchiveError("archive member %r is a hard link to %r, outside %s: refused"
                                 % (member.name, member.linkname, folder.root))
    os.link(source, path, follow_symlinks=False)


def _is_tablespace_link(member: Member) -> bool:
    parts = [part for part in member.name.split("/") if part not in ("", ".")]
    return member.kind == SYMLINK and len(parts) == 2 and parts[0] == "pg_tblspc"


def _extract_member(tar: TarReader, folder: Folder, member: Member, counts: Extracted, writer: FileWriter) -> None:
    path = member_path(folder, member.name)
    if member.kind == DIRECTORY:
        if path != folder.root:
            _parent_checked(folder, path, member.name)
            os.makedirs(path, mode=0o700, exist_ok=True)
        with folder.lock:
            folder.directories.append((path, member.mode, member.mtime))
        return
    if path == folder.root:
        raise UnsafeArchiveError("archive member %r would replace the restore's folder itself" % member.name)
    if _is_tablespace_link(member):
        return
    if member.kind in (DEVICE, FIFO):
        raise UnsafeArchiveError("archive member %r is a device or a FIFO, which a backup never holds: refused"
                                 % member.name)
    _parent_checked(folder, path, member.name)
    if member.kind == REGULAR:
        _write_file(tar, member, path, counts, writer)
    else:
        _write_link(folder, member, path, writer)
        counts.files += 1


def extract_stream(read: Callable[[int], bytes], folder: Folder, label: str) -> Extracted:
    """Extract the tar stream that read(n) decodes into folder; `label` names it in errors."""
    counts = Extracted()
    writer = FileWriter()
    stream = TarStream(read)
    tar = TarReader(stream)
    try:
        for member in tar.members():
            _extract_member(tar, folder, member, counts, writer)
        stream.drain()  # the padding after the end marker, so that the whole object is read
    except TruncatedError:
        raise RestoreError("%s ends without the tar end marker: the archive is truncated" % label) from None
    except UnknownMemberError as error:
        raise UnsafeArchiveError("%s: refused" % error) from None
    except (TarFormatError, ValueError, EOFError) as error:
        raise RestoreError("%s is not a whole tar archive (%s): the backup is damaged" % (label, error)) from error
    finally:
        writer.finish()
    return counts


def finish_directories(folder: Folder) -> None:
    """Set the modes and times of the directories, deepest first, once their contents are written."""
    for path, mode, mtime in sorted(folder.directories, key=lambda item: item[0], reverse=True):
        os.chmod(path, mode if path != folder.root else 0o700)
        os.utime(path, (mtime, mtime))
