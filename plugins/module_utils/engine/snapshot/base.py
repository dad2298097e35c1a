# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk snapshots seen by the engine: the provider interface, the host's mounts and the factory.

A snapshot backup needs to know, for each named disk, where the compute API says it is
attached, which block device that is on this host, and where that device is mounted; and
that PGDATA and every tablespace lie on those mounts, or the snapshots would miss data.

The host is read through `HostView`, whose root is `/` in production. Tests point it at a
prepared folder (with `proc/self/mountinfo`, `sys/block/...` and `dev/...`) through the
`PGCLOUD_BACKUP_HOST_ROOT` environment variable or the `host` argument of the job, so that
they never depend on the disks of the machine that runs them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from ..errors import SnapshotPreconditionError

HOST_ROOT_VARIABLE = "PGCLOUD_BACKUP_HOST_ROOT"
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: a file system of `source` mounted at `mount_point`."""

    source: str
    mount_point: str
    mount_options: str


@dataclass
class Disk:
    """A disk named in snapshot_disks, as the compute API and this host know it."""

    name: str
    device: str  # where the host sees it, before symbolic links are followed
    details: Dict[str, Any] = field(default_factory=dict)  # what the provider needs to snapshot it
    mount: Optional[Mount] = None


def snapshot_name(disk_name: str, backup_id: str) -> str:
    """`<disk>-<backup id in lower case>`: the delete tool finds a backup's snapshots by this suffix,
    and Compute Engine accepts lower-case names only."""
    return "%s-%s" % (disk_name, backup_id.lower())


class HostView:
    """The block devices and mounts of the host, under `root` (`/` unless testing)."""

    def __init__(self, root: str = "/") -> None:
        self.root = os.path.abspath(root)

    @classmethod
    def from_environment(cls) -> "HostView":
        return cls(os.environ.get(HOST_ROOT_VARIABLE) or "/")

    def local(self, path: str) -> str:
        """The file that holds the host's absolute `path` (itself when root is /)."""
        return os.path.join(self.root, path.lstrip("/"))

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.local(path))

    def resolve(self, path: str) -> str:
        """The host path that `path` leads to once symbolic links (such as /dev/disk/by-id/...) are followed."""
        resolved = os.path.realpath(self.local(path))
        if self.root == "/":
            return resolved
        if resolved == self.root or resolved.startswith(self.root + os.sep):
            return "/" + os.path.relpath(resolved, self.root).lstrip(".")
        return path  # a link out of the prepared tree: keep the name

    def mounts(self) -> List[Mount]:
        """The mount table of this process, from /proc/self/mountinfo."""
        path = self.local("/proc/self/mountinfo")
        try:
            with open(path, "r") as handle:
                lines = handle.read().splitlines()
        except OSError as error:
            raise SnapshotPreconditionError("cannot read the mount table %s: %s" % (path, error.strerror))
        return [mount for mount in (_parse_mountinfo_line(line) for line in lines) if mount is not None]

    def mount_of_device(self, device: str) -> Optional[Mount]:
        wanted = self.resolve(device)
        for mount in self.mounts():
            if mount.source.startswith("/") and self.resolve(mount.source) == wanted:
                return mount
        return None

    def mount_containing(self, path: str) -> Optional[Mount]:
        """The mount that holds `path` (a real path of this machine): the longest mount point above it."""
        real = os.path.realpath(path)
        best: Optional[Mount] = None
        for mount in self.mounts():
            point = mount.mount_point.rstrip("/") or "/"
            if real == point or real.startswith(point.rstrip("/") + "/"):
                if best is None or len(point) >= len(best.mount_point.rstrip("/") or "/"):
                    best = mount
        return best

    def block_serials(self) -> Dict[str, str]:
        """Block device name -> the serial its driver reports (NVMe volumes of EC2 report the volume id)."""
        serials: Dict[str, str] = {}
        block = self.local("/sys/block")
        try:
            names = sorted(os.listdir(block))
        except OSError:
            return serials
        for name in names:
            try:
                with open(os.path.join(block, name, "device", "serial"), "r") as handle:
                    serials[name] = handle.read().strip()
            except OSError:
                continue
        return serials


