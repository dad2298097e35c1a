# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's WAL spool: what wal-archive has already stored, and what wal-restore has prefetched.

Both are read on the fast path of a call (fast_path), before any SDK is imported: this module
imports a few built-in modules only (not typing, json, re or hashlib), since interpreter start-up
and imports are most of a fast call's time (benchmarks/README.md). Each target (store, destination, server) has folders of its own, so a
file stored in or fetched from one destination never answers for another.

    <spool_dir>/archived-<target>/<WAL name>    stored whole and acknowledged by the store; holds
                                                the identity (device, inode, size, mtime) of the file
    <spool_dir>/restore-<target>/<WAL name>     a prefetched WAL file, complete (written as
                                                .<name>.tmp, then renamed)
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - for the type checkers only
    from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

# A prefetched file older than this is fetched again rather than trusted.
SPOOL_MAX_AGE = 3600
# How long a call waits for the archive worker to store its file before it stores the file itself.
WORKER_WAIT_SECONDS = 900.0
WAIT_POLL_SECONDS = 0.025
TEMPORARY_SUFFIX = ".tmp"


def _sha256(data: bytes) -> str:
    # The built-in module, not hashlib, which loads OpenSSL (a few ms of every fast call); the
    # same digest either way, hashlib where the interpreter is built without it.
    try:
        from _sha2 import sha256  # Python 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.11 and earlier
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()


class _JsonContext:
    """What json's C scanner reads of a decoder: JSON as json.loads reads it, without the json
    package, whose regular expressions (the re module) cost more than the rest of a fast call."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


def load_json(text: str) -> Any:
    """json.loads(text) for the fast path: ValueError (or the scanner's error) if it is not JSON."""
    make_scanner: Any = None
    try:
        import _json

        make_scanner = _json.make_scanner
    except (ImportError, AttributeError):
        pass
    if make_scanner is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = make_scanner(_JsonContext())(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data after the JSON value")
    return value


def read_json(path: str) -> Any:
    with open(path, "r", encoding="utf-8") as handle:
        return load_json(handle.read())


def target_id(storage: Mapping[str, object]) -> str:
    """A short stable name for the store, destination and server of a job's storage section."""
    names = ("cloud_provider", "endpoint_url", "destination_url", "server_name")
    parts = [str(storage.get(name) or "") for name in names]
    return _sha256("\n".join(parts).encode("utf-8"))[:16]


def file_identity(path: str) -> List[int]:
    status = os.stat(path)
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns]


def write_file(path: str, data: bytes) -> None:
    """Write path whole or not at all: a reader sees the old name absent or the complete file."""
    staging = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + TEMPORARY_SUFFIX)
    try:
        with open(staging, "wb") as handle:
            handle.write(data)
        os.replace(staging, path)
    except BaseException:
        _unlink(staging)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class ArchiveState:
    """Markers of WAL files that a batch stored before PostgreSQL asked for them."""

    def __init__(self, spool_dir: str, target: str) -> None:
        self.folder = os.path.join(spool_dir, "archived-" + target)

    def take(self, path: str) -> bool:
        """True (and the marker is consumed) if this very file was stored: same name and identity."""
        marker = os.path.join(self.folder, os.path.basename(path))
        try:
            identical = read_json(marker).get("file") == file_identity(path)
        except (OSError, ValueError, AttributeError):
            return False
        _unlink(marker)
        return identical

    def has(self, path: str) -> bool:
        marker = os.path.join(self.folder, os.path.basename(path))
        try:
            return bool(read_json(marker).get("file") == file_identity(path))
        except (OSError, ValueError, AttributeError):
            return False

    def record(self, path: str, identity: List[int]) -> None:
        """Called only once the store has acknowledged the whole object of path."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        marker = '{"file": [%s]}' % ", ".join(str(int(number)) for number in identity)
        write_file(os.path.join(self.folder, os.path.basename(path)), marker.encode())

    def prune(self, ready: Iterable[str]) -> None:
        """Remove the markers of files PostgreSQL no longer waits to archive (none will ask for them)."""
        keep = set(ready)
        for name in _entries(self.folder):
            if name not in keep and not name.startswith("."):
                _unlink(os.path.join(self.folder, name))

    # Claims: a file being stored is claimed by the process storing it (.<name>.claim holds its
    # pid), so that the worker and a call never store the same file at once, and a call for a
    # file the worker is storing waits for its marker instead.

    def _claim_path(self, name: str) -> str:
        return os.path.join(self.folder, "." + name + ".claim")

    def claim(self, name: str) -> bool:
        """Claim name for this process; False if a live process holds it."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        path = self._claim_path(name)
        # Written aside, then linked: a reader never sees a claim without its pid.
        staging = "%s.%d" % (path, os.getpid())
        with open(staging, "w", encoding="utf-8") as stream:
            stream.write(str(os.getpid()))
        try:
            for _attempt in range(2):
                try:
                    os.link(staging, path)
                    return True
                except FileExistsError:
                    if holder_alive(path):
                        return False
                    _unlink(path)
            return False
        finally:
            _unlink(staging)

    def release(self, name: str) -> None:
        _unlink(self._claim_path(name))

    def claimed(self, name: str) -> bool:
        return holder_alive(self._claim_path(name))

    def lock_path(self) -> str:
        return os.path.join(self.folder, ".worker.lock")


