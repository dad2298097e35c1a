# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/restore_drill.yml on a fleet of two servers (the session's source and a second
cluster, each archiving its WAL under its own server name) and a drill host, all local
connections, the modules on a host venv's Python and become_user postgres (sudo, pipelining,
as test_host_pythons.py runs the playbooks).

A healthy fleet passes, each server restored, recovered to the end of its archive, checked and
cleaned up; after one data archive of one server's backup is removed from the store, the play
fails, names that server, still passes the other, and leaves nothing running or on disk. Two
copies of the second server's archive fail too: one with a WAL segment after the backup
removed (a gap), one with it damaged (recovery ends before the newest segment). The second run
is on the oldest ansible-core the collection supports (2.16), the first on the newest.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Dict

from testbed import (
    COLLECTION_ROOT,
    FAKE_AWS_ENV,
    OLDEST_ANSIBLE_BIN,
    MotoServer,
    PostgresCluster,
    StorageTarget,
    free_port,
    host_python,
    postgres_dir,
    remove_tree,
    run_inventory_playbook,
    scratch_dir,
)
from test_restore import our_backup, wal_restore_command

PLAYBOOK = COLLECTION_ROOT / "playbooks" / "restore_drill.yml"
LOCAL_ENV = {"ANSIBLE_PIPELINING": "1"}


def inventory(targets: Dict[str, StorageTarget]) -> Dict[str, Any]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": str(host_python("3.13"))}
    sources = {"db-%s" % name: dict(local, pgcloud_backup_server_name=target.server_name,
                                    pgcloud_backup_drill_restore_command=wal_restore_command(target))
               for name, target in targets.items()}
    fleet = {"hosts": {name: {} for name in sources}}
    return {"all": {"hosts": {**sources, "drill1": local}, "children": {"pgfleet": fleet}}}


def drill_vars(storage: StorageTarget, folder: Any, port: int) -> Dict[str, Any]:
    return {
        "pgcloud_backup_drill_sources": "pgfleet",
        "pgcloud_backup_drill_host": "drill1",
        "pgcloud_backup_drill_dir": str(folder),
        "pgcloud_backup_drill_port": port,
        "pgcloud_backup_drill_timeout": 300,
        # The second row is in the WAL after the backup: true only once recovery replayed it.
        "pgcloud_backup_drill_query": "SELECT count(*) = 2 FROM drill_rows",
        "pgcloud_backup_destination_url": storage.url,
        "pgcloud_backup_endpoint_url": storage.endpoint_url,
        "pgcloud_backup_aws_access_key": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "pgcloud_backup_aws_secret_key": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }


