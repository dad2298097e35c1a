# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The WAL check of pgcloud.backup.check and of `pgcloud-backup check` (issue 19), on real clusters.

One cluster archives with `pgcloud-backup wal-archive %p` to moto: the check closes a segment,
finds it in the store (barman-cloud-wal-restore must then fetch it) and passes. One cluster's
archive_command is `false`: the check fails, saying the segment did not arrive and that the
archiver is failing, well before wal_archive_timeout.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator

import pytest
from testbed import (INTEGRATION_DIR, MotoServer, StandbyCluster, StorageTarget, barman_cloud, postgres_dir,
                     run_playbook)
from wal_host import WalCluster

PLAYBOOK = INTEGRATION_DIR / "playbooks" / "check_wal.yml"
TASK = "Check the store, the server and WAL archiving"
TIMEOUT = 120


class BrokenArchiveCluster(WalCluster):
    """archive_mode on, archive_command `false`: every segment fails to archive."""

    def _settings(self) -> Dict[str, str]:
        settings = super()._settings()
        settings["archive_command"] = "'false'"
        return settings


def host_config(cluster: WalCluster, target: StorageTarget) -> None:
    """The host command's config.json for target, with the cluster's connection (as the role writes it)."""
    cluster.host.configure(target)
    config = json.loads(cluster.host.config_file.read_text())
    config["postgres"] = {"host": str(cluster.socket_dir), "port": cluster.port, "user": "postgres",
                          "wal_archive_timeout": TIMEOUT}
    cluster.host.config_file.write_text(json.dumps(config))


@pytest.fixture(scope="module")
def bucket(moto: MotoServer) -> str:
    return moto.create_bucket()


@pytest.fixture(scope="module")
def working(moto: MotoServer, bucket: str) -> Iterator[WalCluster]:
    cluster = WalCluster("checkwal")
    cluster.target = moto.target(bucket, "checkwal", "working")
    host_config(cluster, cluster.target)
    with cluster:
        yield cluster


@pytest.fixture(scope="module")
def broken(moto: MotoServer, bucket: str) -> Iterator[BrokenArchiveCluster]:
    """Its own server_name: the working cluster's segments of the same names must not stand in."""
    cluster = BrokenArchiveCluster("brokenwal")
    cluster.target = moto.target(bucket, "checkwal", "broken")
    host_config(cluster, cluster.target)
    with cluster:
        yield cluster


def check(cluster: WalCluster, target: StorageTarget, **extra: Any) -> Dict[str, Any]:
    params = cluster.connection_params
    variables = {"destination_url": target.url, "server_name": target.server_name, "endpoint_url": target.endpoint_url,
                 "pg_host": params["host"], "pg_port": params["port"], "pg_user": params["user"],
                 "wal_archive_timeout": TIMEOUT, **extra}
    run = run_playbook(PLAYBOOK, variables)
    result = run.task(TASK)
    assert (run.rc == 0) == (not result.get("failed")), run.output
    return result


def test_check_wal_passes_where_archiving_works(working: WalCluster) -> None:
    target = working.target
    result = check(working, target)
    assert result["ok"] is True, result
    wal = result["wal"]
    assert wal["switched"] is True and wal["in_store"] is True and wal["error"] is None, wal
    assert wal["archive_mode"] == "on" and wal["archiver"]["failing"] is False
    assert wal["archiver"]["ready_count"] is not None
    assert "WAL segment %s reached the store" % wal["segment"] in result["msg"]
    # The reference tool fetches the segment the check waited for.
    restored = postgres_dir(working.root / "restored", 0o755) / wal["segment"]
    barman_cloud("wal-restore", target, target.url, target.server_name, wal["segment"], str(restored))
    assert restored.read_bytes() == (working.copies / wal["segment"]).read_bytes()
    # check_wal: false leaves WAL alone.
    assert check(working, target, check_wal=False)["wal"] is None


def test_check_wal_on_an_idle_server_waits_for_a_new_segment(working: WalCluster) -> None:
    """Two checks with nothing written between them: pg_switch_wal alone would close nothing the
    second time and name the segment the first check already found."""
    first = check(working, working.target)
    second = check(working, working.target)
    assert first["ok"] is True and second["ok"] is True, (first, second)
    assert second["wal"]["segment"] > first["wal"]["segment"], (first["wal"], second["wal"])
    assert second["wal"]["in_store"] is True


def test_check_wal_fails_clearly_when_archive_command_fails(broken: BrokenArchiveCluster) -> None:
    target = broken.target
    result = check(broken, target)
    assert result["failed"] is True and result["ok"] is False
    wal = result["wal"]
    assert wal["in_store"] is False and wal["archiver"]["failing"] is True, wal
    assert wal["archiver"]["failed_count"] >= 3 and wal["archiver"]["last_failed_wal"]
    # PostgreSQL's three tries in a row end the wait, not wal_archive_timeout.
    assert wal["waited_seconds"] < TIMEOUT / 2, wal
    assert result["msg"].startswith("wal: WAL segment %s did not reach %s" % (wal["segment"], target.url)), result["msg"]
    assert "the archiver is failing: it last failed to archive" in result["msg"]


def test_host_command_check_passes_and_fails_as_the_module(working: WalCluster, broken: BrokenArchiveCluster) -> None:
    good = working.host.run("check")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "wal: ok" in good.stdout and good.stdout.rstrip().endswith("result: ok"), good.stdout
    bad = broken.host.run("check", "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    report = json.loads(bad.stdout)
    assert report["ok"] is False and report["wal"]["archiver"]["failing"] is True
    assert "did not reach" in report["wal"]["error"]
    skipped = broken.host.run("check", "--no-wal")
    assert skipped.returncode == 0 and "wal: not checked" in skipped.stdout, skipped.stdout + skipped.stderr


def test_base_backup_reports_the_archiver(working: WalCluster) -> None:
    """A base backup's result carries pg_stat_archiver once its last WAL file is archived."""
    target, params = working.target, working.connection_params
    run = run_playbook(INTEGRATION_DIR / "playbooks" / "base_backup.yml", {
        **target.module_params(), "pg_host": params["host"], "pg_port": params["port"], "pg_user": params["user"]})
    assert run.rc == 0, run.output
    result = run.task("Take a base backup")
    archiver = result["wal_archiver"]
    assert archiver["failing"] is False and archiver["failed_count"] == 0, archiver
    # The backup waited for its last WAL file: the archiver is at least there.
    assert archiver["last_archived_wal"][:24] >= result["end_wal"], (archiver, result["end_wal"])


def test_check_wal_by_default_finds_what_barman_archived(playbook: Any, storage: StorageTarget) -> None:
    """The source archives with barman-cloud-wal-archive: check_wal, unset, runs (archive_mode is
    on) and finds the segment in the layout that tool writes."""
    run = playbook("check", storage.module_params())
    assert run.rc == 0, run.output
    wal = run.task("Check the store and the server")["wal"]
    assert wal["switched"] is True and wal["in_store"] is True and wal["error"] is None, wal


def test_check_wal_on_a_standby_skips_the_switch_and_says_so(working: WalCluster) -> None:
    with StandbyCluster(working, "checkwalstandby") as standby:
        result = check(standby, working.target)
    assert result["ok"] is True, result
    wal = result["wal"]
    assert wal["switched"] is False and wal["segment"] is None and wal["in_store"] is None, wal
    assert "standby" in wal["warnings"][0] and "pg_switch_wal runs only on a primary" in wal["warnings"][0]
    assert any("WAL segment switch is skipped" in str(warning) for warning in result["warnings"]), result
