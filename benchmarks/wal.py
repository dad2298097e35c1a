#!/usr/bin/env python
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`pgcloud-backup wal-archive` / `wal-restore` against `barman-cloud-wal-archive` / `-wal-restore`,
called one WAL file at a time as PostgreSQL calls them, on the same segments and the same moto.

A pg_wal-like folder holds the segments, each with its archive_status/<name>.ready; each tool
is called for the oldest ready file, which is then marked .done (as PostgreSQL's archiver
does), until none is left. Then each tool restores every segment in order, one call each.
Every call runs as the postgres user from the venv's interpreter. See benchmarks/README.md.

CPU and peak RSS count every process of a tool: the calls, and the archive worker a call leaves
behind (this process is their subreaper, and waits for the worker to leave before the next
phase); "store CPU" is moto's, for the same phase.

    source /opt/pgcloud-backup/env.sh
    python benchmarks/wal.py --segments 16 --compression none --parallel 8
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from testbed import MotoServer, PostgresCluster, barman_cloud_command, postgres_dir, remove_tree, run  # noqa: E402
from testbed import as_postgres, scratch_dir  # noqa: E402
from wal_host import HostCommand  # noqa: E402

SEGMENT = 16 << 20
FLAGS = {"none": [], "gzip": ["--gzip"], "bzip2": ["--bzip2"], "xz": ["--xz"], "snappy": ["--snappy"],
         "zstd": ["--zstd"], "lz4": ["--lz4"]}
PR_SET_CHILD_SUBREAPER = 36
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Tally:
    """CPU seconds and peak RSS of a tool's processes, and the store's CPU, over one phase."""

    def __init__(self, store_pid: int) -> None:
        self.store_pid = store_pid
        self.cpu = 0.0
        self.rss_kib = 0
        self.store_cpu = -store_cpu(store_pid)

    def add(self, usage: resource.struct_rusage) -> None:
        self.cpu += usage.ru_utime + usage.ru_stime
        self.rss_kib = max(self.rss_kib, usage.ru_maxrss)

    def close(self) -> "Tally":
        """Wait for what the tool left running (the archive worker), then read the store's CPU."""
        for pid in orphans(self.store_pid):
            _pid, _status, usage = os.wait4(pid, 0)
            self.add(usage)
        self.store_cpu += store_cpu(self.store_pid)
        return self


def store_cpu(pid: int) -> float:
    with open("/proc/%d/stat" % pid, encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def orphans(store_pid: int) -> List[int]:
    """The children of this process but the store: the detached processes of the tool just run."""
    pids = set()
    for task in os.listdir("/proc/self/task"):
        with open("/proc/self/task/%s/children" % task, encoding="ascii") as children:
            pids.update(int(pid) for pid in children.read().split())
    return sorted(pids - {store_pid})


def become_subreaper() -> None:
    """Processes that a tool's call leaves behind become this process's children when the call
    exits, so that their CPU and memory are counted (Tally.close)."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def segment_names(count: int) -> List[str]:
    return ["0000000100000000%08X" % number for number in range(1, count + 1)]


def synthetic_segments(folder: Path, names: List[str]) -> None:
    """WAL-like segments: 8 KiB pages, each half random and half repeated text, then zeroes for
    the last quarter (a segment closed by a switch before it was full)."""
    page = 8192
    for name in names:
        pages = [os.urandom(page // 2) + (b"pgbench row " * 400)[:page // 2] for _page in range(SEGMENT * 3 // 4 // page)]
        (folder / name).write_bytes(b"".join(pages) + bytes(SEGMENT // 4))


def real_segments(folder: Path, names: List[str]) -> None:
    """Real WAL: the first completed segments of `pgbench -i` and a pgbench run on a fresh cluster,
    copied under the benchmark's names (the names only decide the objects' keys)."""
    with PostgresCluster("walbench", tablespace=None) as cluster:
        cluster.execute("ALTER SYSTEM SET wal_keep_size = '4GB'")
        cluster.execute("SELECT pg_reload_conf()")
        scale = 1
        while True:
            cluster.pgbench("-i", "-q", "-s", str(scale))
            cluster.pgbench("-n", "-t", "2000")
            current = cluster.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
            wal = sorted(entry for entry in os.listdir(cluster.pgdata / "pg_wal") if len(entry) == 24 and entry < current)
            if len(wal) >= len(names):
                break
            scale *= 2
        for name, source in zip(names, wal):
            (folder / name).write_bytes((cluster.pgdata / "pg_wal" / source).read_bytes())


def call_tool(command: List[str], tally: Tally) -> None:
    """Run one call to its end (output through files: a worker it starts keeps stderr open)."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=output)  # pylint: disable=consider-using-with
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        tally.add(usage)
        if process.returncode != 0:
            output.seek(0)
            raise SystemExit("exit %d: %s\n%s" % (process.returncode, " ".join(command),
                                                  output.read().decode(errors="replace")))


