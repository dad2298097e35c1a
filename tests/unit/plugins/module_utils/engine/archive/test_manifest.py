# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""manifest.py: the backup_manifest writer, judged by its format rules and by pg_verifybackup.

PostgreSQL's pg_verifybackup (Debian's 15, which scripts/setup.sh installs) reads a manifest
written here for a folder of files, with --no-parse-wal since there is no WAL: it must accept
it as written, and name a file that changes afterwards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive import manifest as manifest_module
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import MissingDependencyError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive.manifest import (
    BackupManifest,
    ChecksummedReader,
    FileChecksum,
    WalRange,
)

PG_VERIFYBACKUP = os.path.join(os.environ.get("PGCLOUD_PG_BIN", "/usr/lib/postgresql/15/bin"), "pg_verifybackup")
WAL_RANGE = WalRange(1, "0/2000028", "0/2000138")
CRC32C_AVAILABLE = getattr(manifest_module.google_crc32c, "implementation", None) == "c"


def require_crc32c_for(algorithm):
    """CI installs google-crc32c: without its C extension a CRC32C test fails, it is not skipped."""
    if algorithm == "CRC32C" and not CRC32C_AVAILABLE:
        pytest.fail("google-crc32c with its C extension is missing: it comes with google-cloud-storage "
                    "(tests/unit/requirements.txt)")


def manifest_of(root, algorithm="SHA256"):
    """A manifest of every file under root, each read once through ChecksummedReader."""
    manifest = BackupManifest(algorithm)
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            checksum = manifest.new_checksum()
            reader = ChecksummedReader(open(path, "rb"), checksum)
            buffer = bytearray(7)  # small reads: the checksum must span them
            while reader.readinto(buffer):
                pass
            reader.source.close()
            manifest.add(os.path.relpath(path, root), os.path.getsize(path), os.path.getmtime(path), checksum.hexdigest())
    return manifest


def make_files(root):
    files = {"PG_VERSION": b"15\n", "global/pg_control": os.urandom(8192), "base/5/1259": os.urandom(40000),
             "empty": b"", "pg_tblspc/16384/PG_15_202209061/5/16385": b"x" * 100, "caf\u00e9.conf": b"# conf\n"}
    for name, content in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    return files


def verify(root):
    if not os.path.exists(PG_VERIFYBACKUP):
        pytest.fail("%s is missing: install postgresql-15 (scripts/setup.sh does)" % PG_VERIFYBACKUP)
    return subprocess.run([PG_VERIFYBACKUP, "--no-parse-wal", str(root)], capture_output=True, text=True, check=False)


# --- the format ------------------------------------------------------------------------------------


