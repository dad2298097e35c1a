# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled_backup role sets WAL archiving up (issue 19): archive_mode and archive_command
through ALTER SYSTEM, with the host command it installs, on clusters of this file's own.

As in test_scheduled_backup.py, the role writes under a scratch root and the job's service is
run by hand. systemd is not PID 1 here: without pgcloud_backup_postgresql_service the role must
warn and record that a restart is needed, and the test restarts the cluster with pg_ctl; with
it, the role restarts the service it names, here a SysV init script of the test's own that
runs pg_ctl (ansible.builtin.service uses `service` where systemd does not run). The judges
are the server's own view (pg_file_settings, pg_stat_archiver) and barman-cloud-restore plus
barman-cloud-wal-restore, which recover a point in time from what the command archived.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import test_scheduled_backup
from test_host_pythons import STORE_SERVERS, bucket_target, storage_vars
from test_scheduled_backup import JOB, apply, changed, job_files, role_vars, run_service
from test_wal import barman_restore
from testbed import (INTEGRATION_DIR, MotoServer, PlaybookResult, PostgresCluster, StorageTarget, TaskResult,
                     as_postgres, backup_list, remove_tree, restore_and_verify, run_playbook,
                     scratch_dir)

PLAYBOOK = INTEGRATION_DIR / "playbooks" / "scheduled_backup.yml"
# The scratch stand-in for the host's / of test_scheduled_backup.py, as a fixture of this file too.
host_root = test_scheduled_backup.host_root
FOREIGN_COMMAND = "/bin/true %p"
WARNING_TASK = "Warn that PostgreSQL must restart"
RESTART_TASK = "Restart PostgreSQL, for archive_mode to take effect"
# The stores besides moto's S3, which the first tests use.
OTHER_STORES = sorted(set(STORE_SERVERS) - {"aws-s3"})


class FreshCluster(PostgresCluster):
    """A cluster with pgbench data at scale 1 and no tablespace; archive_mode off, or archiving
    with a foreign archive_command in postgresql.conf."""

    def __init__(self, foreign: bool) -> None:
        super().__init__("walrole", tablespace=None)
        self.foreign = foreign

    def _settings(self) -> Dict[str, str]:
        settings = super()._settings()
        if self.foreign:
            settings.update({"archive_mode": "on", "archive_command": "'%s'" % FOREIGN_COMMAND})
        return settings

    def archiving(self) -> Dict[str, Tuple[str, str]]:
        """name -> (value, file) of archive_mode and archive_command as configured (the last entry wins)."""
        return {name: (value, Path(source).name) for name, value, source in self.psql(
            "SELECT name, setting, sourcefile FROM pg_file_settings WHERE name IN ('archive_mode', 'archive_command') "
            "ORDER BY seqno")}

    def running_mode(self) -> str:
        return str(self.scalar("SELECT setting FROM pg_settings WHERE name = 'archive_mode'"))

    def auto_conf(self) -> str:
        return (self.pgdata / "postgresql.auto.conf").read_text()

    def restart(self) -> None:
        self.stop()
        self.start()


def fresh_cluster(foreign: bool) -> Iterator[FreshCluster]:
    with FreshCluster(foreign) as cluster:
        cluster.load_data(1)
        yield cluster


@pytest.fixture
def cluster() -> Iterator[FreshCluster]:
    yield from fresh_cluster(False)


@pytest.fixture
def foreign_cluster() -> Iterator[FreshCluster]:
    yield from fresh_cluster(True)


@pytest.fixture
def target(moto: MotoServer) -> Iterator[StorageTarget]:
    bucket = moto.create_bucket()
    yield moto.target(bucket, "pg/walrole", "walrole")
    with contextlib.suppress(Exception):
        moto.delete_bucket(bucket)


def archiving_vars(root: Path, target: StorageTarget, cluster: PostgresCluster, **extra: Any) -> Dict[str, Any]:
    return role_vars(root, target, cluster, pgcloud_backup_wal_archiving=True, **extra)


