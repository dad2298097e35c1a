# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's playbooks over SSH, as a fleet is usually run: an unprivileged login user
with passwordless sudo, `become_user: postgres` for the modules, `serial` batches.

OpenSSH's server (testbed.SshFleet) listens on loopback; the inventory names three hosts, all
this machine, each backing up the source cluster under its own server name, with its own
Python (3.9 or 3.13, the managed-host venvs of scripts/setup.sh). The check, backup and
schedule playbooks run over it twice: with ACLs (Ansible shares its temporary files with the
postgres user by setfacl), and on hosts without them, with pipelining, the first of the ways
Ansible documents for becoming an unprivileged user (a run without it must fail there, which
proves the ACLs gone). The job the schedule playbook installed on the Python 3.9 host is then
run as its unit would run it, and the barman tools list each host's backups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from test_scheduled_backup import run_service
from testbed import (
    COLLECTION_ROOT,
    FAKE_AWS_ENV,
    PostgresCluster,
    SshFleet,
    StorageTarget,
    backup_list,
    host_python,
    remove_tree,
    run_inventory_playbook,
    scratch_dir,
)

PLAYBOOKS = COLLECTION_ROOT / "playbooks"
HOSTS = {"fleet-a": "3.9", "fleet-b": "3.13", "fleet-c": "3.13"}
SCHEDULED_HOST = "fleet-a"


@pytest.fixture
def host_roots() -> Iterator[Path]:
    """Scratch stand-ins for each host's / (the hosts are all this machine)."""
    root = scratch_dir("pgcloud-fleet-")
    for host in HOSTS:
        for folder in ("etc/systemd/system", "etc/cron.d", "var/lib/prometheus/node-exporter"):
            (root / host / folder).mkdir(parents=True)
    yield root
    remove_tree(root)


def inventory(fleet: SshFleet, roots: Path) -> Dict[str, Any]:
    hosts = {}
    for host, version in HOSTS.items():
        root = roots / host
        hosts[host] = {
            **fleet.host_vars(host_python(version)),
            # The role's folders, per host (see test_scheduled_backup.py); the job's Python
            # is the host's venv: it holds the modules' requirements.
            "pgcloud_backup_python": str(host_python(version)),
            "pgcloud_backup_install_dir": str(root / "opt/pgcloud-backup-job"),
            "pgcloud_backup_config_root": str(root / "etc/pgcloud-backup"),
            "pgcloud_backup_status_root": str(root / "var/lib/pgcloud-backup"),
            "pgcloud_backup_unit_dir": str(root / "etc/systemd/system"),
            "pgcloud_backup_cron_dir": str(root / "etc/cron.d"),
            "pgcloud_backup_textfile_dir": str(root / "var/lib/prometheus/node-exporter"),
        }
    return {"all": {"children": {"postgres": {"hosts": hosts}}}}


def fleet_vars(storage: StorageTarget, source: PostgresCluster) -> Dict[str, Any]:
    """The group variables of the three playbooks; the server name is each inventory_hostname."""
    params = source.connection_params
    return {
        "pgcloud_serial": 2,
        "pgcloud_backup_destination_url": storage.url,
        "pgcloud_backup_endpoint_url": storage.endpoint_url,
        "pgcloud_backup_aws_access_key": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "pgcloud_backup_aws_secret_key": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "pgcloud_backup_host": params["host"],
        "pgcloud_backup_port": params["port"],
        "pgcloud_backup_user": params["user"],
        "pgcloud_backup_immediate_checkpoint": True,
        "pgcloud_backup_scheduler": "systemd",
        "pgcloud_backup_systemd_activate": False,
        "pgcloud_backup_venv_create": False,
        # The three hosts share the source cluster, whose WAL is archived under its own
        # server_name, not under theirs: the WAL check would wait for it in vain.
        "pgcloud_backup_check_wal": False,
        # ... and barman-cloud-wal-archive archives it (conftest.py): the role is not to rewire it.
        "pgcloud_backup_wal_archiving": False,
    }


def assert_every_host_ok(result: Any, name: str) -> None:
    assert result.rc == 0, result.output
    assert sorted(result.stats) == sorted(HOSTS), result.output
    for host, stats in result.stats.items():
        assert stats["failures"] == 0 and stats["unreachable"] == 0, "%s on %s: %s" % (name, host, result.output)


@pytest.mark.parametrize("acl", [True, False], ids=["with-acl", "without-acl"])
def test_playbooks_over_ssh(acl: bool, storage: StorageTarget, source_cluster: PostgresCluster,
                            host_roots: Path) -> None:
    variables = fleet_vars(storage, source_cluster)
    with SshFleet(acl=acl) as fleet:
        # Pipelining where the host has no ACLs, as Ansible documents for become_user.
        env = {**fleet.ansible_env(), "ANSIBLE_PIPELINING": "0" if acl else "1"}
        hosts = inventory(fleet, host_roots)
        if not acl:
            refused = run_inventory_playbook(PLAYBOOKS / "check.yml", hosts, variables,
                                             env={**fleet.ansible_env(), "ANSIBLE_PIPELINING": "0"})
            assert refused.rc != 0
            assert "Failed to set permissions on the temporary files" in refused.stdout, refused.output
        for name in ("check", "backup", "schedule"):
            result = run_inventory_playbook(PLAYBOOKS / ("%s.yml" % name), hosts, variables, env=env)
            assert_every_host_ok(result, name)
            # serial: 2 makes two batches of the three hosts; check.yml checks all at once.
            assert result.stdout.count("PLAY [") == (1 if name == "check" else 2), result.output
    # The scheduled job of the 3.9 host, as its timer would start it: a second backup there.
    scheduled = run_service(host_roots / SCHEDULED_HOST / "etc/systemd/system/pgcloud-backup.service")
    assert scheduled.returncode == 0, scheduled.stdout + scheduled.stderr
    for host in HOSTS:
        listed = backup_list(storage.with_server(host))
        expected = ["DONE", "DONE"] if host == SCHEDULED_HOST else ["DONE"]
        assert [backup["status"] for backup in listed] == expected, (host, listed)
        assert (host_roots / host / "etc/systemd/system/pgcloud-backup.timer").is_file()