def _unescape(text: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), text)


def _parse_mountinfo_line(line: str) -> Optional[Mount]:
    """Fields: id parent major:minor root mount_point options [optional...] - fstype source super_options."""
    parts = line.split()
    if "-" not in parts or len(parts) < 6:
        return None
    separator = parts.index("-", 6)
    if len(parts) < separator + 3:
        return None
    source = _unescape(parts[separator + 2])
    vfs_options = parts[5].split(",")
    fs_options = parts[separator + 3].split(",") if len(parts) > separator + 3 else []
    # As findmnt shows them: the mount's options, then the file system's, without repeating rw/ro.
    options = vfs_options + [option for option in fs_options if option not in ("rw", "ro") and option not in vfs_options]
    return Mount(source=source, mount_point=_unescape(parts[4]), mount_options=",".join(options))


def locate_mounts(disks: List[Disk], host: HostView, instance: str) -> None:
    """Set each disk's mount; raise naming every disk that is not mounted."""
    unmounted = []
    for disk in disks:
        disk.mount = host.mount_of_device(disk.device)
        if disk.mount is None:
            unmounted.append("%s (%s)" % (disk.name, disk.device))
    if unmounted:
        raise SnapshotPreconditionError(
            "cannot find disks mounted on compute instance %s: %s; mount them, or name in snapshot_disks only "
            "the disks that hold PGDATA and the tablespaces" % (instance, ", ".join(unmounted))
        )


def check_data_on_disks(paths: Iterable[str], disks: List[Disk], host: HostView) -> None:
    """PGDATA and the tablespaces must lie on the snapshotted disks, or the backup would miss them."""
    mounted = {disk.mount.mount_point for disk in disks if disk.mount is not None}
    for path in paths:
        mount = host.mount_containing(path)
        if mount is None or mount.mount_point not in mounted:
            where = "on %s mounted at %s" % (mount.source, mount.mount_point) if mount else "on no known mount"
            raise SnapshotPreconditionError(
                "%s lies %s, which is not one of the disks in snapshot_disks (%s): add the disk that holds it "
                "to snapshot_disks, or take a base backup instead" % (path, where, ", ".join(disk.name for disk in disks))
            )


class SnapshotProvider:
    """The compute API of one cloud. Implementations translate their SDK's errors to errors.py."""

    name = ""
    # The keys of each snapshot's provider fields, in the order the reference writes them.
    snapshot_fields: tuple = ()

    def find_disks(self, instance: str, names: List[str]) -> List[Disk]:
        """The named disks attached to the instance, with their device on this host.

        Raise SnapshotPreconditionError when the instance is missing or a disk is not attached.
        """
        raise NotImplementedError

    def take(self, disks: List[Disk], backup_id: str) -> List[Dict[str, Any]]:
        """Snapshot the disks, wait until the snapshots are usable; the provider fields of each."""
        raise NotImplementedError

    def provider_info(self) -> Dict[str, Any]:
        raise NotImplementedError

    def disks_from_snapshots(self, instance: str, snapshots: List[Dict[str, Any]]) -> Dict[str, Disk]:
        """The disks attached to the instance that were made from these snapshots (the provider
        fields of backup.info), by snapshot name; a snapshot without such a disk is left out.

        Raise SnapshotPreconditionError when the instance is missing.
        """
        raise SnapshotPreconditionError("recovery from %s snapshots is not available in this collection yet: use "
                                        "barman-cloud-restore --snapshot-recovery-instance" % self.name)


def snapshots_info(provider: SnapshotProvider, disks: List[Disk], taken: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The snapshots_info field of backup.info, as the reference readers load it."""
    snapshots = []
    for disk, fields in zip(disks, taken):
        mount = disk.mount
        snapshots.append({
            "mount": {"mount_options": mount.mount_options if mount else None,
                      "mount_point": mount.mount_point if mount else None},
            "provider": {name: fields.get(name) for name in provider.snapshot_fields},
        })
    return {"provider": provider.name, "provider_info": provider.provider_info(), "snapshots": snapshots}