def archive_all(folder: Path, command: Callable[[str], List[str]], tally: Tally) -> float:
    """Call command for the oldest .ready file until none is left (as the archiver); seconds taken."""
    status = folder / "archive_status"
    started = time.monotonic()
    calls = []
    while True:
        ready = sorted(entry.name[:-len(".ready")] for entry in status.iterdir() if entry.name.endswith(".ready"))
        if not ready:
            print("  calls (s): %s" % " ".join("%.2f" % call for call in calls))
            return time.monotonic() - started
        call = time.monotonic()
        call_tool(as_postgres(command(str(folder / ready[0]))), tally)
        calls.append(time.monotonic() - call)
        (status / (ready[0] + ".ready")).rename(status / (ready[0] + ".done"))


def restore_all(names: List[str], destination: Path, command: Callable[[str, str], List[str]],
                originals: Path, tally: Tally) -> float:
    started = time.monotonic()
    calls = []
    for name in names:
        call = time.monotonic()
        call_tool(as_postgres(command(name, str(destination))), tally)
        calls.append(time.monotonic() - call)
    elapsed = time.monotonic() - started
    print("  calls (s): %s" % " ".join("%.2f" % call for call in calls))
    # The last one restored is checked against its original (all are, in tests/integration/test_wal.py).
    if destination.read_bytes() != (originals / names[-1]).read_bytes():
        raise SystemExit("%s restored differs from the original" % names[-1])
    return elapsed


def prepare(root: Path, names: List[str], originals: Path) -> Path:
    """A pg_wal-like folder holding names, none of them ready yet (see make_ready)."""
    folder = postgres_dir(root, 0o755)
    postgres_dir(folder / "archive_status", 0o755)
    for name in names:
        os.link(originals / name, folder / name)
    run(["chown", "-R", "postgres:postgres", str(folder)])
    return folder


def make_ready(folder: Path, names: List[str]) -> Path:
    """Mark names ready, as PostgreSQL does when it completes each segment."""
    for name in names:
        (folder / "archive_status" / (name + ".ready")).touch()
    run(["chown", "-R", "postgres:postgres", str(folder / "archive_status")])
    return folder


def archive_batches(folder: Path, batches: List[List[str]], command: Callable[[str], List[str]],
                    tally: Tally) -> List[float]:
    """Archive each batch as the archiver would, the next batch made ready when the last is done:
    the engine's worker, still there from the batch before, stores it ahead of the calls."""
    return [archive_all(make_ready(folder, batch), command, tally) for batch in batches]


Figures = Dict[str, Tuple[float, Tally]]


def write_floor(moto: MotoServer, bucket: str, count: int, parallel: int) -> float:
    """Seconds the store takes to take in count of the objects the engine stored, put again by
    one client already set up, parallel at a time: what no archiver of those objects can beat."""
    client = moto.client()
    keys = moto.list_keys(bucket)[:count]
    bodies = [client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
    floor_bucket = moto.create_bucket()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=floor_bucket, Key=item[0], Body=item[1]), zip(keys, bodies)))
    seconds = time.monotonic() - started
    moto.delete_bucket(floor_bucket)
    return seconds


