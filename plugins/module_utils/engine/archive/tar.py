# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tar archives written straight into compressed, uploaded objects.

Headers come from the standard library's tarfile (PAX format, as the reference tool);
file contents are copied here in large blocks, because tarfile's own copy loop reads 16 KiB
at a time. An archive group (`data` or a tablespace oid) may span several objects: the
first is `<base>.<ext>`, the next ones `<base>_0001.<ext>` and so on, each a complete tar
that the restore tools extract after the first.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import tarfile
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional

from .compression import EXTENSIONS, PassThrough, new_compressor
from .. import layout
from ..errors import UnreadableFileError
from .walk import WalkEntry, os_user_name
from .manifest import BackupManifest, ChecksummedReader, FileChecksum
from ..transfer.upload import UploadPool, WrittenObject

LOG = logging.getLogger("pgcloud.backup")
BLOCK = tarfile.BLOCKSIZE
# Reads of 256 KiB: each builder holds its read buffer, the checksum's copy of it and the
# compressed output at once; 1 MiB reads added 3 MiB to the peak RSS of a backup for no
# measurable speed (lz4 compresses whole 256 KB blocks either way).
READ_SIZE = 1 << 18
_ZEROS = bytes(READ_SIZE)


class _Names:
    """Caches uid/gid to name lookups, which are slow with NSS and repeat for every file."""

    def __init__(self) -> None:
        self._users: Dict[int, str] = {}
        self._groups: Dict[int, str] = {}

    def user(self, uid: int) -> str:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = ""
        return self._users[uid]

    def group(self, gid: int) -> str:
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = ""
        return self._groups[gid]


NAMES = _Names()


