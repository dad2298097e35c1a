#!/usr/bin/env python
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take one base backup with this collection's engine, in a process of its own.

benchmarks/run.py starts this script the way it starts `barman-cloud-backup`, so that the
wall time, CPU time and memory of both are measured the same way (interpreter start-up and
imports included). It prints the engine's result as one JSON line on stdout.

    python benchmarks/engine_runner.py --collections-path DIR --destination s3://b/p \
        --server-name bench --endpoint-url http://127.0.0.1:PORT --host /sock --port 5432 \
        --user postgres --compression lz4 --jobs 2

Azure and GCS credentials come from the environment, as for barman-cloud-backup
(AZURE_STORAGE_CONNECTION_STRING, STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS, ...).

DIR must contain ansible_collections/pgcloud/backup (run.py makes one pointing at this
checkout); without it, the collection is looked up on sys.path and ANSIBLE_COLLECTIONS_PATH.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections-path", help="folder holding ansible_collections/pgcloud/backup")
    parser.add_argument("--destination", required=True, help="s3://BUCKET/PATH, gs://BUCKET/PATH, https://...")
    parser.add_argument("--cloud-provider", default="aws-s3")
    parser.add_argument("--server-name", default="bench")
    parser.add_argument("--endpoint-url")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--dbname", default="postgres")
    parser.add_argument("--compression", default="none", help="none, gzip, bzip2, snappy, lz4 or zstd")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args()

    started = time.monotonic()
    paths = [args.collections_path] if args.collections_path else []
    paths += [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]
    for path in reversed(paths):
        sys.path.insert(0, path)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")

    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import operations
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import (
        BackupConfig, PostgresConfig, StorageConfig)

    imported = time.monotonic()
    storage = StorageConfig(destination_url=args.destination, server_name=args.server_name,
                            cloud_provider=args.cloud_provider, endpoint_url=args.endpoint_url, jobs=args.jobs)
    postgres = PostgresConfig(host=args.host, port=args.port, user=args.user, dbname=args.dbname,
                              immediate_checkpoint=True)
    # The benchmark's cluster archives no WAL: its backups are measured, not restored with WAL.
    backup = BackupConfig(compression=None if args.compression in ("none", "") else args.compression,
                          require_wal_archiving=False)
    result = operations.take_base_backup(storage, postgres, backup)
    result["import_seconds"] = round(imported - started, 3)
    result["runner_seconds"] = round(time.monotonic() - started, 3)
    result.pop("keys", None)  # hundreds of object keys: not a figure
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