def test_layout_and_manifest_checksum(tmp_path):
    files = make_files(tmp_path)
    data = manifest_of(tmp_path).render(WAL_RANGE)
    text = data.decode("utf-8")
    assert text.startswith('{ "PostgreSQL-Backup-Manifest-Version": 1,\n"Files": [\n')
    assert text.endswith("}\n")
    # The checksum covers everything up to the newline that ends the line before its own.
    body, last_line = data[:-1].rsplit(b"\n", 1)
    assert last_line == b'"Manifest-Checksum": "%s"}' % hashlib.sha256(body + b"\n").hexdigest().encode()
    parsed = json.loads(text)
    assert list(parsed) == ["PostgreSQL-Backup-Manifest-Version", "Files", "WAL-Ranges", "Manifest-Checksum"]
    assert parsed["WAL-Ranges"] == [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000138"}]
    assert [item["Path"] for item in parsed["Files"]] == sorted(files)
    for item in parsed["Files"]:
        assert list(item) == ["Path", "Size", "Last-Modified", "Checksum-Algorithm", "Checksum"]
        assert (item["Size"], item["Checksum"]) == (len(files[item["Path"]]), hashlib.sha256(files[item["Path"]]).hexdigest())
        assert item["Last-Modified"].endswith(" GMT") and len(item["Last-Modified"]) == len("2026-11-25 02:33:50 GMT")
    # One file per line, as pg_basebackup writes them; names as UTF-8, not escaped.
    assert text.count("\n") == len(files) + 7
    assert "caf\u00e9.conf" in text


def test_last_modified_is_utc():
    manifest = BackupManifest()
    manifest.add("PG_VERSION", 3, 1764037430.9, "0" * 64)
    assert json.loads(manifest.render(WAL_RANGE))["Files"][0]["Last-Modified"] == "2025-11-25 02:23:50 GMT"


def test_a_name_that_is_not_utf8_is_hex_encoded():
    manifest = BackupManifest()
    name = os.fsdecode(b"base/5/bad\xff")
    manifest.add(name, 0, 0, hashlib.sha256().hexdigest())
    item = json.loads(manifest.render(WAL_RANGE))["Files"][0]
    assert item["Encoded-Path"] == b"base/5/bad\xff".hex() and "Path" not in item


def test_zero_padding_counts_in_the_checksum():
    checksum = FileChecksum("SHA256")
    reader = ChecksummedReader(io.BytesIO(b"abc"), checksum)
    buffer = bytearray(10)
    assert reader.readinto(buffer) == 3 and reader.readinto(buffer) == 0
    checksum.update(bytes(2))
    assert checksum.hexdigest() == hashlib.sha256(b"abc\0\0").hexdigest()


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32C"])
def test_read_and_readinto_feed_the_same_checksum(algorithm):
    """Compressed archives read fresh bytes, uncompressed ones read into the part buffer."""
    require_crc32c_for(algorithm)
    data = os.urandom(700000)
    by_read, by_readinto = FileChecksum(algorithm), FileChecksum(algorithm)
    reader = ChecksummedReader(io.BytesIO(data), by_read)
    assert b"".join(iter(lambda: reader.read(1 << 18), b"")) == data
    reader, buffer = ChecksummedReader(io.BytesIO(data), by_readinto), bytearray(1 << 18)
    while reader.readinto(buffer):
        pass
    whole = FileChecksum(algorithm)
    whole.update(data)
    assert by_read.hexdigest() == by_readinto.hexdigest() == whole.hexdigest()
    if algorithm == "SHA256":
        assert whole.hexdigest() == hashlib.sha256(data).hexdigest()


def test_crc32c_is_printed_in_the_machines_byte_order():
    if not CRC32C_AVAILABLE:
        with pytest.raises(MissingDependencyError, match="google-crc32c"):
            FileChecksum("CRC32C")
        return
    checksum = FileChecksum("CRC32C")
    checksum.update(b"12345")
    checksum.update(memoryview(b"6789"))
    # CRC-32C of "123456789" is 0xE3069283 (the standard check value).
    assert checksum.hexdigest() == ("839206e3" if sys.byteorder == "little" else "e3069283")


def test_default_algorithm_is_crc32c_where_it_runs_in_c(monkeypatch):
    expected = "CRC32C" if CRC32C_AVAILABLE else "SHA256"
    assert BackupManifest().algorithm == expected
    assert BackupManifest(None).algorithm == expected
    # Without the C extension the default falls back to SHA256 rather than failing.
    monkeypatch.setattr(manifest_module, "google_crc32c", None)
    assert manifest_module.default_algorithm() == "SHA256"
    assert BackupManifest().algorithm == "SHA256"
    with pytest.raises(MissingDependencyError):
        BackupManifest("CRC32C")


def test_an_explicit_algorithm_is_kept():
    assert BackupManifest("SHA256").algorithm == "SHA256"


def test_unknown_algorithm():
    with pytest.raises(ValueError):
        BackupManifest("MD5")


# --- pg_verifybackup, the judge ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC32C"])
def test_pg_verifybackup_accepts_the_manifest_and_finds_a_changed_file(tmp_path, algorithm):
    require_crc32c_for(algorithm)
    make_files(tmp_path)
    (tmp_path / "backup_manifest").write_bytes(manifest_of(tmp_path, algorithm).render(WAL_RANGE))
    accepted = verify(tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr

    changed = tmp_path / "base" / "5" / "1259"
    content = bytearray(changed.read_bytes())
    content[100] ^= 0xFF
    changed.write_bytes(bytes(content))
    refused = verify(tmp_path)
    assert refused.returncode != 0
    assert "base/5/1259" in refused.stderr and "checksum mismatch" in refused.stderr, refused.stderr


def test_pg_verifybackup_refuses_a_manifest_whose_checksum_is_wrong(tmp_path):
    make_files(tmp_path)
    data = manifest_of(tmp_path).render(WAL_RANGE).replace(b'"Size": 3,', b'"Size": 4,', 1)
    (tmp_path / "backup_manifest").write_bytes(data)
    refused = verify(tmp_path)
    assert refused.returncode != 0 and "manifest checksum mismatch" in refused.stderr, refused.stderr


def test_crc32c_of_a_large_buffer_is_computed_in_bounded_copies(monkeypatch):
    if not CRC32C_AVAILABLE:
        pytest.fail("google-crc32c with its C extension is missing: tests/unit/requirements.txt installs it")
    data = bytearray(os.urandom(3 * manifest_module.CRC_COPY_SIZE + 1000))
    copies = []
    extend = manifest_module.google_crc32c.extend

    def counting_extend(crc, piece):
        copies.append(len(piece))
        return extend(crc, piece)

    monkeypatch.setattr(manifest_module.google_crc32c, "extend", counting_extend)
    checksum = FileChecksum("CRC32C")
    with memoryview(data) as view:
        checksum.update(view[10:])
    whole = FileChecksum("CRC32C")
    whole.update(bytes(data[10:]))
    assert checksum.hexdigest() == whole.hexdigest()
    assert max(copies[:-1]) <= manifest_module.CRC_COPY_SIZE and len(copies) == 5
