# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restores that recover through the collection's own `pgcloud-backup wal-restore`, and the
host command `pgcloud-backup restore`.

A host as the scheduled_backup role leaves it is made in a scratch folder: <install>/bin/pgcloud-backup
(a script that runs this checkout's launcher) and <config root>/<job>/config.json with its
credentials.env (wal_host.HostCommand). The restored copy is started as in test_restore.py; the
restore spool of the job filling up proves that PostgreSQL fetched its WAL through wal-restore
(barman-cloud-wal-restore has no spool).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Dict, Tuple

from testbed import VENV_PYTHON, PostgresCluster, StorageTarget, data_fingerprint, env_command, postgres_dir
# workdir is a fixture of test_restore.py, used here by its name.
from test_restore import TABLESPACE, our_backup, promoted_copy, restore, workdir  # noqa: F401  pylint: disable=unused-import
from wal_host import LAUNCHER, HostCommand

JOB = "db1"


def installed_host(root: Path, target: StorageTarget) -> Tuple[Path, Path, HostCommand]:
    """(install dir, config root, the job of target) as the role installs them, with a job of
    another server of the same bucket before it (by name), which must never be picked."""
    config_root = postgres_dir(root / "etc", 0o755)
    decoy = HostCommand(config_root / "a-other-server")
    decoy.configure(target.with_server("other"), restore_prefetch=4)
    job = HostCommand(config_root / JOB)
    job.configure(target, restore_prefetch=4)
    install = postgres_dir(root / "install" / "bin", 0o755).parent
    command = install / "bin" / "pgcloud-backup"
    command.write_text("#!/bin/sh\nexec %s \"$@\"\n" % shlex.join(
        env_command(job.environment(), [str(VENV_PYTHON), str(LAUNCHER)])))
    command.chmod(0o755)
    return install, config_root, job


def backup_with_wal_after(source: PostgresCluster, target: StorageTarget) -> Tuple[str, Dict[str, Any]]:
    """A backup, then rows and WAL after it: only a recovery that replays the archive has them."""
    backup_id = our_backup(source, target, "lz4")
    source.execute("DROP TABLE IF EXISTS after_backup")
    source.execute("CREATE TABLE after_backup AS SELECT g FROM generate_series(1, 4321) g")
    source.switch_wal_and_wait()
    return backup_id, source.fingerprint()


def test_recovery_fetches_wal_with_the_jobs_wal_restore(source_cluster, storage, workdir):  # noqa: F811
    install, config_root, job = installed_host(workdir / "host", storage)
    backup_id, expected = backup_with_wal_after(source_cluster, storage)
    pgdata = workdir / "pgdata"

    result = restore(storage, pgdata, backup_id=backup_id, restore_command=None, install_dir=str(install),
                     job_config_root=str(config_root), tablespaces={TABLESPACE: str(workdir / "space")})

    assert result["recovery_settings"]["restore_command"] == "%s --config %s wal-restore %%f %%p" % (
        install / "bin" / "pgcloud-backup", job.config_file)
    assert not list(job.spool_dir.glob("restore-*"))
    connect = promoted_copy(pgdata)
    assert data_fingerprint(connect) == expected
    assert list(job.spool_dir.glob("restore-*")), "the WAL was not fetched by pgcloud-backup wal-restore"


def test_a_named_job_of_another_server_is_refused(source_cluster, storage, workdir):  # noqa: F811
    install, config_root, _job = installed_host(workdir / "host", storage)
    pgdata = workdir / "pgdata"
    result = restore(storage, pgdata, check=False, restore_command=None, install_dir=str(install),
                     job_config_root=str(config_root), wal_restore_job="a-other-server")
    assert result["failed"] and result["parameter"] == "wal_restore_job", result
    assert "another server_name" in result["msg"] and not pgdata.exists()


def host_restore(job: HostCommand, *arguments: str) -> Tuple[int, Dict[str, Any], str]:
    process = job.run("restore", *arguments, timeout=600)
    try:
        return process.returncode, json.loads(process.stdout), process.stderr
    except ValueError:
        raise AssertionError("no JSON on stdout (exit %d):\n%s\n%s" % (
            process.returncode, process.stdout, process.stderr)) from None


def test_host_command_restores_and_the_copy_recovers(source_cluster, storage, workdir):  # noqa: F811
    install, _config_root, job = installed_host(workdir / "host", storage)
    backup_id, expected = backup_with_wal_after(source_cluster, storage)
    pgdata = workdir / "pgdata"
    space = workdir / "space"
    common = ("--target-directory", str(pgdata), "--tablespace", "%s=%s" % (TABLESPACE, space),
              "--install-dir", str(install))

    status, planned, _log = host_restore(job, "--backup-id", "latest", "--check", *common)
    assert status == 0 and planned["backup_id"] == backup_id and planned["files_written"] == 0, planned
    assert not pgdata.exists()

    status, result, log = host_restore(job, "--jobs", "3", *common)

    assert status == 0 and result["failed"] is False and result["backup_id"] == backup_id, (result, log)
    assert result["verified"] is True and result["files_written"] > 100
    assert result["tablespaces"][0]["location"] == str(space)
    assert result["recovery_settings"]["restore_command"] == "%s --config %s wal-restore %%f %%p" % (
        install / "bin" / "pgcloud-backup", job.config_file)
    connect = promoted_copy(pgdata)
    assert data_fingerprint(connect) == expected


def test_host_command_refuses_bad_flags_with_the_option_named(source_cluster, storage, workdir):  # noqa: F811
    _install, _config_root, job = installed_host(workdir / "host", storage)
    our_backup(source_cluster, storage, "lz4")
    occupied = postgres_dir(workdir / "occupied")
    (occupied / "PG_VERSION").write_text("15\n")
    cases = [
        (("--target-directory", str(occupied)), "target_directory", "is not empty"),
        (("--target-directory", str(workdir / "new"), "--recovery-target-time", "2020-01-01 00:00:00+00"),
         "recovery_target_time", "is before the end of backup"),
        (("--target-directory", str(workdir / "new"), "--tablespace", "no-equals-sign"), "tablespaces", "NAME=PATH"),
        (("--target-directory", str(workdir / "new"), "--backup-id", "20200101T000000"), None, "20200101T000000"),
    ]
    for arguments, parameter, words in cases:
        status, result, log = host_restore(job, *arguments)
        assert status in (1, 2) and result["failed"] is True, (arguments, result, log)
        assert result.get("parameter") == parameter and words in result["msg"], (arguments, result)
    assert not (workdir / "new").exists() and sorted(p.name for p in occupied.iterdir()) == ["PG_VERSION"]