def measure(moto: MotoServer, scratch: Path, names: List[str], compression: str, parallel: int,
            data: str, restore: bool = True, batches: int = 1) -> Figures:
    originals = postgres_dir(scratch / "originals", 0o755)
    (real_segments if data == "real" else synthetic_segments)(originals, names)
    run(["chown", "-R", "postgres:postgres", str(originals)])
    reference = moto.target(moto.create_bucket(), "bench", "wal")
    engine = moto.target(moto.create_bucket(), "bench", "wal")
    host = HostCommand(scratch / "job")
    host.configure(engine, compression=None if compression == "none" else compression, archive_parallel=parallel,
                   restore_prefetch=parallel)

    def reference_archive(path: str) -> List[str]:
        return barman_cloud_command("wal-archive", reference, *FLAGS[compression], reference.url,
                                    reference.server_name, path)

    def reference_restore(name: str, destination: str) -> List[str]:
        return barman_cloud_command("wal-restore", reference, reference.url, reference.server_name, name, destination)

    become_subreaper()
    store = moto._process.pid  # pylint: disable=protected-access  # the testbed keeps the server's process
    figures: Figures = {}
    tally = Tally(store)
    size = len(names) // batches
    parts = [names[start:start + size] for start in range(0, len(names), size)]
    times = archive_batches(prepare(scratch / "ref", names, originals), parts, reference_archive, tally)
    figures["reference archive"] = (sum(times), tally.close())
    tally = Tally(store)
    engine_times = archive_batches(prepare(scratch / "eng", names, originals), parts,
                                   lambda path: host.command("wal-archive", path), tally)
    figures["engine archive"] = (sum(engine_times), tally.close())
    if batches > 1:
        for number, (reference_seconds, engine_seconds) in enumerate(zip(times, engine_times), start=1):
            print("batch %d of %d segments: reference %.2f s, engine %.2f s, %.1fx%s" % (
                number, size, reference_seconds, engine_seconds, reference_seconds / engine_seconds,
                " (the worker starts)" if number == 1 else " (the worker is running)"))
    floor = write_floor(moto, engine.bucket, size, parallel)
    print("store write floor for %d segments: %.2f s (the engine's objects put again by a client already set up, "
          "%d at a time); reference/floor: %.1fx" % (size, floor, parallel, sum(times) / batches / floor))
    if not restore:
        return figures
    destination = scratch / "RECOVERYXLOG"
    tally = Tally(store)
    seconds = restore_all(names, destination, reference_restore, originals, tally)
    figures["reference restore"] = (seconds, tally.close())
    tally = Tally(store)
    seconds = restore_all(names, destination, lambda name, dest: host.command("wal-restore", name, dest), originals,
                          tally)
    figures["engine restore"] = (seconds, tally.close())
    return figures


def report(figures: Figures, count: int) -> None:
    mib = count * SEGMENT / float(1 << 20)
    print("%-18s %8s %10s %11s %8s %8s %9s %10s" % ("", "seconds", "s/segment", "segments/s", "MiB/s", "CPU s",
                                                    "peak RSS", "store CPU"))
    for label, (seconds, tally) in figures.items():
        print("%-18s %8.2f %10.3f %11.1f %8.1f %8.2f %6d MiB %9.2fs" % (
            label, seconds, seconds / count, count / seconds, mib / seconds, tally.cpu, tally.rss_kib // 1024,
            tally.store_cpu))
    for action in ("archive", "restore"):
        if "engine %s" % action not in figures:
            continue
        print("engine/reference %s rate: %.1fx" % (
            action, figures["reference %s" % action][0] / figures["engine %s" % action][0]))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--segments", type=int, default=16)
    parser.add_argument("--compression", choices=sorted(FLAGS), default="none")
    parser.add_argument("--parallel", type=int, default=8, help="wal.archive_parallel and wal.restore_prefetch")
    parser.add_argument("--data", choices=("real", "synthetic"), default="real",
                        help="WAL of pgbench on a fresh cluster, or half-random pages")
    parser.add_argument("--archive-only", action="store_true", help="measure archiving, not restore")
    parser.add_argument("--batches", type=int, default=1,
                        help="archive the segments in this many batches, each made ready when the last is archived "
                             "(a server that keeps writing WAL); times are printed per batch")
    arguments = parser.parse_args(argv)
    if arguments.batches < 1 or arguments.segments % arguments.batches:
        parser.error("--batches must divide --segments")
    names = segment_names(arguments.segments)
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    scratch = scratch_dir("pgcloud-bench-wal-")
    try:
        with MotoServer() as moto:
            figures = measure(moto, scratch, names, arguments.compression, arguments.parallel, arguments.data,
                              restore=not arguments.archive_only, batches=arguments.batches)
    finally:
        remove_tree(scratch)
    print("%d segments of %s WAL, compression %s, parallel %d"
          % (arguments.segments, arguments.data, arguments.compression, arguments.parallel))
    report(figures, arguments.segments)
    print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
