#!/usr/bin/env python
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""This collection's engine against `barman-cloud-backup`: same data, same store, one run.

Builds a PostgreSQL 15 cluster for each data set (pgbench, or a mixed table) and scale, and
the chosen stores on loopback (moto S3, Azurite, the GCS emulator: the integration test bed's,
tests/integration); measures the ceilings (read, each compressor on one core, the store's raw
ingest); then backs the cluster up with each tool in turn, for each store and compression,
and prints wall time, throughput, CPU time and peak memory of both, with the
engine/reference throughput ratio and the goals of issue 8. See benchmarks/README.md.

    source /opt/pgcloud-backup/env.sh
    python benchmarks/run.py --scale 10 --providers aws-s3,azure-blob-storage,google-cloud-storage
    python benchmarks/run.py --scale 10,50 --datasets pgbench,mixed --compressions lz4,zstd
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

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
DATASETS = ("pgbench", "mixed")
# The goals of issue 8: engine MiB/s over reference MiB/s, the share of the store's raw
# ingest when uncompressed, and the memory bound.
SPEED_GOALS = {"gzip": 2.0, "snappy": 3.0, "lz4": 3.0, "zstd": 3.0}
INGEST_GOAL = 0.9
MEMORY_GOAL_BASE = 64 * 1000 * 1000
# Restores of the same data from moto vary by this much from run to run.
RESTORE_NOISE = 0.1
# Rows of the mixed data set per unit of scale: about the 15 MiB of one pgbench scale unit.
MIXED_ROWS_PER_SCALE = 60000
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
         "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
         "whiskey", "xray", "yankee", "zulu", "invoice", "customer", "shipped", "pending", "returned", "paid")


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
    object_sizes: List[int] = field(default_factory=list)
    restore_wall: Optional[float] = None  # barman-cloud-restore of this backup, when measured
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


def tree_memory(root: psutil.Process, with_pss: bool = True) -> Sequence[int]:
    """(RSS, PSS) summed over a process and its descendants; PSS is 0 unless with_pss (reading
    it walks the page tables of the process under its memory map's lock, which slows the
    process's own page faults while it runs)."""
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
        if with_pss:
            pss += proportional_set_size(process.pid)
    return rss, pss


