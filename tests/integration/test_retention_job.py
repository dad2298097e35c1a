# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled_backup role's retention: the job applies its policy after each DONE backup.

The job runs as in test_scheduled_backup.py (the service's ExecStart as postgres). Older
backups are made as test_retention.py makes them (end times rewritten in backup.info), and
barman's own dry run with the same policy must find nothing more to delete afterwards.

Open uploads of killed runs: moto reports one fixed start time (2010-11-10) for every upload,
so on moto each is old, and a minimum age above fifteen years leaves it; the age rule itself
is proven in tests/unit/plugins/module_utils/engine/retention/test_orphans.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

from fault_proxy import FaultProxy, FaultRule
from test_retention import make_backups, open_engine_store
from test_scheduled_backup import JOB, SECRET, apply, host_root, metrics, role_vars, run_service  # noqa: F401  # pylint: disable=unused-import
from testbed import COLLECTION_ROOT, POSTGRES_USER, PYTHON_LIB, VENV_PYTHON, MotoServer, PostgresCluster, \
    StorageTarget, backup_list, barman_cloud, run_module

POLICY = "REDUNDANCY 2"
# Longer ago than moto's fixed start time of every upload (2010-11-10).
CENTURIES = 100 * 365 * 86400


def job_paths(root: Path) -> Dict[str, Path]:
    return {"service": root / "etc/systemd/system" / ("%s.service" % JOB),
            "status": root / "var/lib/pgcloud-backup" / JOB / "status.json",
            "textfile": root / "var/lib/prometheus/node-exporter" / ("%s.prom" % JOB),
            "config": root / "etc/pgcloud-backup" / JOB / "config.json",
            "library": root / "opt/pgcloud-backup-job/lib"}


def open_upload(moto: MotoServer, bucket: str, key: str) -> str:
    return str(moto.client().create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])


def upload_keys(moto: MotoServer, bucket: str) -> List[str]:
    return sorted(upload["Key"] for upload in moto.multipart_uploads(bucket))


