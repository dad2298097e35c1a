# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A reader of the tar stream a restore decodes: its members' headers, and their data as views.

The format, as the backups of this collection and of barman-cloud-backup write it (Python's
tarfile, PAX format) and as GNU tar writes it: 512-byte blocks; a header block per member
(name 0-100, mode 100-108, size 124-136, mtime 136-148, checksum 148-156, type 156, link
name 157-257, magic 257-265, and for POSIX ustar a name prefix 345-500), numbers in octal
text or, from GNU, in base-256 (first byte 0x80 or 0xff); the member's data in whole blocks;
two zero blocks at the end. Extended headers apply to the member that follows: pax `x`
records (`<length> <key>=<value>\\n`: path, linkpath, size, mtime) and GNU `L`/`K` (a long
name or link name as the data). Pax global headers (`g`) carry nothing a restore uses.

Data is handed out as memoryviews of the decoded pieces, not copied: a file's bytes go from
the decoder's output to os.write. Only a header that straddles two pieces is joined.
"""

from __future__ import annotations

import struct
from typing import Callable, Dict, Iterator, Optional

BLOCK = 512
# Decoded bytes asked for at a time: large, so that a small file is one slice of a piece.
READ_SIZE = 1 << 20
ZERO_BLOCK = bytes(BLOCK)
POSIX_MAGIC = b"ustar\x00"

REGULAR = "file"
DIRECTORY = "directory"
SYMLINK = "symlink"
HARDLINK = "hardlink"
DEVICE = "device"
FIFO = "fifo"
# Type flags with member data that extract() hands out; the others have none.
_KINDS = {b"0": REGULAR, b"\x00": REGULAR, b"7": REGULAR, b"1": HARDLINK, b"2": SYMLINK, b"3": DEVICE,
          b"4": DEVICE, b"5": DIRECTORY, b"6": FIFO}
_EXTENSIONS = (b"x", b"g", b"L", b"K")
_SIGNED = struct.Struct("148b8x356b")
# pax records and GNU long names of a backup take a few hundred bytes; a larger one is forged.
MAX_EXTENSION_SIZE = 1 << 20


class TarFormatError(ValueError):
    """The stream is not a whole, well-formed tar archive."""


class TruncatedError(TarFormatError):
    """The stream ends where a header (or the end marker's second block) should be."""


class UnknownMemberError(TarFormatError):
    """A member of a type a backup never holds (sparse, multi-volume, vendor types)."""


class Member:
    """One archive member: its name, kind, size, mode, mtime and link target."""

    __slots__ = ("name", "kind", "size", "mode", "mtime", "linkname")

    def __init__(self, name: str, kind: str, size: int, mode: int, mtime: float, linkname: str) -> None:
        self.name = name
        self.kind = kind
        self.size = size
        self.mode = mode
        self.mtime = mtime
        self.linkname = linkname

    def __repr__(self) -> str:
        return "Member(%r, %s, %d bytes)" % (self.name, self.kind, self.size)


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def number(field: bytes) -> int:
    """A header number: octal text (NUL or space ended), or GNU base-256."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        return int.from_bytes(field, "big", signed=True)
    text = field.split(b"\x00", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError("a header number is not octal: %r" % field) from None


def _checksum_matches(block: bytes) -> bool:
    stored = number(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    return stored == unsigned or stored == sum(_SIGNED.unpack_from(block)) + 8 * 0x20


def pax_records(data: bytes) -> Dict[str, str]:
    """The records of a pax extended header: `<length> <key>=<value>\\n`, length counting all."""
    records: Dict[str, str] = {}
    position = 0
    while position < len(data) and data[position:position + 1] != b"\x00":
        space = data.find(b" ", position, position + 20)
        try:
            length = int(data[position:space]) if space > position else 0
        except ValueError:
            length = 0
        end = position + length
        if length <= 0 or end > len(data) or data[end - 1:end] != b"\n":
            raise TarFormatError("a pax header record is malformed at byte %d" % position)
        key, equals, value = data[space + 1:end - 1].partition(b"=")
        if not equals:
            raise TarFormatError("a pax header record has no '=' at byte %d" % position)
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position = end
    return records


class TarStream:
    """The blocks of a decoded tar stream, from read(n) (which may return fewer than n bytes,
    b"" at the end)."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._view = memoryview(b"")
        self.ended = False

    def _fill(self) -> bool:
        if not self._view and not self.ended:
            piece = self._read(READ_SIZE)
            if piece:
                # Views of it are written later by another thread: a buffer its source reuses is copied.
                self._view = memoryview(piece if isinstance(piece, bytes) else bytes(piece))
            else:
                self.ended = True
        return bool(self._view)

    def take(self, size: int) -> memoryview:
        """Up to size bytes, as a view of the current piece; empty only at the stream's end."""
        if not self._fill():
            return self._view
        piece, self._view = self._view[:size], self._view[size:]
        return piece

    def exactly(self, size: int) -> bytes:
        """size bytes, or fewer only where the stream ends."""
        if len(self._view) >= size:
            piece, self._view = self._view[:size], self._view[size:]
            return piece.tobytes()
        parts = []
        while size > 0:
            piece = self.take(size)
            if not piece:
                break
            parts.append(piece.tobytes())
            size -= len(piece)
        return b"".join(parts)

    def skip(self, size: int) -> None:
        while size > 0:
            piece = self.take(size)
            if not piece:
                raise TarFormatError("the stream ends inside a member")
            size -= len(piece)

    def drain(self) -> None:
        """Read to the end (the padding after the end marker)."""
        self._view = memoryview(b"")
        while self._fill():
            self._view = memoryview(b"")


def padding(size: int) -> int:
    return -size % BLOCK


class TarReader:
    """Iterates the members of a TarStream; the caller reads each regular file's data with
    data() (or skips it) before asking for the next member."""

    def __init__(self, stream: TarStream) -> None:
        self.stream = stream
        self._unread = 0  # data bytes and padding of the current member not yet read

    def data(self, member: Member) -> Iterator[memoryview]:
        """The member's data, as views of the decoded pieces; its padding is skipped after."""
        remaining = self._unread - padding(member.size)
        while remaining > 0:
            piece = self.stream.take(remaining)
            if not piece:
                raise TarFormatError("the stream ends inside the data of %r" % member.name)
            remaining -= len(piece)
            self._unread -= len(piece)
            yield piece
        self.stream.skip(self._unread)
        self._unread = 0

    def members(self) -> Iterator[Member]:
        """The members, up to the end marker; TarFormatError at a damaged or truncated stream."""
        extended: Dict[str, str] = {}
        while True:
            self.stream.skip(self._unread)
            self._unread = 0
            block = self._header_block()
            if block is None:
                return
            kind = block[156:157]
            size = number(block[124:136])
            if size < 0:
                raise TarFormatError("a header gives a negative size")
            if kind in _EXTENSIONS:
                self._extension(kind, self._extension_data(size), extended)
                continue
            member = self._member(block, kind, size, extended)
            extended = {}
            self._unread = member.size + padding(member.size) if member.kind == REGULAR else 0
            yield member

    def _header_block(self) -> Optional[bytes]:
        """The next header, or None at the end marker (whose second block must be there)."""
        block = self.stream.exactly(BLOCK)
        if not block:
            raise TruncatedError()
        if len(block) < BLOCK:
            raise TarFormatError("the stream ends inside a header")
        if block == ZERO_BLOCK:
            if len(self.stream.exactly(BLOCK)) < BLOCK:
                raise TruncatedError()
            return None
        if not _checksum_matches(block):
            raise TarFormatError("a header's checksum does not match: the stream is damaged")
        return block

    def _extension_data(self, size: int) -> bytes:
        if size > MAX_EXTENSION_SIZE:
            raise TarFormatError("an extended header of %d bytes, more than a backup's ever are" % size)
        data = self.stream.exactly(size)
        if len(data) < size:
            raise TarFormatError("the stream ends inside an extended header")
        self.stream.skip(padding(size))
        return data

    @staticmethod
    def _extension(kind: bytes, data: bytes, extended: Dict[str, str]) -> None:
        if kind == b"x":
            extended.update(pax_records(data))
        elif kind == b"L":
            extended["path"] = _text(data)
        elif kind == b"K":
            extended["linkpath"] = _text(data)
        # b"g": pax global records (comments, charsets) name nothing a restore writes

    @staticmethod
    def _member(block: bytes, kind: bytes, size: int, extended: Dict[str, str]) -> Member:
        name = _text(block[0:100])
        if block[257:263] == POSIX_MAGIC and block[345] != 0:
            name = _text(block[345:500]) + "/" + name
        name = extended.get("path", name)
        if kind not in _KINDS:
            raise UnknownMemberError("archive member %r is of tar type %r, which a backup never holds"
                                     % (name, kind.decode("latin-1")))
        member_kind = _KINDS[kind]
        if member_kind == REGULAR and kind == b"\x00" and name.endswith("/"):
            member_kind = DIRECTORY  # old tars mark directories by a trailing slash only
        if member_kind == DIRECTORY:
            name = name.rstrip("/") or name
        try:
            size = int(extended.get("size", size))
            mtime = float(extended["mtime"]) if "mtime" in extended else number(block[136:148])
        except ValueError:
            raise TarFormatError("member %r has a malformed size or mtime in its pax header" % name) from None
        if size < 0:
            raise TarFormatError("member %r has a negative size" % name)
        return Member(name, member_kind, size, number(block[100:108]) & 0o7777, mtime,
                      extended.get("linkpath", _text(block[157:257])))
