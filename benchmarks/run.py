#!/usr/bin/env python
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""This collection's engine against `barman-cloud-backup`: same data, same store, one run.

Builds a PostgreSQL 15 cluster with pgbench data and the chosen stores on loopback (moto S3,
Azurite, the GCS emulator: the integration test bed's, tests/integration), then backs the
cluster up with each tool in turn, for each store and compression, and prints wall time,
throughput, CPU time and peak memory of both, with the engine/reference throughput ratio.
See benchmarks/README.md.

    source /opt/pgcloud-backup/env.sh
    python benchmarks/run.py --scale 10 --providers aws-s3,azure-blob-storage,google-cloud-storage
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

import local_stores  # noqa: E402  pylint: disable=wrong-import-position
import testbed  # noqa: E402  pylint: disable=wrong-import-position

MIB = 1 << 20
COMPRESSIONS = ("none", "gzip", "bzip2", "snappy", "lz4", "zstd")
TOOLS = ("reference", "engine")
PROVIDERS = ("aws-s3", "azure-blob-storage", "google-cloud-storage")
STORE_NAMES = {"aws-s3": "moto S3", "azure-blob-storage": "Azurite", "google-cloud-storage": "GCS emulator"}
SERVER_NAME = "bench"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Run:
    """One backup by one tool, as measured from outside its process tree."""

    tool: str
    provider: str
    compression: str
    returncode: int
    wall: float
    cpu: float  # user + system of the process and every descendant it waited for
    peak_rss: int  # largest sum of the resident sets of the tree, sampled
    peak_pss: int  # the same with proportional set sizes: shared pages split between sharers
    machine_cpu: float  # busy CPU seconds of the whole machine during the run (moto included)
    stored_bytes: int = 0
    objects: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def busy_cpu_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def proportional_set_size(pid: int) -> int:
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_memory(root: psutil.Process) -> Sequence[int]:
    """(RSS, PSS) summed over a process and its descendants."""
    try:
        tree = [root] + root.children(recursive=True)
    except psutil.Error:
        tree = [root]
    rss = pss = 0
    for process in tree:
        try:
            rss += process.memory_info().rss
        except psutil.Error:
            continue
        pss += proportional_set_size(process.pid)
    return rss, pss


def measure(tool: str, provider: str, compression: str, command: List[str], log_base: Path,
            interval: float) -> Run:
    """Run a command to its end, sampling the memory of its process tree every interval."""
    busy_before = busy_cpu_seconds()
    with open(log_base.with_suffix(".out"), "wb") as out, open(log_base.with_suffix(".err"), "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
    root = psutil.Process(process.pid)
    peak_rss = peak_pss = 0
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            rss, pss = tree_memory(root)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(interval)
    except BaseException:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        raise
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(tool, provider, compression, process.returncode, wall, usage.ru_utime + usage.ru_stime, peak_rss, peak_pss,
               busy_cpu_seconds() - busy_before)


class Bench:
    """The cluster, the stores and the two tools' command lines."""

    def __init__(self, args: argparse.Namespace, workdir: Path, cluster: testbed.PostgresCluster,
                 stores: Dict[str, testbed.ChildServer]) -> None:
        self.args = args
        self.workdir = workdir
        self.cluster = cluster
        self.stores = stores
        self.collections = workdir / "collections"
        link = self.collections / "ansible_collections" / "pgcloud" / "backup"
        link.parent.mkdir(parents=True)
        link.symlink_to(REPO)
        self.logs = workdir / "logs"
        self.logs.mkdir()

    def command(self, tool: str, compression: str, target: testbed.StorageTarget) -> List[str]:
        """The tool's command line, run as the postgres OS user with the test bed's environment."""
        connection = ["--host", str(self.cluster.socket_dir), "--port", str(self.cluster.port),
                      "--user", testbed.POSTGRES_USER]
        if tool == "reference":
            command = testbed.barman_cloud_command(
                "backup", target, "-J", str(self.args.jobs), "--immediate-checkpoint",
                *testbed.REFERENCE_COMPRESSION_FLAGS[compression], *connection, target.url, target.server_name)
        else:
            # The engine takes the same store options and environment as the reference tool.
            options = target.tool_arguments()
            command = testbed.env_command({**testbed.tool_env(), **dict(target.tool_env)}, [
                str(testbed.VENV_PYTHON), str(HERE / "engine_runner.py"), "--collections-path", str(self.collections),
                *options, "--jobs", str(self.args.jobs), "--compression", compression, "--quiet", *connection,
                "--destination", target.url, "--server-name", target.server_name])
        return testbed.as_postgres(command)

    def one(self, tool: str, provider: str, compression: str, repetition: int) -> Run:
        store = self.stores[provider]
        bucket = store.create_bucket("bench-%s-%s-%d" % (compression, tool, repetition))
        target = store.target(bucket, "pg", SERVER_NAME)
        self.cluster.execute("CHECKPOINT")
        os.sync()
        log_base = self.logs / ("%s-%s-%s-%d" % (tool, provider, compression, repetition))
        result = measure(tool, provider, compression, self.command(tool, compression, target), log_base,
                         self.args.interval)
        sizes = store.list_objects(bucket)
        result.stored_bytes, result.objects = sum(sizes.values()), len(sizes)
        if not result.ok:
            result.error = log_base.with_suffix(".err").read_text(errors="replace")[-2000:]
        elif tool == "engine":
            status = json.loads(log_base.with_suffix(".out").read_text().strip().splitlines()[-1]).get("status")
            if status != "DONE":
                result.returncode, result.error = -1, "engine result status %s" % status
        store.delete_bucket(bucket)
        return result

    def series(self, provider: str, compression: str) -> List[Run]:
        """Both tools on the same store, alternating order; moto afresh (its memory only grows)."""
        store = self.stores[provider]
        if isinstance(store, testbed.MotoServer):
            store.restart()
        runs = []
        for repetition in range(1, self.args.repeat + 1):
            order = self.args.tools if repetition % 2 else list(reversed(self.args.tools))
            for tool in order:
                log("%s, %s, %s, run %d" % (tool, STORE_NAMES[provider], compression, repetition))
                run = self.one(tool, provider, compression, repetition)
                log("  %s in %.1f s%s" % ("done" if run.ok else "FAILED", run.wall, "" if run.ok else ":\n" + run.error))
                runs.append(run)
        return runs


def data_size(pgdata: Path) -> int:
    """Bytes of the regular files a backup copies (PGDATA without pg_wal)."""
    total = 0
    for folder, subfolders, files in os.walk(pgdata):
        if Path(folder) == pgdata and "pg_wal" in subfolders:
            subfolders.remove("pg_wal")
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


HEADERS = ["store", "tool", "compression", "runs", "wall s", "MiB/s", "CPU s", "peak RSS MiB", "peak PSS MiB",
           "machine CPU s", "stored MiB", "objects", "x ref"]


def summary(runs: List[Run], size: int) -> List[List[str]]:
    """One row per store, tool and compression: medians of the successful runs."""
    rows, reference_rate = [], {}
    for provider, compression in dict.fromkeys((run.provider, run.compression) for run in runs):
        for tool in TOOLS:
            mine = [run for run in runs if (run.tool, run.provider, run.compression) == (tool, provider, compression)]
            done = [run for run in mine if run.ok]
            if not mine:
                continue
            first = [STORE_NAMES[provider], tool, compression, "%d/%d" % (len(done), len(mine))]
            if not done:
                rows.append(first + ["FAILED"] + [""] * (len(HEADERS) - 5))
                continue
            wall = statistics.median(run.wall for run in done)
            rate = size / MIB / wall
            if tool == "reference":
                reference_rate[provider, compression] = rate
            ratio = rate / reference_rate[provider, compression] if (provider, compression) in reference_rate else None
            rows.append(first + ["%.2f" % wall, "%.1f" % rate,
                                 "%.1f" % statistics.median(run.cpu for run in done),
                                 "%.0f" % (max(run.peak_rss for run in done) / MIB),
                                 "%.0f" % (max(run.peak_pss for run in done) / MIB),
                                 "%.1f" % statistics.median(run.machine_cpu for run in done),
                                 "%.0f" % (statistics.median(run.stored_bytes for run in done) / MIB),
                                 "%d" % done[0].objects, "" if ratio is None else "%.2f" % ratio])
    return rows


def table(rows: List[List[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(HEADERS, *rows)]
    lines = [HEADERS, ["-" * width for width in widths]] + rows
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100, help="pgbench scale (100: about 1.5 GiB)")
    parser.add_argument("--compressions", default="none,gzip,lz4,zstd",
                        help="comma-separated from %s, or all" % ",".join(COMPRESSIONS))
    parser.add_argument("--providers", default="aws-s3",
                        help="comma-separated from %s, or all" % ",".join(PROVIDERS))
    parser.add_argument("--jobs", type=int, default=2, help="-J of the reference, jobs of the engine")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool per compression (medians)")
    parser.add_argument("--tools", default="reference,engine", help="reference,engine or one of them")
    parser.add_argument("--interval", type=float, default=0.05, help="memory sampling interval, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (cluster, logs)")
    args = parser.parse_args(argv)
    args.compressions = list(COMPRESSIONS) if args.compressions == "all" else args.compressions.split(",")
    args.tools = args.tools.split(",")
    args.providers = list(PROVIDERS) if args.providers == "all" else args.providers.split(",")
    for name, chosen, allowed in (("compression", args.compressions, COMPRESSIONS), ("tool", args.tools, TOOLS),
                                  ("provider", args.providers, PROVIDERS)):
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error("unknown %s %s; choose from %s" % (name, ", ".join(unknown), ", ".join(allowed)))
    return args


def machine_facts() -> str:
    memory = psutil.virtual_memory().total / (1 << 30)
    return "%d CPUs, %.0f GiB memory, Python %s" % (os.cpu_count() or 0, memory, sys.version.split()[0])


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    workdir = testbed.scratch_dir("pgcloud-bench-")
    cluster = testbed.PostgresCluster("bench", tablespace=None)
    runs: List[Run] = []
    servers = {"aws-s3": testbed.MotoServer, "azure-blob-storage": local_stores.AzuriteServer,
               "google-cloud-storage": local_stores.GcsServer}
    try:
        with contextlib.ExitStack() as stack:
            stores = {provider: stack.enter_context(servers[provider]()) for provider in args.providers}
            log("creating a PostgreSQL 15 cluster with pgbench scale %d" % args.scale)
            cluster.create()
            cluster.pgbench("-i", "-q", "-s", str(args.scale), timeout=3600)
            cluster.execute("VACUUM ANALYZE")
            size = data_size(cluster.pgdata)
            bench = Bench(args, workdir, cluster, stores)
            for provider in args.providers:
                for compression in args.compressions:
                    runs += bench.series(provider, compression)
    finally:
        cluster.destroy()
        if args.keep:
            log("work folder kept: %s" % workdir)
        else:
            testbed.remove_tree(workdir)
    print("pgcloud.backup engine vs barman-cloud-backup: pgbench scale %d, %.0f MiB, jobs %d, stores on loopback; %s"
          % (args.scale, size / MIB, args.jobs, machine_facts()))
    print(table(summary(runs, size)))
    print("MiB/s is the data size over the wall time; x ref is engine MiB/s over reference MiB/s.")
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