def tar_header(name: str, status: os.stat_result, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(status.st_mode)
    info.uid, info.gid = status.st_uid, status.st_gid
    info.uname, info.gname = NAMES.user(status.st_uid), NAMES.group(status.st_gid)
    info.mtime = status.st_mtime
    if stat.S_ISDIR(status.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(status.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, linkname
    else:
        info.type, info.size = tarfile.REGTYPE, status.st_size
    return info


class TarArchive:
    """One archive object: tar members, then one compression stream, then the writer.

    With a manifest, every regular file is listed in it under `manifest_prefix` + its member
    name (without the leading `./`), with the checksum of the bytes archived.
    """

    def __init__(self, writer, compression: Optional[str], manifest: Optional[BackupManifest] = None,
                 manifest_prefix: str = "") -> None:
        self.writer = writer
        self.manifest = manifest
        self.manifest_prefix = manifest_prefix
        self.key = writer.key
        self.compressor = new_compressor(compression)
        self.bytes_read = 0

    @property
    def stored_size(self) -> int:
        return self.writer.size

    def _emit(self, data: bytes) -> None:
        compressed = self.compressor.compress(data)
        if compressed:
            self.writer.write(compressed)

    def add(self, entry: WalkEntry) -> bool:
        """Add a file, directory or symlink; False if it vanished before it could be read."""
        try:
            status = os.lstat(entry.path)
            linkname = os.readlink(entry.path) if stat.S_ISLNK(status.st_mode) else ""
            if not stat.S_ISREG(status.st_mode):
                if stat.S_ISDIR(status.st_mode) or stat.S_ISLNK(status.st_mode):
                    self._emit(tar_header(entry.name, status, linkname).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                    return True
                return False  # sockets, fifos and devices have no place in a backup
            source = open(entry.path, "rb")
        except FileNotFoundError:
            return False
        except PermissionError:
            raise UnreadableFileError(
                "cannot read %s as OS user %s: every file under PGDATA and the tablespaces must be readable by "
                "the PostgreSQL OS user; fix its owner or mode (or remove it if PostgreSQL did not create it)"
                % (entry.path, os_user_name())
            ) from None
        with source:
            header = tar_header(entry.name, status)
            self._emit(header.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            checksum = self.manifest.new_checksum() if self.manifest is not None else None
            copied = self._copy(source if checksum is None else ChecksummedReader(source, checksum), header.size,
                                checksum)
        if copied < header.size:
            # As pg_basebackup does: the WAL replayed after a restore rewrites what changed.
            LOG.warning("%s shrank from %d to %d bytes while it was copied; the rest is zeros in the backup",
                        entry.path, header.size, copied)
        if checksum is not None and self.manifest is not None:
            self._list(self.manifest, entry.name, header.size, status.st_mtime, checksum)
        return True

    def _list(self, manifest: BackupManifest, name: str, size: int, mtime: float, checksum: FileChecksum) -> None:
        path = name[2:] if name.startswith("./") else name
        manifest.add(self.manifest_prefix + path, size, mtime, checksum.hexdigest())

    def _copy(self, source, size: int, checksum: Optional[FileChecksum] = None) -> int:
        """Exactly `size` bytes: a file that shrank meanwhile is padded, one that grew is cut.
        Returns the number of bytes read from the file."""
        if isinstance(self.compressor, PassThrough):
            copied = self.writer.write_from(source, size)
        else:
            copied = self._compress_from(source, size)
        self.bytes_read += copied
        remaining = size - copied
        while remaining:
            padding = min(READ_SIZE, remaining)
            self._emit(_ZEROS[:padding])
            if checksum is not None:  # the restored file holds these zeros too
                checksum.update(_ZEROS[:padding])
            remaining -= padding
        tail = size % BLOCK
        if tail:
            self._emit(bytes(BLOCK - tail))
        return copied

    def _compress_from(self, source, size: int) -> int:
        # A fresh bytes object per read rather than one reused buffer: google-crc32c takes bytes
        # only, and the copy of the buffer made for it cost more than the allocation (an lz4
        # backup of pgbench data took 5-10% longer in alternated runs).
        done = 0
        while done < size:
            data = source.read(min(READ_SIZE, size - done))
            if not data:
                break
            self._emit(data)
            done += len(data)
        return done

    def add_bytes(self, name: str, data: bytes, info: tarfile.TarInfo, listed: bool = True) -> None:
        """A member made in memory (backup_label; the manifest itself, which is not `listed`)."""
        if listed and self.manifest is not None:
            checksum = self.manifest.new_checksum()
            checksum.update(data)
            self._list(self.manifest, name, len(data), info.mtime, checksum)
        info.name, info.size, info.type = name, len(data), tarfile.REGTYPE
        self._emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self._emit(data)
        self.bytes_read += len(data)
        tail = len(data) % BLOCK
        if tail:
            self._emit(bytes(BLOCK - tail))

    def discard(self) -> None:
        """Drop the archive after a failure, giving its part buffer back to the pool."""
        self.writer.discard()

    def close(self) -> WrittenObject:
        self._emit(bytes(2 * BLOCK))
        final = self.compressor.finish()
        if final:
            self.writer.write(final)
        return self.writer.close()


class ArchiveGroup:
    """Names and counts the objects of one group (`data`, `16384`), shared by several builders."""

    def __init__(self, pool: UploadPool, folder_key: str, base: str, compression: Optional[str],
                 max_archive_size: int, manifest: Optional[BackupManifest] = None, manifest_prefix: str = "") -> None:
        self.pool = pool
        self.manifest = manifest
        self.manifest_prefix = manifest_prefix
        self.folder_key = folder_key
        self.base = base
        self.compression = compression
        self.max_archive_size = max_archive_size
        self.written: List[WrittenObject] = []
        self.bytes_read = 0
        self._next_number = 0
        self._lock = threading.Lock()

    def new_archive(self) -> TarArchive:
        with self._lock:
            number, self._next_number = self._next_number, self._next_number + 1
        key = "%s/%s" % (self.folder_key, layout.archive_name(self.base, number, EXTENSIONS[self.compression]))
        return TarArchive(self.pool.open(key), self.compression, self.manifest, self.manifest_prefix)

    def finish(self, archive: TarArchive) -> None:
        written = archive.close()
        with self._lock:
            self.written.append(written)
            self.bytes_read += archive.bytes_read

    def build(self, entries: Iterator[WalkEntry], builders: int,
              on_progress: Callable[[int], None] = lambda read: None,
              keep_last_open: bool = False) -> Optional[TarArchive]:
        """Archive every entry with `builders` threads, each filling its own objects.

        Compression releases the GIL, so two builders keep two cores busy; the walk is shared,
        so a builder that finishes a large file takes the next entry.

        With keep_last_open, the last builder to end among those that took an entry leaves its
        archive open and it is returned (None for an empty walk), for the caller to add the
        backup's last members to: one object fewer to store and for a restore to fetch and
        extract.
        """
        walk = _SharedWalk(entries)
        threads = [threading.Thread(target=self._run_builder, args=(walk, on_progress, keep_last_open),
                                    name="pgcloud-archive-%d" % i) for i in range(max(1, builders))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if walk.errors:
            for archive in walk.left_open:
                archive.discard()
            raise walk.errors[0]
        if walk.left_open:
            return walk.left_open[0]
        if not self.written and not keep_last_open:
            self.finish(self.new_archive())
        return None

    def _run_builder(self, walk: "_SharedWalk", on_progress: Callable[[int], None], keep_last_open: bool) -> None:
        archive: Optional[TarArchive] = None
        try:
            archive = self._fill(walk, on_progress)
            if archive is None:
                return
            last = walk.ends_last()
            if walk.stop.is_set():
                # Another builder failed: completing this upload would only delay the failure.
                archive.discard()
            elif keep_last_open and last:
                walk.left_open.append(archive)
            else:
                self.finish(archive)
        except BaseException as error:
            if archive is not None:
                archive.discard()
            walk.fail(error)

    def _fill(self, walk: "_SharedWalk", on_progress: Callable[[int], None]) -> Optional[TarArchive]:
        """Add entries of the walk until it ends; the archive being filled then, or None if none was taken.

        On an error the archive being filled is discarded here, and the error goes on."""
        archive: Optional[TarArchive] = None
        try:
            # A builder holds an archive from its first entry on (a full one is replaced at once),
            # so `archive` tells whether it is counted among the holders.
            while True:
                entry = walk.next_entry(archive is not None)
                if entry is None:
                    break
                if archive is not None and archive.stored_size > self.max_archive_size:
                    self.finish(archive)
                    archive = None
                if archive is None:
                    archive = self.new_archive()
                before = archive.bytes_read
                archive.add(entry)
                on_progress(archive.bytes_read - before)
        except BaseException:
            if archive is not None:
                archive.discard()
            raise
        return archive

    def keys(self) -> List[str]:
        return sorted(item.key for item in self.written)

    def stored_bytes(self) -> int:
        return sum(item.size for item in self.written)


class _SharedWalk:
    """The walk that the builders of one group share, and what they report back."""

    def __init__(self, entries: Iterator[WalkEntry]) -> None:
        self._entries = entries
        self._lock = threading.Lock()
        self.stop = threading.Event()
        # Builders holding an archive, counted as they take their first entry (under the walk's
        # lock), so that once the walk is over the count is final.
        self._holders = 0
        self.left_open: List[TarArchive] = []
        self.errors: List[BaseException] = []

    def next_entry(self, holding: bool) -> Optional[WalkEntry]:
        with self._lock:
            entry = None if self.stop.is_set() else next(self._entries, None)
            if entry is not None and not holding:
                self._holders += 1
            return entry

    def ends_last(self) -> bool:
        """Whether the builder calling this, which holds an archive, is the last to end."""
        with self._lock:
            self._holders -= 1
            return self._holders == 0

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.stop.set()


def label_header(pgdata: os.stat_result) -> tarfile.TarInfo:
    """backup_label belongs to PGDATA's owner, so that a restore run as root leaves it usable."""
    info = tarfile.TarInfo("backup_label")
    info.mode, info.uid, info.gid, info.mtime = 0o600, pgdata.st_uid, pgdata.st_gid, time.time()
    info.uname, info.gname = NAMES.user(pgdata.st_uid), NAMES.group(pgdata.st_gid)
    return info
