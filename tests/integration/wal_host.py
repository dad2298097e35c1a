# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host command `pgcloud-backup` of this checkout in the test bed, and a cluster that archives
its WAL with it (test_wal.py).

The command runs as the postgres OS user, as archive_command and restore_command run it, from
the venv's interpreter, with a job config written as the scheduled_backup role writes it
(config.json, credentials.env) in a folder of its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from testbed import (
    COLLECTION_ROOT,
    FAKE_AWS_ENV,
    VENV_PYTHON,
    PostgresCluster,
    StorageTarget,
    as_postgres,
    chown_postgres,
    env_command,
    postgres_dir,
    tool_env,
)

LAUNCHER = COLLECTION_ROOT / "roles" / "scheduled_backup" / "files" / "pgcloud-backup"
LAUNCHER_FLAGS = "-IS"


def run_detached(command: List[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """subprocess.run with stdout and stderr through temporary files (see HostCommand.run)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.run(command, stdout=stdout, stderr=stderr, timeout=timeout, check=False)
        stdout.seek(0)
        stderr.seek(0)
        return subprocess.CompletedProcess(command, process.returncode, stdout.read().decode(errors="replace"),
                                           stderr.read().decode(errors="replace"))


class HostCommand:
    """`pgcloud-backup --config ROOT/config.json ...` as the postgres user."""

    def __init__(self, root: Path) -> None:
        self.root = postgres_dir(root, 0o755)
        # The engine is imported from a library folder, as on a host: ansible_collections/pgcloud/backup.
        self.library = root / "lib"
        (self.library / "ansible_collections" / "pgcloud").mkdir(parents=True)
        (self.library / "ansible_collections" / "pgcloud" / "backup").symlink_to(COLLECTION_ROOT)
        self.config_file = root / "config.json"
        self.credentials_file = root / "credentials.env"
        self.spool_dir = postgres_dir(root / "spool", 0o700)
        self.credentials_file.write_text("AWS_ACCESS_KEY_ID=%s\nAWS_SECRET_ACCESS_KEY=\"%s\"\n" % (
            FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"], FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"]))
        self.credentials_file.chmod(0o600)
        chown_postgres(self.credentials_file)

    def configure(self, target: StorageTarget, endpoint_url: Optional[str] = None, **wal: Any) -> None:
        """Write config.json for target (endpoint_url overrides the target's: a closed port, an outage)."""
        storage = {"destination_url": target.url, "server_name": target.server_name,
                   "cloud_provider": target.cloud_provider, "endpoint_url": endpoint_url or target.endpoint_url}
        config = {"job_name": "pgcloud-backup", "log_level": "INFO", "credentials_file": str(self.credentials_file),
                  "storage": storage, "wal": {"spool_dir": str(self.spool_dir), **wal}}
        staging = self.config_file.with_suffix(".tmp")
        staging.write_text(json.dumps(config))
        staging.chmod(0o644)
        staging.replace(self.config_file)

    def environment(self) -> Dict[str, str]:
        # The credentials come from credentials.env only: the fake keys are not in the environment.
        env = {key: value for key, value in tool_env().items() if key not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        env["PGCLOUD_BACKUP_LIBRARY"] = str(self.library)
        return env

    def command(self, *arguments: str) -> List[str]:
        # -IS as the role's shebang line of the launcher: no site module on the fast path.
        return env_command(self.environment(), [str(VENV_PYTHON), LAUNCHER_FLAGS, str(LAUNCHER), "--config",
                                                str(self.config_file), *arguments])

    def run(self, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the command; its output through files, not pipes: the archive worker it may start
        inherits stderr (PostgreSQL's log) and would hold a pipe open after the call returns."""
        return run_detached(as_postgres(self.command(*arguments)), timeout)

    def markers(self) -> List[str]:
        """The names recorded as stored, in every target's folder (not the claims and the lock)."""
        return sorted(name for folder in self.spool_dir.glob("archived-*") for name in os.listdir(folder)
                      if not name.startswith("."))

    def worker_running(self) -> bool:
        """Whether an archive worker holds the lock of one of the targets."""
        for lock in self.spool_dir.glob("archived-*/.worker.lock"):
            with open(lock, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
        return False

    def spooled(self) -> List[str]:
        """The names prefetched for restore, in every target's folder."""
        return sorted(name for folder in self.spool_dir.glob("restore-*") for name in os.listdir(folder))


class WalCluster(PostgresCluster):
    """A cluster whose archive_command is `pgcloud-backup wal-archive %p` (through a script that
    also keeps a copy of every file it is called for, in `copies`, to compare restores with)."""

    def __init__(self, name: str = "walsrc") -> None:
        super().__init__(name, tablespace=None)
        self.host = HostCommand(self.root / "host")
        self.copies = postgres_dir(self.root / "copies", 0o755)
        self._wal_script = self.root / "archive-with-pgcloud-backup.sh"
        self._wal_script.write_text("#!/bin/sh\ncp \"$1\" %s/\nexec %s wal-archive \"$1\"\n" % (
            shlex.quote(str(self.copies)), shlex.join(self.host.command())))
        self._wal_script.chmod(0o755)

    def _settings(self) -> Dict[str, str]:
        settings = super()._settings()
        settings.update({"archive_mode": "on", "archive_command": "'%s %%p'" % self._wal_script})
        return settings


class CollectionArchivedCluster(PostgresCluster):
    """A cluster (any major, with its tablespace) whose archive_command is this checkout's
    `pgcloud-backup wal-archive %p` to `target`, as the scheduled_backup role sets it: the WAL
    that barman's restore tools replay in the tests is then the collection's."""

    def __init__(self, name: str, target: StorageTarget, **options: Any) -> None:
        super().__init__(name, **options)
        self.host = HostCommand(self.root / "host")
        self.host.configure(target)
        self._wal_script = self.root / "archive-with-pgcloud-backup.sh"
        self._wal_script.write_text("#!/bin/sh\nexec %s wal-archive \"$1\"\n" % shlex.join(self.host.command()))
        self._wal_script.chmod(0o755)

    def _settings(self) -> Dict[str, str]:
        settings = super()._settings()
        settings.update({"archive_mode": "on", "archive_command": "'%s %%p'" % self._wal_script})
        return settings
