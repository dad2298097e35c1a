# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`backup_manifest`: PostgreSQL's own list of a backup's files, so that the standard
`pg_verifybackup` can check a restored copy.

The format is the one pg_basebackup writes (version 1, which every PostgreSQL from 13 on
reads): JSON with one line per file (path, size, modification time, checksum), the WAL range
the backup needs, and a SHA-256 of the manifest up to the line that carries it. The
checksums are computed from the bytes as they are archived (see TarArchive), so that each
file is read once.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from dataclasses import dataclass
from typing import List, Optional

from ..config import MANIFEST_CHECKSUMS as ALGORITHMS
from ..errors import MissingDependencyError

try:
    import google_crc32c
except ImportError as error:  # pragma: no cover - depends on the host
    google_crc32c = None
    CRC32C_IMPORT_ERROR: Optional[ImportError] = error
else:
    CRC32C_IMPORT_ERROR = None

MANIFEST_NAME = "backup_manifest"
# The largest copy FileChecksum makes for google-crc32c, whatever the size of the data.
CRC_COPY_SIZE = 256 << 10


class FileChecksum:
    """The running checksum of one file, in one of the manifest's algorithms."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        if algorithm == "SHA256":
            self._sha256 = hashlib.sha256()
        else:
            require_algorithm(algorithm)
            self._crc = 0

    def update(self, data) -> None:
        if self.algorithm == "SHA256":
            self._sha256.update(data)
        elif isinstance(data, bytes):
            self._crc = google_crc32c.extend(self._crc, data)
        else:
            # The C extension takes bytes only: a copy, still far cheaper than SHA-256, made in
            # slices, since an uncompressed archive reads straight into a 20 MiB part buffer and
            # a whole copy of it per builder would add 40 MiB to the peak memory.
            with memoryview(data) as view, view.cast("B") as octets:
                for start in range(0, len(octets), CRC_COPY_SIZE):
                    self._crc = google_crc32c.extend(self._crc, bytes(octets[start:start + CRC_COPY_SIZE]))

    def hexdigest(self) -> str:
        if self.algorithm == "SHA256":
            return self._sha256.hexdigest()
        # PostgreSQL stores the CRC as a uint32 in memory and prints those bytes, so the text
        # is in the machine's byte order (little-endian on x86 and arm64 alike).
        return struct.pack("=I", self._crc).hex()


def crc32c_available() -> bool:
    """Whether google-crc32c runs in C here (its pure Python fallback is far too slow)."""
    return google_crc32c is not None and getattr(google_crc32c, "implementation", "") == "c"


def default_algorithm() -> str:
    """CRC32C, as pg_basebackup, where it is cheap; SHA256 otherwise.

    On 1.5 GiB of pgbench data archived with lz4, SHA-256 (1.8 GB/s on one core with the
    SHA extensions) cost 1.2 s of the engine's 3.1 s of CPU; CRC32C costs under 0.1 s.
    """
    return "CRC32C" if crc32c_available() else "SHA256"


def require_algorithm(algorithm: str) -> None:
    """CRC32C needs the C implementation of google-crc32c: the pure Python one is far too slow."""
    if algorithm not in ALGORITHMS:
        raise ValueError("no manifest checksum algorithm %r" % algorithm)
    if algorithm == "CRC32C" and not crc32c_available():
        raise MissingDependencyError("google-crc32c (with its C extension)", "CRC32C manifest checksums",
                                     CRC32C_IMPORT_ERROR)


class ChecksummedReader:
    """A file read through `readinto` or `read`, whose bytes also feed a checksum."""

    def __init__(self, source, checksum: FileChecksum) -> None:
        self.source = source
        self.checksum = checksum

    def readinto(self, buffer) -> int:
        count = self.source.readinto(buffer)
        if count:
            with memoryview(buffer) as view:
                self.checksum.update(view[:count])
        return count or 0

    def read(self, size: int) -> bytes:
        data = self.source.read(size)
        if data:
            self.checksum.update(data)
        return data


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    mtime: float
    checksum: str


@dataclass(frozen=True)
class WalRange:
    timeline: int
    start_lsn: str
    end_lsn: str


class BackupManifest:
    """The files of one backup, added by every archive builder, rendered once at the end."""

    def __init__(self, algorithm: Optional[str] = None) -> None:
        algorithm = algorithm or default_algorithm()
        require_algorithm(algorithm)
        self.algorithm = algorithm
        self._files: List[ManifestFile] = []
        self._lock = threading.Lock()

    def new_checksum(self) -> FileChecksum:
        return FileChecksum(self.algorithm)

    def add(self, path: str, size: int, mtime: float, checksum: str) -> None:
        """A file at `path` relative to the restored data directory (pg_tblspc/<oid>/... for tablespaces)."""
        with self._lock:
            self._files.append(ManifestFile(path, size, mtime, checksum))

    @property
    def paths(self) -> List[str]:
        with self._lock:
            return sorted(item.path for item in self._files)

    def render(self, wal_range: WalRange) -> bytes:
        with self._lock:
            files = sorted(self._files, key=lambda item: item.path)
        body = ('{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n'
                + ",\n".join(self._file_line(item) for item in files)
                + '\n],\n"WAL-Ranges": [\n'
                + '{ "Timeline": %d, "Start-LSN": "%s", "End-LSN": "%s" }' % (
                    wal_range.timeline, wal_range.start_lsn, wal_range.end_lsn)
                + "\n],\n").encode("utf-8")
        # The checksum covers every byte up to the newline before its own line.
        return body + ('"Manifest-Checksum": "%s"}\n' % hashlib.sha256(body).hexdigest()).encode("ascii")

    def _file_line(self, item: ManifestFile) -> str:
        return '{ %s, "Size": %d, "Last-Modified": "%s", "Checksum-Algorithm": "%s", "Checksum": "%s" }' % (
            _path_field(item.path), item.size, time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime(item.mtime)),
            self.algorithm, item.checksum)


def _path_field(path: str) -> str:
    """"Path" for a UTF-8 name; a name that is not (undecodable bytes kept by the walk) goes hex-encoded."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return '"Encoded-Path": "%s"' % path.encode("utf-8", "surrogateescape").hex()
    return '"Path": %s' % json.dumps(path, ensure_ascii=False)
