#!/usr/bin/env python
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""This collection's restore against `barman-cloud-restore`: same backup, same store, one run.

For each data set (pgbench, the mixed table of run.py) and compression, takes one backup with
each tool (the engine and `barman-cloud-backup`) into moto, then restores each backup with
both restore tools in turn, `--repeat` times, alternating their order, into an empty folder
(tmpfs when it has room), and checks that every byte of PGDATA came back. Prints the median
wall times, their ratio, the median CPU times (user and system: on a loaded machine the wall
times follow them), and the store's read floor: the time the engine's S3 client takes to read
the backup's objects, `--jobs` at a time, with nothing decoded or written. The serial floor
bounds any restore through boto3 from below, however parallel: a Python process's start-up to
an S3 client, then the largest archive's first byte (one GET alone), then that archive's
decoding on one core from memory; "x at serial floor" is the reference's time over it.

    source /opt/pgcloud-backup/env.sh
    python benchmarks/restore.py --scale 10 --datasets pgbench,mixed --compressions lz4,zstd
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  pylint: disable=wrong-import-position
from run import MIB, SERVER_NAME, log, testbed  # noqa: E402  pylint: disable=wrong-import-position

TOOLS = ("reference", "engine")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--datasets", default="pgbench,mixed")
    parser.add_argument("--compressions", default="lz4,zstd")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--baseline", type=Path,
                        help="another checkout of the collection (for example `git archive` of an older commit): "
                             "its engine restores each backup too, in the same alternation, in column 'baseline s'")
    return parser.parse_args(argv)