def holder_alive(path: str) -> bool:
    """Whether the process whose pid path holds is running."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            pid = int(handle.read().strip() or "0")
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_running(state: ArchiveState) -> bool:
    """Whether an archive worker (wal/worker.py) holds this destination's lock."""
    import fcntl

    try:
        os.makedirs(state.folder, mode=0o700, exist_ok=True)
        with open(state.lock_path(), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def wait_for_worker(state: ArchiveState, path: str) -> bool:
    """True once the worker has stored path (its marker taken); False if the call must store it:
    no worker runs and no one is storing the file, or the wait is over."""
    name = os.path.basename(path)
    started = time.monotonic()
    while time.monotonic() - started < WORKER_WAIT_SECONDS:
        if state.take(path):
            return True
        if not state.claimed(name) and not worker_running(state):
            return state.take(path)
        time.sleep(WAIT_POLL_SECONDS)
    return False


def _archived(state: ArchiveState, path: str) -> bool:
    """The fast path of wal-archive: the file's marker, now or once the running worker writes it.

    PostgreSQL asks for a segment as soon as it is ready, most often before the worker (which
    looks every 50 ms) has stored it: the call waits here rather than after loading the rest of
    the command. Only for a file marked ready, the only kind the worker stores.
    """
    if state.take(path):
        return True
    status = os.path.join(os.path.dirname(os.path.abspath(path)), "archive_status", os.path.basename(path) + ".ready")
    return os.path.exists(status) and worker_running(state) and wait_for_worker(state, path)


class RestoreSpool:
    """Prefetched WAL files, each delivered only for its exact name."""

    def __init__(self, spool_dir: str, target: str) -> None:
        self.folder = os.path.join(spool_dir, "restore-" + target)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def deliver(self, name: str, destination: str) -> bool:
        """Move the prefetched file of name to destination; False if there is none (or a stale one)."""
        source = self.path(name)
        try:
            fresh = time.time() - os.stat(source).st_mtime < SPOOL_MAX_AGE
        except OSError:
            return False
        if not fresh:
            _unlink(source)
            return False
        place_file(source, destination)
        return True

    def reset(self, keep: Iterable[str]) -> None:
        """Make the folder, and remove everything in it but the files of keep."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        wanted = set(keep)
        for name in _entries(self.folder):
            if name not in wanted:
                _unlink(os.path.join(self.folder, name))


def place_file(source: str, destination: str) -> None:
    """Move source to destination, whole: a rename, or a copy and a rename across file systems."""
    try:
        os.replace(source, destination)
        return
    except OSError:
        pass
    staging = os.path.join(os.path.dirname(os.path.abspath(destination)),
                           "." + os.path.basename(destination) + TEMPORARY_SUFFIX)
    import shutil

    try:
        shutil.copyfile(source, staging)
        os.replace(staging, destination)
    except BaseException:
        _unlink(staging)
        raise
    _unlink(source)


def _entries(folder: str) -> List[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def ready_files(wal_path: str) -> List[str]:
    """WAL files PostgreSQL has marked ready to archive next to wal_path (pg_wal/archive_status),
    in the order its archiver takes them: timeline history files first, then by name."""
    folder = os.path.join(os.path.dirname(os.path.abspath(wal_path)), "archive_status")
    names = [entry[:-len(".ready")] for entry in _entries(folder) if entry.endswith(".ready")]
    return sorted(names, key=lambda name: (not name.endswith(".history"), name))


CONFIG_ROOT = "/etc/pgcloud-backup"
DEFAULT_JOB = "pgcloud-backup"
STATUS_ROOT = "/var/lib/pgcloud-backup"


def spool_dir_of(config: Dict[str, Any]) -> str:
    """wal.spool_dir, by default the wal-spool folder in the job's status folder (the role makes it)."""
    spool_dir = (config.get("wal") or {}).get("spool_dir")
    if spool_dir:
        return str(spool_dir)
    status_file = (config.get("report") or {}).get("status_file")
    if status_file:
        status = os.path.dirname(status_file)
    else:
        status = os.path.join(STATUS_ROOT, str(config.get("job_name") or DEFAULT_JOB))
    return os.path.join(status, "wal-spool")


def _fast_arguments(argv: Sequence[str]) -> Optional[List[str]]:
    """[config path, command, arguments...] of the plain forms PostgreSQL's commands use, else None."""
    config = os.path.join(CONFIG_ROOT, DEFAULT_JOB, "config.json")
    rest = list(argv)
    if len(rest) > 2 and rest[0] in ("--job", "--config"):
        config = rest[1] if rest[0] == "--config" else os.path.join(CONFIG_ROOT, rest[1], "config.json")
        rest = rest[2:]
    if rest[:1] == ["wal-archive"] and len(rest) == 2 or rest[:1] == ["wal-restore"] and len(rest) == 3:
        return [config] + rest
    return None


def fast_path(argv: Sequence[str]) -> bool:
    """Serve the call from the spool if it can be: True when the WAL file is safe (archive) or in
    place (restore). False sends the call down the full path, which decides everything else."""
    arguments = _fast_arguments(argv)
    if arguments is None:
        return False
    try:
        config = read_json(arguments[0])
        target = target_id(config["storage"])
        spool_dir = spool_dir_of(config)
    except Exception:  # pylint: disable=broad-except  # the full path reports what is wrong
        return False
    name = os.path.basename(arguments[2])
    if not name or name.startswith(".") or (arguments[1] == "wal-restore" and name != arguments[2]):
        return False
    if arguments[1] == "wal-archive":
        done = _archived(ArchiveState(spool_dir, target), arguments[2])
    else:
        done = RestoreSpool(spool_dir, target).deliver(name, arguments[3])
    if done and str(config.get("log_level", "INFO")).upper() == "DEBUG":
        sys.stderr.write("DEBUG pgcloud-backup: %s %s from the spool\n" % (name, arguments[1]))
    return done
