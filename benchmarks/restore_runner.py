#!/usr/bin/env python
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore one base backup with this collection's engine, in a process of its own.

benchmarks/restore.py starts this script the way it starts `barman-cloud-restore`, so that
both are timed the same way (interpreter start-up and imports included). Prints the engine's
result as one JSON line on stdout. Credentials and emulator addresses come from the
environment, as for the reference tool.

    python benchmarks/restore_runner.py --collections-path DIR --destination s3://b/p \
        --server-name bench --endpoint-url http://127.0.0.1:PORT --jobs 2 latest /target
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections-path", help="folder holding ansible_collections/pgcloud/backup")
    parser.add_argument("--destination", required=True)
    parser.add_argument("--cloud-provider", default="aws-s3")
    parser.add_argument("--server-name", default="bench")
    parser.add_argument("--endpoint-url")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--verify", action="store_true", help="run pg_verifybackup on the copy")
    parser.add_argument("backup_id")
    parser.add_argument("target_directory")
    args = parser.parse_args()
    if args.collections_path:
        sys.path.insert(0, args.collections_path)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
    try:
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore import restore_backup
    except ImportError:  # a checkout from before the restore's own entry point (restore.py --baseline)
        from ansible_collections.pgcloud.backup.plugins.module_utils.engine.operations import restore_backup
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.options import RestoreConfig

    storage = StorageConfig(destination_url=args.destination, server_name=args.server_name,
                            cloud_provider=args.cloud_provider, endpoint_url=args.endpoint_url, jobs=args.jobs)
    options = RestoreConfig(target_directory=os.path.abspath(args.target_directory), backup_id=args.backup_id,
                            verify=args.verify, restore_command="false")
    result = restore_backup(storage, options)
    result.pop("archives", None)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