class RestoreBench:
    def __init__(self, args: argparse.Namespace, workdir: Path, moto: testbed.MotoServer,
                 cluster: testbed.PostgresCluster) -> None:
        self.args = args
        self.moto = moto
        self.cluster = cluster
        self.tools = TOOLS + (("baseline",) if args.baseline else ())
        self.collections = self._link(workdir / "collections", bench.REPO)
        self.baseline = self._link(workdir / "baseline", args.baseline.resolve()) if args.baseline else None
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.start_up = self.client_start()

    @staticmethod
    def _link(collections: Path, checkout: Path) -> Path:
        link = collections / "ansible_collections" / "pgcloud" / "backup"
        link.parent.mkdir(parents=True)
        link.symlink_to(checkout)
        # The engine runs as postgres, who may not write __pycache__ in the checkout (see run.py).
        bench.compileall.compile_dir(str(checkout / "plugins"), quiet=1)
        return collections

    def backup(self, tool: str, compression: str, target: testbed.StorageTarget) -> None:
        connection = ["--host", str(self.cluster.socket_dir), "--port", str(self.cluster.port),
                      "--user", testbed.POSTGRES_USER]
        if tool == "reference":
            command = testbed.barman_cloud_command(
                "backup", target, "-J", str(self.args.jobs), "--immediate-checkpoint",
                *testbed.REFERENCE_COMPRESSION_FLAGS[compression], *connection, target.url, target.server_name)
        else:
            command = testbed.env_command({**testbed.tool_env(), **dict(target.tool_env)}, [
                str(testbed.VENV_PYTHON), str(HERE / "engine_runner.py"), "--collections-path", str(self.collections),
                *target.tool_arguments(), "--jobs", str(self.args.jobs), "--compression", compression, "--quiet",
                *connection, "--destination", target.url, "--server-name", target.server_name])
        testbed.run(testbed.as_postgres(command), timeout=7200)

    def restore_command(self, tool: str, target: testbed.StorageTarget, folder: Path) -> List[str]:
        if tool == "reference":
            return testbed.as_postgres(testbed.barman_cloud_command(
                "restore", target, target.url, target.server_name, "latest", str(folder)))
        collections = self.baseline if tool == "baseline" else self.collections
        return testbed.as_postgres(testbed.env_command({**testbed.tool_env(), **dict(target.tool_env)}, [
            str(testbed.VENV_PYTHON), str(HERE / "restore_runner.py"), "--collections-path", str(collections),
            "--endpoint-url", target.endpoint_url, "--jobs", str(self.args.jobs), "--destination", target.url,
            "--server-name", target.server_name, "latest", str(folder)]))

    def restore_once(self, tool: str, target: testbed.StorageTarget, name: str) -> Tuple[float, int, float]:
        folder = bench.restore_folder(self.cluster.pgdata)
        try:
            bench.os.sync()
            result = bench.measure(tool, "aws-s3", "", self.restore_command(tool, target, folder / "pgdata"),
                                   self.logs / name, 0.05, with_pss=False)
            size, expected = bench.data_size(folder / "pgdata"), bench.data_size(self.cluster.pgdata)
            if not result.ok or abs(size - expected) > expected // 100:
                raise RuntimeError("%s restore: exit %d, %d of %d bytes: %s" % (
                    tool, result.returncode, size, expected, (self.logs / name).with_suffix(".err").read_text()[-2000:]))
            return result.wall, result.peak_rss, result.cpu
        finally:
            testbed.remove_tree(folder)

    def _store(self, target: testbed.StorageTarget) -> Any:
        """The engine's ObjectStore for the backup's bucket."""
        if str(self.collections) not in sys.path:
            sys.path.insert(0, str(self.collections))
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store

        bench.os.environ.update(testbed.FAKE_AWS_ENV)
        return open_store(StorageConfig(destination_url=target.url, server_name=SERVER_NAME,
                                        endpoint_url=target.endpoint_url, jobs=self.args.jobs))

    def read_floor(self, target: testbed.StorageTarget) -> float:
        """Seconds for the engine's S3 client to read every object of the backup, jobs at a time,
        in the restore's pieces, with nothing decoded or written."""
        store = self._store(target)
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.download import PIECE_SIZE

        def read_whole(key: str) -> int:
            stream, total = store.open_read(key), 0
            for piece in iter(lambda: stream.read(PIECE_SIZE), b""):
                total += len(piece)
            stream.close()
            return total

        keys = [item.key for item in sorted(store.list_objects(target.server_prefix), key=lambda item: -item.size)]
        started = time.perf_counter()
        with ThreadPoolExecutor(self.args.jobs) as pool:
            list(pool.map(read_whole, keys))
        return time.perf_counter() - started

    def largest_archive(self, target: testbed.StorageTarget) -> Tuple[float, float]:
        """(seconds to the first byte, seconds to decode) of the backup's largest archive: one GET
        alone, then its decoding on one core from memory, in the restore's pieces, nothing written.
        A restore can neither start decoding that archive before its first byte comes nor split
        the decoding of one compressed stream between cores."""
        store = self._store(target)
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine import layout
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.archive.compression import (
            compression_of_extension, open_decoded)
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.download import PIECE_SIZE
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.tar_reader import READ_SIZE

        archives = [(item, match) for item in store.list_objects(target.server_prefix)
                    for match in [layout.ARCHIVE_NAME.match(item.key.rsplit("/", 1)[-1])] if match]
        largest, name = max(archives, key=lambda archive: archive[0].size)
        started = time.perf_counter()
        stream = store.open_read(largest.key)
        pieces = [stream.read(PIECE_SIZE)]
        first_byte = time.perf_counter() - started
        pieces.extend(iter(lambda: stream.read(PIECE_SIZE), b""))
        stream.close()
        compression = compression_of_extension(name.group("extension"))
        remaining = iter(pieces)
        decoded = open_decoded(compression, lambda _size: next(remaining, b""))
        started = time.perf_counter()
        while decoded.read(READ_SIZE):
            pass
        return first_byte, time.perf_counter() - started

    def client_start(self) -> float:
        """Seconds for a Python process to import botocore and make an S3 client, as any restore
        through boto3 does first (median of three)."""
        script = ("import botocore.session; botocore.session.get_session().create_client('s3', region_name='us-east-1',"
                  " endpoint_url='http://127.0.0.1:9', aws_access_key_id='x', aws_secret_access_key='y')")
        command = testbed.env_command(testbed.tool_env(), [str(testbed.VENV_PYTHON), "-c", script])
        times = []
        for _repetition in range(3):
            started = time.perf_counter()
            subprocess.run(command, check=True)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def series(self, dataset: str, compression: str, backup_tool: str) -> List[str]:
        bucket = self.moto.create_bucket("restore-%s-%s-%s" % (dataset, compression, backup_tool))
        target = self.moto.target(bucket, "pg", SERVER_NAME)
        log("%s, %s: backup by %s" % (dataset, compression, backup_tool))
        self.backup(backup_tool, compression, target)
        stored = sum(self.moto.list_objects(bucket).values())
        walls: Dict[str, List[float]] = {tool: [] for tool in self.tools}
        cpus: Dict[str, List[float]] = {tool: [] for tool in self.tools}
        peaks: Dict[str, int] = dict.fromkeys(self.tools, 0)
        for repetition in range(self.args.repeat):
            for tool in self.tools if repetition % 2 == 0 else reversed(self.tools):
                wall, peak, cpu = self.restore_once(tool, target, "%s-%s-%s-%s-%d" % (
                    dataset, compression, backup_tool, tool, repetition))
                walls[tool].append(wall)
                cpus[tool].append(cpu)
                peaks[tool] = max(peaks[tool], peak)
                log("  %s restore: %.2f s, %.2f s of CPU, peak RSS %.0f MiB" % (tool, wall, cpu, peak / MIB))
        floor = statistics.median(self.read_floor(target) for _repetition in range(self.args.repeat))
        first_byte, decode = (statistics.median(values) for values in zip(
            *(self.largest_archive(target) for _repetition in range(self.args.repeat))))
        serial_floor = self.start_up + first_byte + decode
        self.moto.delete_bucket(bucket)
        reference, engine = (statistics.median(walls[tool]) for tool in TOOLS)
        row = [dataset, compression, "barman-cloud-backup" if backup_tool == "reference" else "engine",
               "%.0f" % (stored / MIB), "%.2f" % reference, "%.2f" % engine, "%.2f" % (reference / engine),
               "%.2f" % floor, "%.2f" % first_byte, "%.2f" % decode, "%.2f" % serial_floor,
               "%.2f" % (reference / serial_floor), "%.0f" % (peaks["reference"] / MIB),
               "%.0f" % (peaks["engine"] / MIB),
               "%.2f" % statistics.median(cpus["reference"]), "%.2f" % statistics.median(cpus["engine"])]
        if self.baseline:
            baseline = statistics.median(walls["baseline"])
            row += ["%.2f" % baseline, "%.2f" % (reference / baseline), "%.2f" % statistics.median(cpus["baseline"])]
        return row