def expected_command(root: Path) -> str:
    launcher = root / "opt/pgcloud-backup-job/bin/pgcloud-backup"
    return "%s --config %s wal-archive %%p" % (launcher, root / "etc/pgcloud-backup" / JOB / "config.json")


def ran(result: PlaybookResult, name: str) -> List[TaskResult]:
    """The results of the role's tasks of that name that ran (not skipped)."""
    return [task for task in result.tasks if task.name.endswith(" : " + name) and task.status != "skipped"]


def warnings(result: PlaybookResult) -> List[str]:
    return [task.result.get("msg", "") for task in ran(result, WARNING_TASK)]


def wal_keys(moto: MotoServer, target: StorageTarget) -> List[str]:
    return list(moto.list_keys(target.bucket, target.server_prefix + "wals/"))


def moment_between_writes(cluster: PostgresCluster) -> Tuple[str, Dict[str, Any]]:
    """Rows committed, then the moment and the data at it, then more rows committed after it."""
    cluster.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 1, 1, g, g, now() "
                    "FROM generate_series(1, 500) g")
    fingerprint = cluster.fingerprint()
    moment = str(cluster.scalar("SELECT clock_timestamp()::text"))
    time.sleep(0.5)
    cluster.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) SELECT 2, 1, g, g, now() "
                    "FROM generate_series(1, 700) g")
    return moment, fingerprint


def recover_to(moment: str) -> Any:
    def settings(pgdata: Path) -> None:
        with open(pgdata / "postgresql.auto.conf", "a") as config:
            config.write("recovery_target_time = '%s'\nrecovery_target_action = 'promote'\n" % moment)
    return settings


def test_role_sets_archiving_up_and_recovery_reaches_a_point_in_time(
        host_root: Path, moto: MotoServer, target: StorageTarget, cluster: FreshCluster) -> None:
    variables = archiving_vars(host_root, target, cluster)
    command = expected_command(host_root)
    before = cluster.archiving()
    assert before == {} and cluster.running_mode() == "off"

    # Check mode on a bare host: nothing to ask the server with yet, and nothing changes.
    assert changed(apply(variables, check=True)) > 0
    assert cluster.archiving() == before and "archive" not in cluster.auto_conf()

    first = apply(variables)
    assert [task.status for task in ran(first, "Set archive_mode and archive_command (ALTER SYSTEM, then reload)")] \
        == ["changed"]
    assert cluster.archiving() == {"archive_mode": ("on", "postgresql.auto.conf"),
                                   "archive_command": (command, "postgresql.auto.conf")}
    assert cluster.running_mode() == "off"
    # archive_mode waits for a restart that the role could not do: a warning, and the fact recorded.
    assert len(warnings(first)) == 1 and "pgcloud_backup_postgresql_service" in warnings(first)[0]
    state_file = host_root / "var/lib/pgcloud-backup" / JOB / "wal-archiving.json"
    assert json.loads(state_file.read_text())["restart_required"] is True
    launcher = host_root / "opt/pgcloud-backup-job/bin/pgcloud-backup"
    assert launcher.stat().st_mode & 0o777 == 0o755 and launcher.stat().st_uid == 0
    spool = host_root / "var/lib/pgcloud-backup" / JOB / "wal-spool"
    assert spool.owner() == "postgres" and spool.stat().st_mode & 0o777 == 0o700

    # The job's status file carries it (the backup itself fails: the server does not archive yet).
    service = host_root / "etc/systemd/system" / ("%s.service" % JOB)
    run_service(service)
    status = json.loads((host_root / "var/lib/pgcloud-backup" / JOB / "status.json").read_text())
    assert status["wal_archiving_setup"]["restart_required"] is True, status

    # Idempotent before the restart (still warned), and after it (then nothing to warn about).
    again = apply(variables)
    assert changed(again) == 0 and len(warnings(again)) == 1
    cluster.restart()
    assert cluster.running_mode() == "on"
    after_restart = apply(variables)
    assert warnings(after_restart) == [] and json.loads(state_file.read_text())["restart_required"] is False
    assert changed(apply(variables)) == 0

    # WAL written during and after the job's base backup, archived by the command, replayed to a moment.
    with cluster.pgbench_running(clients=1, rate=50):
        backed_up = run_service(service)
    assert backed_up.returncode == 0, backed_up.stderr
    backups = backup_list(target)
    assert [backup["status"] for backup in backups] == ["DONE"]
    moment, fingerprint_then = moment_between_writes(cluster)
    cluster.switch_wal_and_wait()
    assert cluster.scalar("SELECT failed_count FROM pg_stat_archiver") == 0
    # The segments are in the job's compression (pgcloud_backup_compression: zstd), as the command stores them.
    segments = [key.rsplit("/", 1)[1] for key in wal_keys(moto, target) if re.search(r"/[0-9A-F]{24}(\.\w+)?$", key)]
    assert segments and all(name.endswith(".zst") for name in segments), segments
    restored = restore_and_verify(target, backups[0]["backup_id"], before_start=recover_to(moment))
    assert restored.amcheck_returncode == 0, restored.amcheck_output
    assert restored.fingerprint == fingerprint_then
    assert restored.fingerprint != cluster.fingerprint()

    # Removal puts back what was there: archive_mode off (after a restart, again warned) and no command.
    absent = apply(dict(variables, pgcloud_backup_state="absent"))
    assert len(warnings(absent)) == 1
    assert "archive" not in cluster.auto_conf() and cluster.archiving() == {}


