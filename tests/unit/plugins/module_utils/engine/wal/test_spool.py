# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""wal/spool.py: the fast path of wal-archive and wal-restore, which must not load an SDK."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal import spool

SEGMENT = "00000001000000000000000C"
STORAGE = {"destination_url": "s3://bucket/path", "server_name": "db1", "endpoint_url": "http://127.0.0.1:1"}


def job(tmp_path: Path) -> Path:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"storage": STORAGE, "wal": {"spool_dir": str(tmp_path / "spool")}}))
    return config


def test_a_marker_answers_for_the_very_file_once(tmp_path: Path) -> None:
    config, wal = job(tmp_path), tmp_path / SEGMENT
    wal.write_bytes(b"wal")
    state = spool.ArchiveState(str(tmp_path / "spool"), spool.target_id(STORAGE))
    assert not spool.fast_path(["--config", str(config), "wal-archive", str(wal)])
    state.record(str(wal), spool.file_identity(str(wal)))
    assert spool.fast_path(["--config", str(config), "wal-archive", str(wal)])
    assert not spool.fast_path(["--config", str(config), "wal-archive", str(wal)])
    state.record(str(wal), spool.file_identity(str(wal)))
    os.utime(wal, ns=(1, 1))  # another file under the same name
    assert not spool.fast_path(["--config", str(config), "wal-archive", str(wal)])


def test_markers_belong_to_their_destination(tmp_path: Path) -> None:
    config, wal = job(tmp_path), tmp_path / SEGMENT
    wal.write_bytes(b"wal")
    other = spool.target_id(dict(STORAGE, server_name="db2"))
    spool.ArchiveState(str(tmp_path / "spool"), other).record(str(wal), spool.file_identity(str(wal)))
    assert not spool.fast_path(["--config", str(config), "wal-archive", str(wal)])


def test_a_prefetched_file_answers_for_its_exact_name_while_fresh(tmp_path: Path) -> None:
    config = job(tmp_path)
    restore = spool.RestoreSpool(str(tmp_path / "spool"), spool.target_id(STORAGE))
    restore.reset(keep=())
    Path(restore.path(SEGMENT)).write_bytes(b"prefetched")
    destination = tmp_path / "RECOVERYXLOG"
    for asked in ("00000001000000000000000D", "../spool/" + SEGMENT, SEGMENT.lower()):
        assert not spool.fast_path(["--config", str(config), "wal-restore", asked, str(destination)])
    assert spool.fast_path(["--config", str(config), "wal-restore", SEGMENT, str(destination)])
    assert destination.read_bytes() == b"prefetched" and not os.path.exists(restore.path(SEGMENT))
    Path(restore.path(SEGMENT)).write_bytes(b"old")
    old = time.time() - spool.SPOOL_MAX_AGE - 1
    os.utime(restore.path(SEGMENT), (old, old))
    assert not spool.fast_path(["--config", str(config), "wal-restore", SEGMENT, str(destination)])
    assert not os.path.exists(restore.path(SEGMENT))