HEADERS = ["data set", "compression", "backup by", "stored MiB", "barman-cloud-restore s", "engine s", "x faster",
           "read floor s", "first byte s", "decode s", "serial floor s", "x at serial floor", "ref RSS MiB",
           "engine RSS MiB", "ref CPU s", "engine CPU s"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rows: List[List[str]] = []
    start_ups: List[float] = []
    workdir = testbed.scratch_dir("pgcloud-restore-bench-")
    with testbed.MotoServer() as moto:
        for dataset in args.datasets.split(","):
            with testbed.PostgresCluster("restore-bench", tablespace=None) as cluster:
                bench.load(cluster, dataset, args.scale)
                runner = RestoreBench(args, testbed.postgres_dir(workdir / dataset, 0o755), moto, cluster)
                start_ups.append(runner.start_up)
                for compression in args.compressions.split(","):
                    for backup_tool in TOOLS:
                        moto.restart()
                        rows.append(runner.series(dataset, compression, backup_tool))
                log("data: %.0f MiB of PGDATA" % (bench.data_size(cluster.pgdata) / MIB))
    print(bench.machine_facts())
    print("scale %d, jobs %d, medians of %d restores each" % (args.scale, args.jobs, args.repeat))
    print("serial floor: S3 client start-up (%s s) + first byte + decode of the largest archive"
          % ", ".join("%.2f" % value for value in start_ups))
    headers = HEADERS + (["baseline s", "baseline x faster", "baseline CPU s"] if args.baseline else [])
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    for line in [headers, ["-" * width for width in widths]] + rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    testbed.remove_tree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
