# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore's tar reader, against archives that Python's tarfile (as barman-cloud-backup and
this collection's backups use it) and GNU tar write, read in pieces of every size."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore import tar_reader
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.extract import (
    Folder,
    RestoreError,
    UnsafeArchiveError,
    extract_stream,
)

LONG_DIR = "base/16384/" + "d" * 120
LONG_NAME = LONG_DIR + "/" + "f" * 150


def archive(members, tar_format=tarfile.PAX_FORMAT):
    """members: (name, kind, data or None, linkname, mtime)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, kind, data, linkname, mtime in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = kind, linkname, 0o640, mtime
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def pieces_of(data, size):
    stream = io.BytesIO(data)
    return lambda _wanted: stream.read(size)


def read_members(data, size=1 << 20):
    reader = tar_reader.TarReader(tar_reader.TarStream(pieces_of(data, size)))
    found = []
    for member in reader.members():
        body = b"".join(bytes(piece) for piece in reader.data(member)) if member.kind == tar_reader.REGULAR else None
        found.append((member.name, member.kind, body, member.linkname, member.mtime, member.mode))
    return found


MEMBERS = [
    ("base", tarfile.DIRTYPE, None, "", 1700000000),
    ("base/1/1259", tarfile.REGTYPE, os.urandom(8192 * 3 + 17), "", 1700000001.25),
    ("empty", tarfile.REGTYPE, b"", "", 1700000002),
    (LONG_NAME, tarfile.REGTYPE, b"long" * 100, "", 1700000003),
    ("base/1/link", tarfile.SYMTYPE, None, "../../" + "l" * 140, 1700000004),
    ("base/1/hard", tarfile.LNKTYPE, None, "base/1/1259", 1700000005),
]


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("size", [1, 7, 511, 512, 513, 4096, 1 << 20])
def test_reads_what_tarfile_writes_in_pieces_of_any_size(tar_format, size):
    """Long names and link names as pax records (PAX) or `L`/`K` members (GNU), fractional
    mtimes in pax records, an empty file, headers and data split across pieces anywhere."""
    data = archive(MEMBERS, tar_format)
    found = read_members(data, size)
    assert [item[0] for item in found] == [item[0] for item in MEMBERS]
    assert [item[1] for item in found] == ["directory", "file", "file", "file", "symlink", "hardlink"]
    assert [item[2] for item in found][1:4] == [item[2] for item in MEMBERS][1:4]
    assert [item[3] for item in found] == [item[3] for item in MEMBERS]
    mtimes = [item[4] for item in found]
    assert mtimes[0] == 1700000000 and mtimes[1] == (1700000001.25 if tar_format == tarfile.PAX_FORMAT else 1700000001)
    assert {item[5] for item in found} == {0o640}


def test_reads_the_ustar_prefix_of_a_name():
    name = "p" * 90 + "/" + "n" * 90  # longer than 100: split into prefix and name by ustar
    data = archive([(name, tarfile.REGTYPE, b"x", "", 1700000000)], tarfile.USTAR_FORMAT)
    assert data[345:350] == b"ppppp"
    assert read_members(data)[0][0] == name


def test_reads_what_gnu_tar_writes(tmp_path):
    source = tmp_path / "source"
    (source / LONG_DIR).mkdir(parents=True)
    (source / LONG_NAME).write_bytes(b"gnu" * 1000)
    os.symlink("f" * 150, source / LONG_DIR / "link")
    data = subprocess.run(["tar", "--format=gnu", "-C", str(source), "-cf", "-", "base"], check=True,
                          capture_output=True).stdout
    found = {item[0]: item for item in read_members(data, 1000)}
    assert found[LONG_NAME][2] == b"gnu" * 1000
    assert found[LONG_DIR + "/link"][3] == "f" * 150
    assert found[LONG_DIR][1] == "directory"


def test_numbers_in_octal_and_base_256():
    assert tar_reader.number(b"0000644\x00") == 0o644
    assert tar_reader.number(b"     17 ") == 0o17
    assert tar_reader.number(b"\x00" * 8) == 0
    assert tar_reader.number(b"\x80" + (9 << 30).to_bytes(11, "big")) == 9 << 30
    assert tar_reader.number(b"\xff" * 12) == -1
    with pytest.raises(tar_reader.TarFormatError):
        tar_reader.number(b"12x\x00")


def test_a_big_size_in_base_256_and_in_a_pax_record():
    header = bytearray(archive([("big", tarfile.REGTYPE, b"", "", 1700000000)], tarfile.GNU_FORMAT)[:512])
    header[124:136] = b"\x80" + (9 << 30).to_bytes(11, "big")
    header[148:156] = b"%06o\x00 " % (sum(header[:148]) + sum(header[156:]) + 256)
    reader = tar_reader.TarReader(tar_reader.TarStream(pieces_of(bytes(header), 512)))
    assert next(reader.members()).size == 9 << 30
    assert tar_reader.pax_records(b"19 size=9663676416\n") == {"size": "9663676416"}


def with_size(header, size_field):
    header = bytearray(header[:512])
    header[124:136] = size_field
    header[148:156] = b"%06o\x00 " % (sum(header[:148]) + sum(header[156:]) + 256)
    return bytes(header)


@pytest.mark.parametrize("kind, size_field, words", [
    (tarfile.XHDTYPE, b"\xff" * 12, "negative size"),
    (tarfile.XHDTYPE, b"\x80" + (1 << 40).to_bytes(11, "big"), "extended header of"),
    (tarfile.GNUTYPE_LONGNAME, b"%011o\x00" % (2 << 20), "extended header of"),
])
def test_refuses_forged_sizes(kind, size_field, words):
    """A negative size, or an extended header larger than any backup's, which would be held in
    memory whole."""
    header = archive([("a", tarfile.REGTYPE, b"", "", 1700000000)], tarfile.USTAR_FORMAT)[:512]
    header = bytearray(header)
    header[156:157] = kind
    data = with_size(header, size_field) + bytes(3 << 20)
    with pytest.raises(tar_reader.TarFormatError, match=words):
        read_members(data)


@pytest.mark.parametrize("records", [b"5 a=b\n", b"x path=a\n", b"9 patha\n\n", b"30 path=a\n"])
def test_malformed_pax_records_are_refused(records):
    with pytest.raises(tar_reader.TarFormatError):
        tar_reader.pax_records(records)


def extract(tmp_path, data, size=1 << 20):
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return root, extract_stream(pieces_of(data, size), Folder(str(root)), "data.tar")


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_extracts_long_names(tmp_path, tar_format):
    root, counts = extract(tmp_path, archive(MEMBERS[:4], tar_format), 333)
    assert (root / LONG_NAME).read_bytes() == b"long" * 100
    expected_mtime = 1700000001.25 if tar_format == tarfile.PAX_FORMAT else 1700000001
    assert (root / "base/1/1259").stat().st_mtime == expected_mtime
    assert counts.files == 3 and counts.bytes == 8192 * 3 + 17 + 400


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("name", ["base/" + "a" * 120 + "/../../../evil", "/" + "a" * 120 + "/evil"])
def test_refuses_a_forged_long_name(tmp_path, tar_format, name):
    """The long name (pax `path`, GNU `L`) is the member's name: it is checked, not the
    harmless one in the header block."""
    data = archive([("base", tarfile.DIRTYPE, None, "", 1700000000), (name, tarfile.REGTYPE, b"x", "", 1700000000)],
                   tar_format)
    with pytest.raises(UnsafeArchiveError, match="absolute path or a '..'"):
        extract(tmp_path, data)
    assert not (tmp_path / "evil").exists()


def test_refuses_a_forged_long_link_name(tmp_path):
    data = archive([("link", tarfile.SYMTYPE, None, "../" * 40 + "etc/passwd", 1700000000)], tarfile.GNU_FORMAT)
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract(tmp_path, data)


def test_refuses_types_a_backup_never_holds(tmp_path):
    data = bytearray(archive([("sparse", tarfile.REGTYPE, b"", "", 1700000000)], tarfile.USTAR_FORMAT))
    data[156:157] = b"S"
    data[148:156] = b"%06o\x00 " % (sum(data[:148]) + sum(data[156:512]) + 256)
    with pytest.raises(UnsafeArchiveError, match="tar type 'S'"):
        extract(tmp_path, bytes(data))


def test_refuses_a_damaged_header(tmp_path):
    data = bytearray(archive([("a", tarfile.REGTYPE, b"x" * 600, "", 1700000000)], tarfile.GNU_FORMAT))
    data[5] ^= 0x01
    with pytest.raises(RestoreError, match="checksum"):
        extract(tmp_path, bytes(data))


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_a_stream_cut_anywhere_is_refused(tmp_path, tar_format):
    """Every cut of a two-member archive, in every block and inside the pax headers, fails:
    none reads as a whole archive."""
    whole = archive([("a", tarfile.REGTYPE, b"x" * 1000, "", 1700000000.5),
                     (LONG_NAME, tarfile.REGTYPE, b"y" * 10, "", 1700000000.5)], tar_format)
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        tar.getmembers()
        end = tar.offset  # the end marker, before tarfile's record padding
    for cut in sorted(set(range(0, end + 1024, 512)) | {100, 700, 1500, end + 1000}):
        (tmp_path / str(cut)).mkdir()
        with pytest.raises(RestoreError, match="truncated|not a whole tar archive"):
            extract(tmp_path / str(cut), whole[:cut], 200)
    root, counts = extract(tmp_path, whole[:end + 1024], 200)
    assert counts.files == 2 and (root / LONG_NAME).read_bytes() == b"y" * 10


def test_a_source_that_reuses_its_buffer_does_not_corrupt_the_files(tmp_path):
    """The writing thread writes views of the pieces after the reader has moved on."""
    data = archive([("a", tarfile.REGTYPE, b"a" * 3000, "", 1700000000),
                    ("b", tarfile.REGTYPE, b"b" * 3000, "", 1700000000)], tarfile.GNU_FORMAT)
    stream, buffer = io.BytesIO(data), bytearray(4096)

    def read(_size):
        count = stream.readinto(buffer)
        return buffer if count == len(buffer) else buffer[:count]

    root = tmp_path / "root"
    root.mkdir()
    extract_stream(read, Folder(str(root)), "data.tar")
    assert (root / "a").read_bytes() == b"a" * 3000 and (root / "b").read_bytes() == b"b" * 3000
