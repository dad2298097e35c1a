# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules run on the managed-host Pythons at both ends of the supported range, 3.9 (RHEL 9,
Debian 11) and 3.13, the playbooks on the oldest ansible-core the collection declares (2.16).

Each Python is a venv of its own with the collection's requirements (scripts/setup.sh), named
as the host's ansible_python_interpreter in the inventory, as a user would; the collection's
own playbooks run (check, then backup, become_user postgres). The source cluster archives its
WAL with its archive_command (barman-cloud-wal-archive) into the test's bucket, and the backup
is restored by barman-cloud-restore, its WAL replayed, and compared with the source.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest

from conftest import TABLESPACE
from testbed import (
    BACKUP_ID_PATTERN,
    COLLECTION_ROOT,
    FAKE_AWS_ENV,
    HOST_PYTHON_VERSIONS,
    OLDEST_ANSIBLE_BIN,
    VENV_BIN,
    PlaybookResult,
    PostgresCluster,
    StorageTarget,
    backup_list,
    host_python,
    restore_and_verify,
    run,
    run_inventory_playbook,
)

# Become (root to postgres) on a local connection: pipelining, as the module's files would
# otherwise sit in root's home, which postgres cannot read.
LOCAL_ENV = {"ANSIBLE_PIPELINING": "1"}


def playbook_vars(storage: StorageTarget, source: PostgresCluster) -> Dict[str, Any]:
    """The variables of the collection's playbooks; the credentials as variables, since sudo
    (become) does not pass the controller's environment to the module."""
    params = source.connection_params
    return {
        "pgcloud_hosts": "all",
        "pgcloud_serial": 1,
        "pgcloud_backup_destination_url": storage.url,
        "pgcloud_backup_server_name": storage.server_name,
        "pgcloud_backup_endpoint_url": storage.endpoint_url,
        "pgcloud_backup_aws_access_key": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "pgcloud_backup_aws_secret_key": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "pgcloud_backup_host": params["host"],
        "pgcloud_backup_port": params["port"],
        "pgcloud_backup_user": params["user"],
        "pgcloud_backup_immediate_checkpoint": True,
        # A compression library of the host's venv, not only Python's own gzip.
        "pgcloud_backup_compression": "zstd",
    }


def check_backup_restore(storage: StorageTarget, source: PostgresCluster, python_version: str,
                         ansible_bin: Any = VENV_BIN) -> None:
    """check.yml then backup.yml on one local host with that Python, then the restore."""
    interpreter = host_python(python_version)
    reported = run([str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    assert reported == python_version
    inventory = {"all": {"hosts": {"db-python-%s" % python_version: {
        "ansible_connection": "local", "ansible_python_interpreter": str(interpreter)}}}}
    variables = playbook_vars(storage, source)
    for name in ("check", "backup"):
        result: PlaybookResult = run_inventory_playbook(COLLECTION_ROOT / "playbooks" / ("%s.yml" % name), inventory,
                                                        variables, ansible_bin=ansible_bin, env=LOCAL_ENV)
        assert result.rc == 0, result.output
    taken = result.task("Take a base backup")
    assert taken["status"] == "DONE" and BACKUP_ID_PATTERN.match(taken["backup_id"]), result.output
    listed = {backup["backup_id"]: backup["status"] for backup in backup_list(storage)}
    assert listed == {taken["backup_id"]: "DONE"}
    source.switch_wal_and_wait()
    expected = source.fingerprint()
    restored = restore_and_verify(storage, taken["backup_id"], tablespaces=[TABLESPACE])
    assert restored.amcheck_passed, restored.amcheck_output
    assert restored.fingerprint == expected


# Each Python with one controller: 3.9 with the oldest ansible-core (2.16), 3.13 with the
# newest. test_fleet_ssh.py runs the modules on 3.9 with the newest too.
CONTROLLERS = {"3.9": OLDEST_ANSIBLE_BIN, "3.13": VENV_BIN}


def test_every_host_python_is_run() -> None:
    assert sorted(CONTROLLERS) == sorted(HOST_PYTHON_VERSIONS)


@pytest.mark.parametrize("python_version", sorted(CONTROLLERS))
def test_modules_run_on_the_host_python(storage: StorageTarget, source_cluster: PostgresCluster,
                                        python_version: str) -> None:
    ansible_bin = CONTROLLERS[python_version]
    if ansible_bin == OLDEST_ANSIBLE_BIN:
        version = run([str(ansible_bin / "ansible-playbook"), "--version"]).stdout
        assert "[core 2.16." in version, version
    check_backup_restore(storage, source_cluster, python_version, ansible_bin=ansible_bin)