class MemorySampler:
    """Samples the memory of a process tree every interval, on a thread of its own, so that the
    caller can wait for the process's exit and time it to the moment it happens."""

    def __init__(self, pid: int, interval: float, with_pss: bool) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.with_pss = with_pss
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = tree_memory(self.root, self.with_pss)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(tool: str, provider: str, compression: str, command: List[str], log_base: Path,
            interval: float, with_pss: bool = True) -> Run:
    """Run a command to its end, sampling the memory of its process tree every interval. The
    wall time ends when the process exits, not at the next sample."""
    busy_before = busy_cpu_seconds()
    with open(log_base.with_suffix(".out"), "wb") as out, open(log_base.with_suffix(".err"), "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
    sampler = MemorySampler(process.pid, interval, with_pss)
    try:
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    except BaseException:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        raise
    finally:
        sampler.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(tool, provider, compression, process.returncode, wall, usage.ru_utime + usage.ru_stime,
               sampler.peak_rss, sampler.peak_pss, busy_cpu_seconds() - busy_before)


# --------------------------------------------------------------------------- data sets

def load_mixed(cluster: testbed.PostgresCluster, scale: int) -> None:
    """A table that compresses like real ones: words of a small vocabulary, numbers, dates,
    hex digests, and 64 bytes of random (incompressible) bytea per row, with an index."""
    words = "ARRAY[%s]" % ",".join("'%s'" % word for word in WORDS)
    phrase = " || ' ' || ".join(["(%s)[1 + floor(random() * %d)::int]" % (words, len(WORDS))] * 6)
    random_bytes = "decode(%s, 'hex')" % " || ".join(["md5(random()::text)"] * 4)
    cluster.execute("CREATE TABLE mixed (id bigint, amount numeric(12,2), created timestamptz, quantity int, "
                    "label text, digest text, payload bytea)")
    step = 500000
    for start in range(0, scale * MIXED_ROWS_PER_SCALE, step):
        end = min(start + step, scale * MIXED_ROWS_PER_SCALE)
        cluster.execute("INSERT INTO mixed SELECT g, round((random() * 100000)::numeric, 2), "
                        "timestamptz '2024-01-01' + random() * interval '700 days', (random() * 1000)::int, "
                        "%s, md5(g::text), %s FROM generate_series(%d, %d) g" % (phrase, random_bytes, start + 1, end))
    cluster.execute("CREATE INDEX ON mixed (id)")
    cluster.execute("CREATE INDEX ON mixed (created)")


def load(cluster: testbed.PostgresCluster, dataset: str, scale: int) -> None:
    log("loading the %s data set at scale %d" % (dataset, scale))
    if dataset == "pgbench":
        cluster.pgbench("-i", "-q", "-s", str(scale), timeout=3600)
    else:
        load_mixed(cluster, scale)
    cluster.execute("VACUUM ANALYZE")
    # Pages still dirty in shared buffers are zeros in the files: the ceilings read the files.
    cluster.execute("CHECKPOINT")


# --------------------------------------------------------------------------- ceilings

@dataclass
class Ceiling:
    what: str
    mib_s: float
    note: str = ""


def engine_modules(collections: Path):
    if str(collections) not in sys.path:
        sys.path.insert(0, str(collections))
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive import compression
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import config
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage import factory as storage
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.transfer import upload as uploader
    return compression, config, storage, uploader


def tar_command(pgdata: Path) -> List[str]:
    return ["tar", "cf", "-", "-C", str(pgdata), "--exclude=./pg_wal", "."]


def read_ceiling(pgdata: Path) -> Ceiling:
    """tar through a pipe (GNU tar does not read files when its output is /dev/null)."""
    started = time.perf_counter()
    result = subprocess.run(["bash", "-c", " ".join(tar_command(pgdata)) + " 2>/dev/null | wc -c"],
                            check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    size = int(result.stdout.split()[-1])
    return Ceiling("read: tar cf - PGDATA | wc -c", size / MIB / elapsed, "%.0f MiB in %.2f s" % (size / MIB, elapsed))


def data_sample(pgdata: Path, size: int, total: int) -> bytes:
    """About `size` bytes of a tar of PGDATA in 1 MiB slices taken evenly over the whole stream:
    the start alone is one table's first segment, which compresses unlike the rest."""
    stride = max(1, -(-total // size))
    with subprocess.Popen(tar_command(pgdata), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as tar:
        pieces, index = [], 0
        while True:
            piece = tar.stdout.read(MIB)
            if not piece:
                break
            if index % stride == 0:
                pieces.append(piece)
            index += 1
    return b"".join(pieces)


class Zlib:
    """gzip at another level, for comparison (the reference tool's is 9)."""

    def __init__(self, level: int) -> None:
        self.engine = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data) -> bytes:
        return self.engine.compress(data)

    def finish(self) -> bytes:
        return self.engine.flush()


def compressor_ceilings(sample: bytes, collections: Path, names: List[str]) -> List[Ceiling]:
    """Each of the engine's compressors on one thread, fed 1 MiB pieces: MiB per CPU second of
    that thread, so that another process taking turns on the core does not lower it."""
    compression = engine_modules(collections)[0]
    factories: List[Tuple[str, Callable]] = []
    for name in names:
        if name != "none":
            factories.append(("%s (engine)" % name, lambda name=name: compression.new_compressor(name)))
        if name == "gzip":
            factories.append(("gzip level 9 (the reference's)", lambda: Zlib(9)))
    results = []
    pieces = [sample[offset:offset + MIB] for offset in range(0, len(sample), MIB)]
    for label, factory in factories:
        compressor, produced = factory(), 0
        cpu = time.thread_time()
        for piece in pieces:
            produced += len(compressor.compress(piece))
        produced += len(compressor.finish())
        cpu = time.thread_time() - cpu
        results.append(Ceiling("compress on one core: %s" % label, len(sample) / MIB / max(cpu, 1e-6),
                               "ratio %.3f over a %.0f MiB sample" % (produced / max(len(sample), 1), len(sample) / MIB)))
    return results


def engine_store(moto: testbed.MotoServer, collections: Path, jobs: int, bucket: str):
    """The engine's own S3 store (same SDK settings) on a bucket of moto, and its chunk size."""
    _compression, config, storage, uploader = engine_modules(collections)
    os.environ.update(testbed.FAKE_AWS_ENV)
    store = storage.open_store(config.StorageConfig(destination_url="s3://%s/bench" % bucket, server_name=SERVER_NAME,
                                                    endpoint_url=moto.endpoint_url, jobs=jobs))
    return store, uploader.chunk_size_for(store, config.BackupConfig().max_archive_size, None)


def ingest_ceiling(moto: testbed.MotoServer, collections: Path, jobs: int, total: int) -> Tuple[Ceiling, int]:
    """The store's raw ingest with the engine's own S3 client and chunk size: `total` bytes in
    parts from `jobs` threads into one multipart object, completion included (moto copies every
    part then, as the engine's objects need too); and the chunk size."""
    bucket = moto.create_bucket("bench-ingest-ceiling")
    store, chunk_size = engine_store(moto, collections, jobs, bucket)
    data = bytearray(os.urandom(chunk_size))
    parts = max(1, -(-total // chunk_size))
    key = "ingest/object"
    started = time.perf_counter()
    upload = store.create_multipart(key)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        records = list(pool.map(lambda number: store.upload_part(key, upload, number, data), range(1, parts + 1)))
    sent = time.perf_counter()
    store.complete_multipart(key, upload, records)
    done = time.perf_counter()
    moto.delete_bucket(bucket)
    size = parts * chunk_size / MIB
    return Ceiling("store: moto raw ingest, engine's S3 client, %d threads, one object of %.0f MiB" % (jobs, size),
                   size / (done - started), "parts of %.2f MiB: %.2f s sending, %.2f s completing" % (
                       chunk_size / MIB, sent - started, done - sent)), chunk_size


def send_object(store, key: str, size: int, chunk_size: int, data: bytearray) -> None:
    """An object of `size` bytes sent as the engine sends one: one PUT when it stays under a
    chunk, else parts of chunk_size one after another, then the completion."""
    if size < chunk_size:
        store.put_object(key, data[:size])
        return
    upload = store.create_multipart(key)
    records = [store.upload_part(key, upload, number, data if size - offset >= chunk_size else data[:size - offset])
               for number, offset in enumerate(range(0, size, chunk_size), 1)]
    store.complete_multipart(key, upload, records)


def store_floor(moto: testbed.MotoServer, collections: Path, jobs: int, sizes: List[int]) -> float:
    """Seconds moto takes to receive objects of these sizes from the engine's client, `jobs` at a
    time, with nothing to read or compress and no process to start: what a backup that stores
    them costs at the least on this machine and store."""
    bucket = moto.create_bucket("bench-store-floor")
    store, chunk_size = engine_store(moto, collections, jobs, bucket)
    data = bytearray(os.urandom(chunk_size))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda item: send_object(store, "floor/%d" % item[0], item[1], chunk_size, data),
                      enumerate(sorted(sizes, reverse=True))))
    elapsed = time.perf_counter() - started
    moto.delete_bucket(bucket)
    return elapsed


def ceilings(args: argparse.Namespace, bench: "Bench", size: int) -> Tuple[List[Ceiling], Optional[float], int]:
    """Read, compressors, store: the rates the engine cannot pass on this machine and data."""
    results = [read_ceiling(bench.cluster.pgdata)]
    results += compressor_ceilings(data_sample(bench.cluster.pgdata, args.sample_mib * MIB, size),
                                   bench.collections, args.compressions)
    ingest, chunk_size = None, 0
    moto = bench.stores.get("aws-s3")
    if isinstance(moto, testbed.MotoServer):
        moto.restart()
        ceiling, chunk_size = ingest_ceiling(moto, bench.collections, args.jobs, size)
        results.append(ceiling)
        ingest = ceiling.mib_s
    return results, ingest, chunk_size


class Bench:
    """The cluster, the stores and the two tools' command lines."""

    def __init__(self, args: argparse.Namespace, workdir: Path, cluster: Optional[testbed.PostgresCluster],
                 stores: Dict[str, testbed.ChildServer]) -> None:
        self.args = args
        self.workdir = workdir
        self.cluster = cluster
        self.stores = stores
        self.floors: Dict[Tuple[str, str], float] = {}
        self.collections = workdir / "collections"
        link = self.collections / "ansible_collections" / "pgcloud" / "backup"
        link.parent.mkdir(parents=True)
        link.symlink_to(REPO)
        # pip byte-compiled the reference tool when it installed it. The engine runs as the
        # postgres OS user from this checkout, where it may not write __pycache__: compile it
        # here, or every run would compile the modules it imports (0.03 s a run).
        compileall.compile_dir(str(REPO / "plugins"), quiet=1)
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
        result.stored_bytes, result.objects, result.object_sizes = sum(sizes.values()), len(sizes), list(sizes.values())
        if not result.ok:
            result.error = log_base.with_suffix(".err").read_text(errors="replace")[-2000:]
        elif tool == "engine":
            status = json.loads(log_base.with_suffix(".out").read_text().strip().splitlines()[-1]).get("status")
            if status != "DONE":
                result.returncode, result.error = -1, "engine result status %s" % status
        if result.ok and self.args.restore:
            self.restore(result, target, log_base)
        store.delete_bucket(bucket)
        return result

    def restore(self, result: Run, target: testbed.StorageTarget, log_base: Path) -> None:
        """barman-cloud-restore of the backup just taken, --restores times into an empty folder:
        the median wall time, and a check that every byte of PGDATA came back each time."""
        walls = []
        for number in range(self.args.restores):
            restored = self.restore_once(result, target, log_base.with_name("%s-restore-%d" % (log_base.name, number)))
            if restored is None:
                return
            walls.append(restored)
        result.restore_wall = statistics.median(walls)

    def restore_once(self, result: Run, target: testbed.StorageTarget, log_base: Path) -> Optional[float]:
        folder = restore_folder(self.cluster.pgdata)
        # The store has just written the backup's objects to its temporary files: flushed
        # first, so that their writeback does not compete with the restore's own writes.
        os.sync()
        try:
            command = testbed.as_postgres(testbed.barman_cloud_command(
                "restore", target, target.url, target.server_name, "latest", str(folder / "pgdata")))
            restored = measure(result.tool, result.provider, result.compression, command, log_base,
                               self.args.interval)
            size, expected = data_size(folder / "pgdata"), data_size(self.cluster.pgdata)
            if not restored.ok or abs(size - expected) > expected // 100:
                result.returncode = restored.returncode or -1
                result.error = "barman-cloud-restore: exit %d, %d of %d bytes restored: %s" % (
                    restored.returncode, size, expected, log_base.with_suffix(".err").read_text(errors="replace")[-2000:])
                return None
            return restored.wall
        finally:
            testbed.remove_tree(folder)

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
        self.measure_floor(provider, compression, runs)
        return runs

    def measure_floor(self, provider: str, compression: str, runs: List[Run]) -> None:
        """The store floor of the engine's median run (see store_floor), median of --repeat
        measurements, for the compressions with a speed goal."""
        store = self.stores[provider]
        engine = sorted((run for run in runs if run.tool == "engine" and run.ok), key=lambda run: run.wall)
        if not isinstance(store, testbed.MotoServer) or compression not in SPEED_GOALS or not engine:
            return
        sizes = engine[len(engine) // 2].object_sizes
        log("store floor, %s, %s: %d objects, %.0f MiB" % (STORE_NAMES[provider], compression, len(sizes), sum(sizes) / MIB))
        self.floors[provider, compression] = statistics.median(
            store_floor(store, self.collections, self.args.jobs, sizes) for _repetition in range(self.args.repeat))


def restore_folder(pgdata: Path) -> Path:
    """An empty folder for a restore: in tmpfs when it has room for two copies of the data, so
    that the disk's writeback, which varies from one restore to the next by more than the tools
    differ, stays out of the figure; else under /tmp."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 2 * data_size(pgdata):
        path = Path(tempfile.mkdtemp(prefix="pgcloud-bench-restore-", dir=shm))
        testbed.chown_postgres(path)
        return path
    return testbed.scratch_dir("pgcloud-bench-restore-")


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
           "machine CPU s", "stored MiB", "objects", "x ref", "restore s"]


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
                                 "%d" % done[0].objects, "" if ratio is None else "%.2f" % ratio,
                                 _median_text(run.restore_wall for run in done)])
    return rows


def _median_text(values: Iterable[Optional[float]]) -> str:
    known = [value for value in values if value is not None]
    return "%.2f" % statistics.median(known) if known else ""


def restore_goal(runs: List[Run], provider: str, compression: str) -> Optional[str]:
    """barman-cloud-restore of the engine's backups against the reference's, median wall times."""
    walls = {}
    for tool in TOOLS:
        known = [run.restore_wall for run in runs if (run.tool, run.provider, run.compression) == (
            tool, provider, compression) and run.ok and run.restore_wall is not None]
        if not known:
            return None
        walls[tool] = statistics.median(known)
    ratio = walls["engine"] / walls["reference"]
    return "restore %.2f s against %.2f s for the reference's backup (goal: not worse, within %.0f%% of moto's noise): %s" % (
        walls["engine"], walls["reference"], 100 * RESTORE_NOISE, "met" if ratio <= 1 + RESTORE_NOISE else "NOT met")


def table(rows: List[List[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(HEADERS, *rows)]
    lines = [HEADERS, ["-" * width for width in widths]] + rows
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines)


def goal_lines(runs: List[Run], size: int, ingest: Optional[float], jobs: int, chunk_size: int,
               floors: Dict[Tuple[str, str], float]) -> List[str]:
    """Each compression's figures against the goals of issue 8 (medians, largest peak RSS)."""
    lines = []
    memory_goal = MEMORY_GOAL_BASE + jobs * chunk_size
    for provider, compression in dict.fromkeys((run.provider, run.compression) for run in runs):
        rates = {}
        for tool in TOOLS:
            done = [run for run in runs if (run.tool, run.provider, run.compression) == (tool, provider, compression) and run.ok]
            if done:
                rates[tool] = (size / MIB / statistics.median(run.wall for run in done), max(run.peak_rss for run in done))
        if "engine" not in rates:
            continue
        rate, rss = rates["engine"]
        parts = []
        if compression in SPEED_GOALS and "reference" in rates:
            ratio = rate / rates["reference"][0]
            parts.append("%.2fx the reference (goal %.0fx): %s" % (
                ratio, SPEED_GOALS[compression], "met" if ratio >= SPEED_GOALS[compression] else "NOT met"))
            if (provider, compression) in floors:
                parts.append(floor_text(size / MIB / rate, size / MIB / (SPEED_GOALS[compression] * rates["reference"][0]),
                                        floors[provider, compression]))
        if compression == "none" and ingest and provider == "aws-s3":
            parts.append("%.0f%% of the store's raw ingest, %.1f MiB/s (goal %.0f%%): %s" % (
                100 * rate / ingest, ingest, 100 * INGEST_GOAL, "met" if rate >= INGEST_GOAL * ingest else "NOT met"))
        restore = restore_goal(runs, provider, compression)
        if restore:
            parts.append(restore)
        if chunk_size:
            parts.append("peak RSS %.0f MiB (goal 64 MB + %d x %.2f MiB = %.0f MiB): %s" % (
                rss / MIB, jobs, chunk_size / MIB, memory_goal / MIB, "met" if rss <= memory_goal else "NOT met"))
        lines.append("  %s %s: %.1f MiB/s; %s" % (STORE_NAMES[provider], compression, rate, "; ".join(parts)))
    return lines


def floor_text(wall: float, goal_wall: float, floor: float) -> str:
    return ("the goal asks for %.2f s; the store alone took %.2f s to receive the engine's objects (nothing read "
            "or compressed, no process started), and the engine %.2f s in all" % (goal_wall, floor, wall))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="100",
                        help="scale of the data sets, comma-separated for several sizes (100: about 1.5 GiB)")
    parser.add_argument("--datasets", default="pgbench",
                        help="comma-separated from %s: pgbench tables, or a table of mixed text, numbers and "
                             "incompressible bytea" % ",".join(DATASETS))
    parser.add_argument("--no-ceilings", action="store_true", help="skip the read, compressor and store ceilings")
    parser.add_argument("--sample-mib", type=int, default=128, help="data sample of the compressor ceilings, MiB")
    parser.add_argument("--compressions", default="none,gzip,lz4,zstd",
                        help="comma-separated from %s, or all" % ",".join(COMPRESSIONS))
    parser.add_argument("--providers", default="aws-s3",
                        help="comma-separated from %s, or all" % ",".join(PROVIDERS))
    parser.add_argument("--jobs", type=int, default=2, help="-J of the reference, jobs of the engine")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool per compression (medians)")
    parser.add_argument("--tools", default="reference,engine", help="reference,engine or one of them")
    parser.add_argument("--interval", type=float, default=0.05, help="memory sampling interval, seconds")
    parser.add_argument("--no-restore", dest="restore", action="store_false",
                        help="skip the barman-cloud-restore of every backup")
    parser.add_argument("--restores", type=int, default=2,
                        help="barman-cloud-restore runs of each backup (median)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (cluster, logs)")
    args = parser.parse_args(argv)
    if args.restores < 1:
        parser.error("--restores must be 1 or more (--no-restore skips the restores)")
    args.compressions = list(COMPRESSIONS) if args.compressions == "all" else args.compressions.split(",")
    args.tools = args.tools.split(",")
    args.providers = list(PROVIDERS) if args.providers == "all" else args.providers.split(",")
    args.datasets = args.datasets.split(",")
    args.scale = [int(scale) for scale in args.scale.split(",")]
    for name, chosen, allowed in (("compression", args.compressions, COMPRESSIONS), ("tool", args.tools, TOOLS),
                                  ("provider", args.providers, PROVIDERS), ("data set", args.datasets, DATASETS)):
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error("unknown %s %s; choose from %s" % (name, ", ".join(unknown), ", ".join(allowed)))
    return args


def machine_facts() -> str:
    memory = psutil.virtual_memory().total / (1 << 30)
    return "%d CPUs, %.0f GiB memory, Python %s" % (os.cpu_count() or 0, memory, sys.version.split()[0])


def one_data_set(args: argparse.Namespace, bench: Bench, dataset: str, scale: int) -> Tuple[List[str], bool]:
    """A cluster with one data set at one scale: ceilings, then every series; the report lines."""
    bench.cluster = cluster = testbed.PostgresCluster("bench", tablespace=None)
    runs: List[Run] = []
    try:
        cluster.create()
        load(cluster, dataset, scale)
        size = data_size(cluster.pgdata)
        found, ingest, chunk_size = ([], None, 0) if args.no_ceilings else ceilings(args, bench, size)
        for provider in args.providers:
            for compression in args.compressions:
                runs += bench.series(provider, compression)
    finally:
        cluster.destroy()
    out = ["", "%s data set, scale %d: %.0f MiB, jobs %d, stores on loopback" % (dataset, scale, size / MIB, args.jobs)]
    if found:
        out += ["Ceilings:"] + ["  %-95s %8.1f MiB/s  %s" % (item.what, item.mib_s, item.note) for item in found]
    out += [table(summary(runs, size)), "Goals of issue 8:"] + goal_lines(runs, size, ingest, args.jobs, chunk_size, bench.floors)
    return out, all(run.ok for run in runs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    workdir = testbed.scratch_dir("pgcloud-bench-")
    servers = {"aws-s3": testbed.MotoServer, "azure-blob-storage": local_stores.AzuriteServer,
               "google-cloud-storage": local_stores.GcsServer}
    report, ok = ["pgcloud.backup engine vs barman-cloud-backup; %s" % machine_facts()], True
    try:
        with contextlib.ExitStack() as stack:
            stores = {provider: stack.enter_context(servers[provider]()) for provider in args.providers}
            bench = Bench(args, workdir, None, stores)
            for dataset in args.datasets:
                for scale in args.scale:
                    lines, done = one_data_set(args, bench, dataset, scale)
                    report += lines
                    ok = ok and done
                    log("\n".join(lines))
    finally:
        if args.keep:
            log("work folder kept: %s" % workdir)
        else:
            testbed.remove_tree(workdir)
    print("\n".join(report))
    print("MiB/s is the data size over the wall time; x ref is engine MiB/s over reference MiB/s.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