def test_the_fast_path_loads_no_sdk(tmp_path: Path) -> None:
    config, wal = job(tmp_path), tmp_path / SEGMENT
    wal.write_bytes(b"wal")
    spool.ArchiveState(str(tmp_path / "spool"), spool.target_id(STORAGE)).record(str(wal), spool.file_identity(str(wal)))
    script = ("import sys\n"
              "from ansible_collections.pgcloud.backup.plugins.module_utils.engine.wal.spool import fast_path\n"
              "assert fast_path(sys.argv[1:])\n"
              "print(sorted(name for name in sys.modules if name.split('.')[0] in "
              "('botocore', 'boto3', 'azure', 'google', 'argparse', 'logging', 'typing', 'zstandard', 'lz4', "
              "'json', 're', 'hashlib', '_hashlib', 'pathlib')))\n")
    result = subprocess.run([sys.executable, "-c", script, "--config", str(config), "wal-archive", str(wal)],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                            check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("text", [
    '{"storage": {"server_name": "db1", "port": 5432, "ratio": 1.5e3, "on": true, "off": null}}',
    '\n  [1, -2, "\\u00e9\\n", {"a": [false]}, NaN, -Infinity]  \n', '"x"', "0", '{"a": "\u00e9"}'])
def test_the_fast_json_reads_as_json_does(text: str) -> None:
    assert json.dumps(spool.load_json(text)) == json.dumps(json.loads(text))


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', '{"a": 1}{}', "[1,]", "{'a': 1}", "\ufeff{}", "01"])
def test_the_fast_json_refuses_what_json_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        spool.load_json(text)


def test_a_marker_is_json(tmp_path: Path) -> None:
    wal = tmp_path / SEGMENT
    wal.write_bytes(b"wal")
    state = spool.ArchiveState(str(tmp_path / "spool"), spool.target_id(STORAGE))
    state.record(str(wal), spool.file_identity(str(wal)))
    assert json.loads((Path(state.folder) / SEGMENT).read_text()) == {"file": spool.file_identity(str(wal))}


def test_the_target_id_is_the_sha256_of_the_storage_section() -> None:
    expected = hashlib.sha256("\n".join(["", STORAGE["endpoint_url"], STORAGE["destination_url"],
                                         STORAGE["server_name"]]).encode()).hexdigest()[:16]
    assert spool.target_id(STORAGE) == expected


def ready_segment(tmp_path: Path) -> Path:
    wal = tmp_path / "pg_wal" / SEGMENT
    (wal.parent / "archive_status").mkdir(parents=True)
    wal.write_bytes(b"wal")
    (wal.parent / "archive_status" / (SEGMENT + ".ready")).touch()
    return wal


def test_the_fast_path_waits_for_the_running_worker_to_store_a_ready_file(tmp_path: Path) -> None:
    """PostgreSQL asks as soon as a segment is ready, before the worker has stored it: the fast
    path waits for the marker while a worker holds the lock, and falls through once it leaves."""
    config, wal = job(tmp_path), ready_segment(tmp_path)
    state = spool.ArchiveState(str(tmp_path / "spool"), spool.target_id(STORAGE))
    arguments = ["--config", str(config), "wal-archive", str(wal)]
    os.makedirs(state.folder)
    with open(state.lock_path(), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a worker runs
        worker = threading.Timer(0.3, lambda: state.record(str(wal), spool.file_identity(str(wal))))
        worker.start()
        started = time.monotonic()
        assert spool.fast_path(arguments)
        assert time.monotonic() - started >= 0.3
        worker.join()
        # Not marked ready: nothing to wait for, the full path decides.
        (wal.parent / "archive_status" / (SEGMENT + ".ready")).rename(wal.parent / "archive_status" / (SEGMENT + ".done"))
        started = time.monotonic()
        assert not spool.fast_path(arguments)
        assert time.monotonic() - started < 0.2
        (wal.parent / "archive_status" / (SEGMENT + ".done")).rename(wal.parent / "archive_status" / (SEGMENT + ".ready"))
        # The worker leaves without storing it: the call goes on to store it itself.
        threading.Timer(0.2, lambda: fcntl.flock(lock, fcntl.LOCK_UN)).start()
        assert not spool.fast_path(arguments)
    # No worker: no wait.
    assert not spool.fast_path(arguments)


def test_a_claim_is_held_by_a_live_process_only(tmp_path: Path) -> None:
    state = spool.ArchiveState(str(tmp_path / "spool"), spool.target_id(STORAGE))
    assert state.claim(SEGMENT)
    assert state.claimed(SEGMENT) and not state.claim(SEGMENT)
    state.release(SEGMENT)
    assert not state.claimed(SEGMENT)
    # The claim of a process that is gone (pid from a finished child) is taken over.
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    Path(state.folder, "." + SEGMENT + ".claim").write_text(child.stdout.strip())
    assert not state.claimed(SEGMENT)
    assert state.claim(SEGMENT)
    # Claims and the worker's lock are not markers: pruning leaves them.
    Path(state.lock_path()).touch()
    state.prune(ready=[])
    assert sorted(os.listdir(state.folder)) == sorted(["." + SEGMENT + ".claim", ".worker.lock"])