def test_foreign_archive_command_is_refused_then_replaced_and_put_back(
        host_root: Path, moto: MotoServer, target: StorageTarget, foreign_cluster: FreshCluster) -> None:
    cluster = foreign_cluster
    variables = archiving_vars(host_root, target, cluster)
    before = cluster.archiving()
    assert before == {"archive_mode": ("on", "postgresql.conf"), "archive_command": (FOREIGN_COMMAND, "postgresql.conf")}
    assert cluster.running_mode() == "on"

    refused = run_playbook(PLAYBOOK, variables)
    assert refused.rc != 0
    assert "archive_command = '%s'" % FOREIGN_COMMAND in refused.stdout, refused.output
    assert "pgcloud_backup_wal_archiving_replace: true" in refused.stdout, refused.output
    assert cluster.archiving() == before and "archive" not in cluster.auto_conf()

    replace = dict(variables, pgcloud_backup_wal_archiving_replace=True)
    assert changed(apply(replace, check=True)) > 0
    assert cluster.archiving() == before and "archive" not in cluster.auto_conf()

    replaced = apply(replace)
    command = expected_command(host_root)
    assert cluster.archiving()["archive_command"] == (command, "postgresql.auto.conf")
    # archive_mode was on already: no restart.
    assert warnings(replaced) == []
    assert changed(apply(replace)) == 0
    segment = cluster.switch_wal_and_wait()
    assert any(segment in key for key in wal_keys(moto, target))

    absent = dict(replace, pgcloud_backup_state="absent")
    assert changed(apply(absent, check=True)) > 0
    assert cluster.archiving()["archive_command"] == (command, "postgresql.auto.conf")
    removed = apply(absent)
    assert warnings(removed) == []
    assert cluster.archiving() == before and "archive" not in cluster.auto_conf()
    assert changed(apply(absent)) == 0


# --- the restart through the server's service, on the other stores ------------------------------

@contextlib.contextmanager
def init_script(cluster: PostgresCluster) -> Iterator[Tuple[str, Path]]:
    """A SysV init script starting and stopping the cluster with pg_ctl, as the postgres user;
    (its service name, the file where it logs each action it is asked for)."""
    name = "pgcloud-test-%s" % cluster.port
    actions = scratch_dir("pgcloud-tests-initd-") / "actions.log"
    pg_ctl = [str(cluster.pg_bin / "pg_ctl"), "-D", str(cluster.pgdata), "-w", "-t", "120"]
    script = Path("/etc/init.d") / name
    script.write_text("\n".join([
        "#!/bin/sh",
        "# The PostgreSQL service of a test of test_wal_archiving_role.py.",
        "echo \"$1\" >> %s" % shlex.quote(str(actions)),
        'case "$1" in',
        "  start) exec %s ;;" % shlex.join(as_postgres(pg_ctl + ["-l", str(cluster.log_file), "start"])),
        "  stop) exec %s ;;" % shlex.join(as_postgres(pg_ctl + ["-m", "fast", "stop"])),
        '  restart) "$0" stop && exec "$0" start ;;',
        "  status) exec %s ;;" % shlex.join(as_postgres(pg_ctl[:3] + ["status"])),
        '  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;',
        "esac", ""]))
    script.chmod(0o755)
    try:
        yield name, actions
    finally:
        script.unlink()
        remove_tree(actions.parent)


