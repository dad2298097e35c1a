# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's engine archive (roles/scheduled_backup/files/pack_engine.py): what it holds, and
that GNU tar, which ansible.builtin.unarchive runs on the host, sees an install as equal to it
until a file of the engine changes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tarfile

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils import engine

ROLE_FILES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "scheduled_backup", "files")
ENGINE_SOURCE = os.path.dirname(engine.__file__)
IMPORT_PATH = "ansible_collections/pgcloud/backup/plugins/module_utils/engine"


def load_packer():
    spec = importlib.util.spec_from_file_location("pack_engine", os.path.join(ROLE_FILES, "pack_engine.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packed(source, capsys):
    assert load_packer().main([str(source)]) == 0
    return capsys.readouterr().out.strip()


@pytest.fixture
def engine_copy(tmp_path):
    """A copy of the engine with compiled files beside it, as a controller's checkout has."""
    source = tmp_path / "engine"
    shutil.copytree(ENGINE_SOURCE, source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "errors.cpython-312.pyc").write_bytes(b"compiled")
    (source / "NOTES.txt").write_text("not Python")
    return source


def test_the_archive_holds_the_engine_under_its_import_path(engine_copy, capsys):
    path = packed(engine_copy, capsys)
    try:
        with tarfile.open(path) as archive:
            members = {member.name: member for member in archive.getmembers()}
    finally:
        os.unlink(path)
    files = {name for name, member in members.items() if member.isfile()}
    expected = {"%s/%s" % (IMPORT_PATH, os.path.relpath(os.path.join(folder, name), engine_copy))
                for folder, _subfolders, names in os.walk(engine_copy) for name in names
                if name.endswith(".py") and "__pycache__" not in folder}
    packages = {"/".join(IMPORT_PATH.split("/")[:depth]) + "/__init__.py" for depth in range(1, 6)}
    assert files == expected | packages
    assert all(member.uid == 0 and member.gid == 0 and member.uname == "root" for member in members.values())
    assert {member.mode for member in members.values() if member.isfile()} == {0o644}
    assert {member.mode for member in members.values() if member.isdir()} == {0o755}


def test_tar_sees_an_install_as_equal_until_an_engine_file_changes(engine_copy, tmp_path, capsys):
    host = tmp_path / "lib"
    host.mkdir()
    first = packed(engine_copy, capsys)
    try:
        subprocess.run(["tar", "-xzf", first, "-C", str(host)], check=True)
    finally:
        os.unlink(first)
    again = packed(engine_copy, capsys)
    changed = engine_copy / "errors.py"
    try:
        assert tar_differences(again, host) == ""
        changed.write_text(changed.read_text() + "\n# changed\n")
        os.utime(changed, (1_800_000_000, 1_800_000_000))
    finally:
        os.unlink(again)
    edited = packed(engine_copy, capsys)
    try:
        assert "engine/errors.py: Mod time differs" in tar_differences(edited, host)
    finally:
        os.unlink(edited)


def tar_differences(archive, folder):
    return subprocess.run(["tar", "--diff", "-f", archive, "-C", str(folder)], capture_output=True, text=True,
                          check=False, env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout


def test_a_source_that_is_not_the_engine_is_refused(tmp_path, capsys):
    assert load_packer().main([str(tmp_path)]) == 2
    assert "ENGINE_SOURCE" in capsys.readouterr().err