def host_command(root: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`pgcloud-backup --config ... ARGUMENTS` as postgres, on the engine the role installed."""
    paths = job_paths(root)
    command = [str(VENV_PYTHON), str(COLLECTION_ROOT / "roles/scheduled_backup/files/pgcloud-backup"),
               "--config", str(paths["config"]), *arguments]
    environment = ["PATH=/usr/bin:/bin", "LD_LIBRARY_PATH=%s" % PYTHON_LIB,
                   "PGCLOUD_BACKUP_LIBRARY=%s" % paths["library"]]
    return subprocess.run(["runuser", "-u", POSTGRES_USER, "--", "env", "-i", *environment, *command],
                          capture_output=True, text=True, timeout=600, check=False)


def test_the_job_applies_its_policy_after_a_done_backup(host_root: Path, storage: StorageTarget,  # noqa: F811
                                                        moto: MotoServer, source_cluster: PostgresCluster) -> None:
    backups = make_backups(moto, storage, source_cluster)
    orphan = storage.backup_prefix("20200101T000000") + "data.tar"
    open_upload(moto, storage.bucket, orphan)
    elsewhere = "other-server/base/20200101T000000/data.tar"
    open_upload(moto, storage.bucket, elsewhere)
    paths = job_paths(host_root)
    apply(role_vars(host_root, storage, source_cluster, pgcloud_backup_retention_policy=POLICY))

    ran = run_service(paths["service"])
    assert ran.returncode == 0, ran.stderr
    assert SECRET not in ran.stdout + ran.stderr
    status = json.loads(paths["status"].read_text())
    listed = [backup["backup_id"] for backup in backup_list(storage)]
    assert listed == [backups.ids["r3"], status["backup_id"]], listed
    retention = status["retention"]
    assert retention["result"] == "success" and retention["error"] is None and retention["policy"] == POLICY
    assert retention["deleted_backups"] == backups.id_list("copy", "r1", "r2")
    assert retention["deleted_wals"] > 0 and retention["aborted_uploads"] == [orphan]
    assert upload_keys(moto, storage.bucket) == [elsewhere]
    values = metrics(paths["textfile"])
    assert values["pgcloud_backup_last_status"] == 1 and values["pgcloud_backup_retention_last_status"] == 1
    assert values["pgcloud_backup_retention_deleted_backups"] == 3
    assert values["pgcloud_backup_retention_deleted_wals"] == retention["deleted_wals"]
    assert values["pgcloud_backup_retention_aborted_uploads"] == 1
    assert "retention %s: 3 backups deleted" % POLICY in ran.stderr
    dry_run = barman_cloud("backup-delete", storage, "--dry-run", "-r", POLICY, storage.url, storage.server_name)
    assert "Skipping deletion" not in dry_run.stdout + dry_run.stderr, dry_run.stdout

    # pgcloud-backup delete: the job's policy, with nothing left to delete; an upload younger
    # than the job's minimum age is left; a dry run of another policy deletes nothing.
    apply(role_vars(host_root, storage, source_cluster, pgcloud_backup_retention_policy=POLICY,
                    pgcloud_backup_abort_uploads_older_than=CENTURIES))
    fresh = storage.backup_prefix("20200102T000000") + "data.tar"
    open_upload(moto, storage.bucket, fresh)
    again = host_command(host_root, "delete")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert (result["changed"], result["deleted"], result["aborted_uploads"]) == (False, [], [])
    assert upload_keys(moto, storage.bucket) == sorted([elsewhere, fresh])
    planned = host_command(host_root, "delete", "--retention-policy", "REDUNDANCY 1", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert [step["backup_id"] for step in json.loads(planned.stdout)["deleted"]] == [backups.ids["r3"]]
    assert [backup["backup_id"] for backup in backup_list(storage)] == listed
    refused = host_command(host_root, "delete", "--retention-policy", "REDUNDANCY two")
    assert refused.returncode == 2 and "is not a policy" in refused.stderr, refused.stderr


def test_a_failed_retention_leaves_the_run_a_success(host_root: Path, storage: StorageTarget,  # noqa: F811
                                                     moto: MotoServer, source_cluster: PostgresCluster) -> None:
    paths = job_paths(host_root)
    with FaultProxy(moto.port) as proxy:
        variables = role_vars(host_root, storage, source_cluster, pgcloud_backup_retention_policy="REDUNDANCY 1",
                              pgcloud_backup_endpoint_url=proxy.endpoint_url)
        apply(variables)
        first = run_service(paths["service"])
        assert first.returncode == 0, first.stderr
        # The store refuses every delete from now on.
        rule = proxy.add(FaultRule("POST", r"\?delete", "status", status=500, times=None))
        second = run_service(paths["service"])
    assert rule.injected > 0
    assert second.returncode == 0, second.stderr
    status = json.loads(paths["status"].read_text())
    assert status["result"] == "success" and status["error"] is None
    retention = status["retention"]
    assert retention["result"] == "failure" and "deleting backup" in retention["error"], retention
    assert SECRET not in paths["status"].read_text() + second.stderr
    values = metrics(paths["textfile"])
    assert values["pgcloud_backup_last_status"] == 1 and values["pgcloud_backup_retention_last_status"] == 0
    assert "ERROR pgcloud-backup: retention REDUNDANCY 1 FAILED" in second.stderr, second.stderr
    # Nothing DONE is lost: the older backup is at worst FAILED, the new one DONE.
    statuses = [backup["status"] for backup in backup_list(storage)]
    assert statuses[-1] == "DONE" and statuses.count("DONE") == 1 and len(statuses) == 2, statuses


def test_a_bad_policy_is_refused_before_anything_is_written(host_root: Path, storage: StorageTarget,  # noqa: F811
                                                            source_cluster: PostgresCluster) -> None:
    from test_scheduled_backup import PLAYBOOK, job_files
    from testbed import run_playbook

    for name, value, words in (("pgcloud_backup_retention_policy", "KEEP 7 DAYS", "RECOVERY WINDOW OF n DAYS"),
                               ("pgcloud_backup_minimum_redundancy", -1, "0 or more"),
                               ("pgcloud_backup_abort_uploads_older_than", -1, "seconds")):
        result = run_playbook(PLAYBOOK, role_vars(host_root, storage, source_cluster, **{name: value}))
        output = result.stdout + result.stderr
        assert result.rc != 0 and "%s: " % name in output and words in output, output
        assert job_files(host_root) == [], name
    assert not os.path.exists(job_paths(host_root)["config"])


# --- open uploads of killed runs, on each store --------------------------------------------------

# What a policy run aborts of the uploads opened (old, fresh); Azure's uncommitted blocks expire
# by themselves and are not listed; moto dates every upload 2010-11-10, so the fresh one is old there.
# Seconds between the old upload and the others; the runs' minimum age is 10 s less.
OLD_AGE = 30
ABORTED = {"moto": ("old", "fresh"), "gcs": ("old",), "azurite": ()}


@pytest.mark.parametrize("server_fixture", ["moto", "gcs", "azurite"])
def test_a_policy_run_aborts_old_open_uploads(request, server_fixture, monkeypatch, tmp_path):
    server = request.getfixturevalue(server_fixture)
    target = server.target(server.create_bucket(), "p", "srv")
    try:
        store = open_engine_store(target, monkeypatch, tmp_path)
        keys = {"old": target.backup_prefix("20200101T000000") + "data.tar",
                "fresh": target.server_prefix + "wals/0000000100000000/000000010000000000000002",
                "foreign": "p/srv2/base/20200101T000000/data.tar"}
        for name in ("old", "fresh", "foreign"):
            upload = store.create_multipart(keys[name])
            store.upload_part(keys[name], upload, 1, b"x" * 1024)
            if name == "old" and server_fixture == "gcs":
                time.sleep(OLD_AGE)  # the one store that dates uploads truly
        opened = server.open_uploads(target.bucket)
        assert opened == sorted(keys.values()), opened
        expected = sorted(keys[name] for name in ABORTED[server_fixture])
        args = dict(target.module_params(), retention_policy="REDUNDANCY 1", abort_uploads_older_than=OLD_AGE - 10)
        planned = run_module("backup_delete", dict(args, _ansible_check_mode=True), env=target.module_env())
        assert planned.rc == 0, planned.stdout + planned.stderr
        assert sorted(item["key"] for item in planned.result["aborted_uploads"]) == expected
        assert planned.result["changed"] is bool(expected)
        assert server.open_uploads(target.bucket) == opened
        done = run_module("backup_delete", args, env=target.module_env())
        assert done.rc == 0, done.stdout + done.stderr
        assert sorted(item["key"] for item in done.result["aborted_uploads"]) == expected
        assert server.open_uploads(target.bucket) == sorted(set(opened) - set(expected))
    finally:
        server.delete_bucket(target.bucket)