def restarts(actions: Path) -> List[str]:
    """The actions the init script was asked for, but status."""
    return [action for action in actions.read_text().split() if action != "status"]


def store_role_vars(root: Path, target: StorageTarget, cluster: PostgresCluster, **extra: Any) -> Dict[str, Any]:
    """The role's variables for an Azure or GCS target: its storage variables, none of S3's."""
    variables = archiving_vars(root, target, cluster, **extra)
    for name in ("pgcloud_backup_endpoint_url", "pgcloud_backup_aws_access_key", "pgcloud_backup_aws_secret_key"):
        del variables[name]
    variables.update(storage_vars(target))
    # PostgreSQL runs archive_command with the launcher's environment, which this is part of.
    variables["pgcloud_backup_job_environment"] = {**variables["pgcloud_backup_job_environment"],
                                                   **target.module_env()}
    return variables


def test_a_service_the_host_lacks_is_refused_before_any_change(
        host_root: Path, target: StorageTarget, cluster: FreshCluster) -> None:
    variables = archiving_vars(host_root, target, cluster, pgcloud_backup_postgresql_service="postgresql@99-nowhere")
    refused = run_playbook(PLAYBOOK, variables)
    assert refused.rc != 0
    assert "pgcloud_backup_postgresql_service: the host has no service postgresql@99-nowhere" in refused.stdout, \
        refused.output
    assert job_files(host_root) == [] and cluster.archiving() == {} and "archive" not in cluster.auto_conf()


@pytest.fixture
def store_target(request: pytest.FixtureRequest) -> Iterator[StorageTarget]:
    """A container of Azurite's or a bucket of the GCS emulator's, by the test's `store`."""
    yield from bucket_target(request, request.node.callspec.params["store"], "pg/walrole", "walrole")


def fetched_by_barman(target: StorageTarget, segment: str) -> bytes:
    """The segment as barman-cloud-wal-restore gives it back from the store."""
    folder = scratch_dir("pgcloud-tests-walfetch-")
    try:
        return barman_restore(target, segment, folder / segment)
    finally:
        remove_tree(folder)


@pytest.mark.parametrize("store", OTHER_STORES)
def test_role_restarts_the_named_service_and_archives_to_the_store(
        store: str, host_root: Path, store_target: StorageTarget, cluster: FreshCluster) -> None:
    with init_script(cluster) as (service, actions):
        variables = store_role_vars(host_root, store_target, cluster, pgcloud_backup_postgresql_service=service)
        assert cluster.running_mode() == "off"
        first = apply(variables)
        assert [task.status for task in ran(first, RESTART_TASK)] == ["changed"]
        # service_facts and ansible.builtin.service ask for the status too.
        assert warnings(first) == [] and restarts(actions) == ["stop", "start"]
        assert cluster.running_mode() == "on"
        state_file = host_root / "var/lib/pgcloud-backup" / JOB / "wal-archiving.json"
        assert json.loads(state_file.read_text()) == {"reason": None, "restart_required": False}
        # Nothing to change, so no second restart.
        second = apply(variables)
        assert changed(second) == 0 and ran(second, RESTART_TASK) == []
        assert restarts(actions) == ["stop", "start"]

        # The role's archive_command stores a segment that barman-cloud-wal-restore gives back whole.
        segment = cluster.switch_wal_and_wait()
        written = (cluster.pgdata / "pg_wal" / segment).read_bytes()
        assert cluster.scalar("SELECT failed_count FROM pg_stat_archiver") == 0
        assert fetched_by_barman(store_target, segment) == written, store
