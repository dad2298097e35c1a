# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the backup engine into one tar file for the hosts, and print the file's path.

Run by the role on the controller (tasks/install.yml): `pack_engine.py ENGINE_SOURCE`, where
ENGINE_SOURCE is the collection's plugins/module_utils/engine. The archive holds the engine's
Python files under the import path the job uses (ansible_collections/pgcloud/backup/plugins/
module_utils/engine), with the packages above it as empty __init__.py files, owned by root,
files 0644 and folders 0755. The role extracts it with ansible.builtin.unarchive: one transfer
and one module call per host, where copying the files one by one took one each; unarchive
compares the archive with what the host has, so the task is changed only when a file is.
Compiled files (__pycache__) are left out: the role compiles on the host.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
from typing import List

ENGINE_PATH = "ansible_collections/pgcloud/backup/plugins/module_utils/engine"


def engine_files(source: str) -> List[str]:
    """The engine's Python files, relative to `source`, sorted so that the archive is stable."""
    found = []
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        found.extend(os.path.relpath(os.path.join(folder, name), source) for name in files if name.endswith(".py"))
    return sorted(found)


def member(name: str, mode: int, mtime: float, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, int(mtime), size
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def pack(source: str, archive: tarfile.TarFile) -> None:
    # The folders and package markers above the engine take the engine's own time, so that
    # they compare equal from one run to the next.
    stamp = os.stat(os.path.join(source, "__init__.py")).st_mtime
    parents = ENGINE_PATH.split("/")
    for depth in range(1, len(parents)):
        folder = "/".join(parents[:depth])
        archive.addfile(member(folder, 0o755, stamp, tarfile.DIRTYPE))
        archive.addfile(member(folder + "/__init__.py", 0o644, stamp), io.BytesIO(b""))
    folders = set()
    for relative in engine_files(source):
        folder = os.path.dirname(relative)
        while folder not in folders:
            folders.add(folder)
            path = os.path.join(source, folder)
            archive.addfile(member("/".join(filter(None, (ENGINE_PATH, folder))), 0o755,
                                   os.stat(path).st_mtime, tarfile.DIRTYPE))
            folder = os.path.dirname(folder)
        path = os.path.join(source, relative)
        with open(path, "rb") as data:
            status = os.fstat(data.fileno())
            archive.addfile(member(ENGINE_PATH + "/" + relative, 0o644, status.st_mtime, size=status.st_size), data)


def main(arguments: List[str]) -> int:
    if len(arguments) != 1 or not os.path.isfile(os.path.join(arguments[0], "__init__.py")):
        sys.stderr.write("usage: pack_engine.py ENGINE_SOURCE (the collection's plugins/module_utils/engine)\n")
        return 2
    descriptor, path = tempfile.mkstemp(prefix="pgcloud-engine-", suffix=".tar.gz")
    try:
        with os.fdopen(descriptor, "wb") as output, tarfile.open(fileobj=output, mode="w:gz") as archive:
            pack(arguments[0], archive)
    except BaseException:
        os.unlink(path)
        raise
    sys.stdout.write(path + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
