# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A restore imports what it uses: its start-up is part of its time (benchmarks/README.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COLLECTION = "ansible_collections.pgcloud.backup.plugins."
# Loaded only by backups, snapshots and other stores; an S3 restore needs botocore alone (and the
# snapshot recovery's plain data classes, snapshot.base, but no provider).
NOT_FOR_A_RESTORE = ("psycopg2", "boto3", "s3transfer", "azure", "google", COLLECTION + "module_utils.engine.jobs",
                     COLLECTION + "module_utils.engine.postgres", COLLECTION + "module_utils.engine.snapshot.aws",
                     COLLECTION + "module_utils.engine.snapshot.gcp", COLLECTION + "module_utils.engine.snapshot.factory",
                     COLLECTION + "module_utils.engine.snapshot.azure",
                     COLLECTION + "module_utils.engine.operations", COLLECTION + "module_utils.engine.storage.azure",
                     COLLECTION + "module_utils.engine.storage.gcs")


@pytest.mark.parametrize("entry", [
    COLLECTION + "modules.restore",
    COLLECTION + "module_utils.engine.restore.job",
])
def test_a_restore_imports_no_backup_job_nor_other_sdk(entry):
    code = ("import importlib, sys\n"
            "importlib.import_module(%r)\n"
            "importlib.import_module(%r)\n"
            "print('\\n'.join(sorted(sys.modules)))\n" % (entry, COLLECTION + "module_utils.engine.storage.s3"))
    # The collection as this process finds it (ansible-test units puts it on sys.path, not in PYTHONPATH).
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    loaded = result.stdout.split()
    assert "botocore.session" in loaded
    assert [name for name in loaded if name.startswith(NOT_FOR_A_RESTORE)] == []