def port_free(port: int) -> bool:
    with contextlib.closing(socket.socket()) as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_drill_passes_on_healthy_backups_and_fails_on_a_broken_one(
        source_cluster: PostgresCluster, storage: StorageTarget, moto: MotoServer) -> None:
    other_target = storage.with_server("other")
    root = scratch_dir("pgcloud-tests-drill-")
    try:
        with PostgresCluster("other", tablespace=None, archive_target=other_target) as other:
            for cluster, target in ((source_cluster, storage), (other, other_target)):
                cluster.execute("DROP TABLE IF EXISTS drill_rows")
                cluster.execute("CREATE TABLE drill_rows AS SELECT 1 AS one")
                our_backup(cluster, target, "lz4")
                cluster.execute("INSERT INTO drill_rows SELECT 2")
                cluster.switch_wal_and_wait()
                # A later segment, so that the one with the second row is not the archive's newest.
                cluster.execute("DROP TABLE IF EXISTS drill_pad")
                cluster.execute("CREATE TABLE drill_pad AS SELECT 1 AS one")
                cluster.switch_wal_and_wait()
            folder = postgres_dir(root / "drill")
            port = free_port()
            fleet = inventory({"source": storage, "other": other_target})

            healthy = run_inventory_playbook(PLAYBOOK, fleet, drill_vars(storage, folder, port), env=LOCAL_ENV)

            assert healthy.rc == 0, healthy.output
            reports = {report["server"]: report for report in healthy.task("Report the drills")["msg"]}
            assert sorted(reports) == ["other", "source"], reports
            for report in reports.values():
                assert report["passed"] is True and report["amcheck"] == "passed" and report["query"] == "t", report
                assert 0 <= float(report["behind_source_seconds"]) < 600 and float(report["seconds"]) > 0, report
            assert list(folder.iterdir()) == [] and port_free(port)

            keys = moto.list_keys(storage.bucket, other_target.server_prefix)
            data = [key for key in keys if "/base/" in key and key.rsplit("/", 1)[-1].startswith("data.")]
            assert data, keys
            # The segments after the backup's last one, end_wal in its backup.info.
            info = moto.get_object(storage.bucket, [key for key in keys if key.endswith("/backup.info")][0]).decode()
            end_wal = [line.split("=", 1)[1] for line in info.splitlines() if line.startswith("end_wal=")][0]
            wals = [key for key in keys if "/wals/" in key and len(key.rsplit("/", 1)[-1].split(".")[0]) == 24]
            after = [key for key in wals if key.rsplit("/", 1)[-1][:24] > end_wal]
            assert len(after) >= 2, keys
            client = moto.client()
            for name, change in (("gap", "remove"), ("damaged", "damage")):
                copy = other_target.with_server(name)
                for key in keys:
                    client.copy_object(Bucket=storage.bucket, CopySource={"Bucket": storage.bucket, "Key": key},
                                       Key=copy.server_prefix + key[len(other_target.server_prefix):])
                moved = copy.server_prefix + after[0][len(other_target.server_prefix):]
                if change == "remove":
                    client.delete_object(Bucket=storage.bucket, Key=moved)
                else:
                    # Of a segment's size, or PostgreSQL stops on it; zeros read as the end of the WAL.
                    client.put_object(Bucket=storage.bucket, Key=moved, Body=bytes(16 << 20))
                fleet["all"]["hosts"]["db-" + name] = dict(
                    fleet["all"]["hosts"]["db-other"], pgcloud_backup_server_name=name,
                    pgcloud_backup_drill_restore_command=wal_restore_command(copy))
                fleet["all"]["children"]["pgfleet"]["hosts"]["db-" + name] = {}
            client.delete_object(Bucket=storage.bucket, Key=data[0])

            # And a third source whose WAL cannot be fetched: the copy never becomes consistent.
            fleet["all"]["hosts"]["db-nowal"] = dict(fleet["all"]["hosts"]["db-source"],
                                                     pgcloud_backup_drill_restore_command="/bin/false %f %p")
            fleet["all"]["children"]["pgfleet"]["hosts"]["db-nowal"] = {}
            broken = run_inventory_playbook(PLAYBOOK, fleet, drill_vars(storage, folder, port), env=LOCAL_ENV,
                                            ansible_bin=OLDEST_ANSIBLE_BIN)

            assert broken.rc != 0, broken.output
            reports = {report["host"]: report for report in broken.task("Report the drills")["msg"]}
            hosts = ("db-source", "db-other", "db-nowal", "db-gap", "db-damaged")
            assert [reports[host]["passed"] for host in hosts] == [True, False, False, False, False]
            assert "missing" in reports["db-other"]["error"], reports
            failed = broken.stdout.split("restore drill failed for ", 1)[1].split(": ", 1)[0]
            assert sorted(failed.split(", ")) == ["damaged", "gap", "other", "source"], broken.output
            missing = after[0].rsplit("/", 1)[-1][:24]
            assert reports["db-gap"]["failed_task"] == "Check that the WAL archive has no gap after the backup's start"
            assert "1 WAL segment(s)" in reports["db-gap"]["error"] and missing in reports["db-gap"]["error"], reports
            assert reports["db-damaged"]["failed_task"] == ("Check that recovery replayed the archive up to its newest "
                                                            "segment"), reports
            assert "recovery ended in segment" in reports["db-damaged"]["error"], reports
            assert reports["db-other"]["failed_task"].startswith("Restore it"), reports
            assert reports["db-other"]["server_log"] == [], reports
            assert reports["db-nowal"]["failed_task"] == "Start PostgreSQL on the copy", reports
            assert any("FATAL" in line for line in reports["db-nowal"]["server_log"]), reports
            assert list(folder.iterdir()) == [] and port_free(port)
    finally:
        remove_tree(root)
