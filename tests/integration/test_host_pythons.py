# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection runs on the managed-host Pythons at both ends of the supported range, 3.9
(RHEL 9, Debian 11) and 3.13: a WAL archive, a backup and a restore with each, on S3 (moto),
Azure Blob Storage (Azurite) and Google Cloud Storage (its emulator); 3.9 from the oldest
ansible-core the collection declares (2.16).

Each Python is a venv of its own holding requirements.txt (scripts/setup.sh), named as the
host's ansible_python_interpreter in the inventory, as a user would. A cluster of the test's
own archives its WAL with `pgcloud-backup wal-archive` (the role's launcher, with a job config
as the role writes it) run by that venv's python; the collection's playbooks run (check, then
backup, become_user postgres), then pgcloud.backup.restore through a playbook, with that
Python too. barman's tools judge: barman-cloud-backup-list lists the backup, and
barman-cloud-wal-restore (the copy's restore_command) fetches the archived WAL, which the copy
replays to the cluster's data as it was; pg_amcheck checks the copy.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from testbed import (
    BACKUP_ID_PATTERN,
    COLLECTION_ROOT,
    FAKE_AWS_ENV,
    HOST_PYTHON_VERSIONS,
    INTEGRATION_DIR,
    OLDEST_ANSIBLE_BIN,
    PG_BIN,
    VENV_BIN,
    PostgresCluster,
    StorageTarget,
    as_postgres,
    backup_list,
    barman_cloud_command,
    data_fingerprint,
    env_command,
    host_python,
    postgres_dir,
    remove_tree,
    run,
    run_inventory_playbook,
    scratch_dir,
    tail,
)
from test_restore import promoted_copy
from wal_host import LAUNCHER, LAUNCHER_FLAGS, HostCommand

# Become (root to postgres) on a local connection: pipelining, as the module's files would
# otherwise sit in root's home, which postgres cannot read.
LOCAL_ENV = {"ANSIBLE_PIPELINING": "1"}
TABLESPACE = "testbed_space"
STORES = ("aws-s3", "azure-blob-storage", "google-cloud-storage")
# The compression libraries of the host's venv, not only Python's own gzip; none on GCS, whose
# uncompressed data archive is surely large enough for the XML multipart upload of the SDK
# release each Python has (3.9.0 on Python 3.9).
COMPRESSIONS = {"aws-s3": "zstd", "azure-blob-storage": "lz4", "google-cloud-storage": None}
STORE_SERVERS = {"aws-s3": "moto", "azure-blob-storage": "azurite", "google-cloud-storage": "gcs"}
# Each Python with one controller: 3.9 with the oldest ansible-core (2.16), 3.13 with the
# newest. test_fleet_ssh.py runs the modules on 3.9 with the newest too.
CONTROLLERS = {"3.9": OLDEST_ANSIBLE_BIN, "3.13": VENV_BIN}


class HostPythonCommand(HostCommand):
    """`pgcloud-backup` run by a managed-host venv's python, with the store's secrets in
    credentials.env as the role writes them (JSON-quoted values)."""

    def __init__(self, root: Path, python: Path, target: StorageTarget) -> None:
        super().__init__(root)
        self.python = python
        # The GCS emulator's address, which its SDK takes from the environment alone.
        self.store_env = target.module_env()

    def environment(self) -> Dict[str, str]:
        return {**super().environment(), **self.store_env}

    def configure(self, target: StorageTarget, endpoint_url: Any = None, **wal: Any) -> None:
        """HostCommand's config.json, without endpoint_url where only S3 takes it (Azurite's
        address is in its URL)."""
        super().configure(target, endpoint_url, **wal)
        if target.cloud_provider != "aws-s3":
            config = json.loads(self.config_file.read_text())
            del config["storage"]["endpoint_url"]
            self.config_file.write_text(json.dumps(config))

    def write_credentials(self, target: StorageTarget) -> None:
        """The target's secrets only: the engine refuses another provider's options."""
        if target.cloud_provider == "aws-s3":
            secrets = {name: FAKE_AWS_ENV[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        else:  # Azurite's connection string; none for the GCS emulator
            secrets = {name: value for name, value in target.tool_env if name == "AZURE_STORAGE_CONNECTION_STRING"}
        # The file HostCommand made (postgres's, mode 0600) keeps its owner and mode.
        self.credentials_file.write_text("".join("%s=%s\n" % (name, json.dumps(value))
                                                 for name, value in secrets.items()))

    def command(self, *arguments: str) -> List[str]:
        return env_command(self.environment(), [str(self.python), LAUNCHER_FLAGS, str(LAUNCHER), "--config",
                                                str(self.config_file), *arguments])


class HostPythonCluster(PostgresCluster):
    """A cluster whose archive_command is `pgcloud-backup wal-archive %p` run by that Python."""

    def __init__(self, python: Path, target: StorageTarget) -> None:
        super().__init__(target.server_name)
        self.wal_command = HostPythonCommand(self.root / "host", python, target)
        self.wal_command.configure(target)
        self.wal_command.write_credentials(target)

    def _settings(self) -> Dict[str, str]:
        settings = super()._settings()
        archive = "%s %%p" % shlex.join(self.wal_command.command("wal-archive"))
        settings.update({"archive_mode": "on", "archive_command": "'%s'" % archive.replace("'", "''")})
        return settings


def bucket_target(request: pytest.FixtureRequest, store: str, prefix: str, server_name: str) -> Iterator[StorageTarget]:
    """For a fixture: a bucket (or container) of the test's own on the store named (a key of
    STORE_SERVERS), deleted afterwards."""
    server = request.getfixturevalue(STORE_SERVERS[store])
    bucket = server.create_bucket()
    yield server.target(bucket, prefix, server_name)
    with contextlib.suppress(Exception):
        server.delete_bucket(bucket)


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Iterator[StorageTarget]:
    """A bucket (or container) of this test's own, on moto, Azurite or the GCS emulator."""
    python_version, store = request.node.callspec.params["python_version"], request.node.callspec.params["store"]
    yield from bucket_target(request, store, "pg", "py%s" % python_version.replace(".", ""))


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder of postgres's for the restored copy; the copy's server is stopped on exit."""
    root = scratch_dir("pgcloud-tests-hostpy-")
    yield root
    if (root / "pgdata" / "postmaster.pid").exists():
        run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(root / "pgdata"), "-m", "immediate", "-w", "stop"]),
            check=False)
    remove_tree(root)


def storage_vars(target: StorageTarget) -> Dict[str, Any]:
    """The storage variables of the collection's playbooks; the credentials as variables, since
    sudo (become) does not pass the controller's environment to the module."""
    variables: Dict[str, Any] = {
        "pgcloud_backup_destination_url": target.url,
        "pgcloud_backup_server_name": target.server_name,
        "pgcloud_backup_cloud_provider": target.cloud_provider,
    }
    if target.cloud_provider == "aws-s3":
        variables.update({"pgcloud_backup_endpoint_url": target.endpoint_url,
                          "pgcloud_backup_aws_access_key": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
                          "pgcloud_backup_aws_secret_key": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"]})
    elif target.cloud_provider == "azure-blob-storage":
        variables["pgcloud_backup_azure_storage_connection_string"] = dict(target.tool_env)[
            "AZURE_STORAGE_CONNECTION_STRING"]
    return variables


def backup_vars(target: StorageTarget, cluster: PostgresCluster) -> Dict[str, Any]:
    params = cluster.connection_params
    variables = {
        **storage_vars(target),
        "pgcloud_hosts": "all",
        "pgcloud_serial": 1,
        "pgcloud_backup_host": params["host"],
        "pgcloud_backup_port": params["port"],
        "pgcloud_backup_user": params["user"],
        "pgcloud_backup_immediate_checkpoint": True,
        # Parts of 5 MiB: the data archive (over 20 MiB uncompressed) goes up in several.
        "pgcloud_backup_min_chunk_size": "5MB",
    }
    compression = COMPRESSIONS[target.cloud_provider]
    if compression:
        variables["pgcloud_backup_compression"] = compression
    return variables


def restore_vars(target: StorageTarget, backup_id: str, workdir: Path) -> Dict[str, Any]:
    # The WAL through barman's own tool, the judge of what wal-archive stored.
    wal_restore = barman_cloud_command("wal-restore", target, target.url, target.server_name, "%f", "%p")
    return {
        **storage_vars(target),
        "restore_backup_id": backup_id,
        "restore_target_directory": str(workdir / "pgdata"),
        "restore_tablespaces": {TABLESPACE: str(postgres_dir(workdir / "space"))},
        "restore_wal_command": shlex.join(wal_restore),
    }


def test_every_host_python_is_run() -> None:
    assert sorted(CONTROLLERS) == sorted(HOST_PYTHON_VERSIONS)


@pytest.mark.parametrize("python_version", sorted(CONTROLLERS))
def test_host_venv_holds_requirements_txt(python_version: str) -> None:
    """Each host venv holds what requirements.txt asks of its Python (markers evaluated there):
    the venvs are what the support matrix claims, and the markers fit each Python."""
    script = (
        "import sys\n"
        "from importlib.metadata import version, PackageNotFoundError\n"
        "from pip._vendor.packaging.requirements import Requirement\n"
        "missing = []\n"
        "for line in open(sys.argv[1]):\n"
        "    line = line.split('#')[0].strip()\n"
        "    if not line:\n"
        "        continue\n"
        "    wanted = Requirement(line)\n"
        "    if wanted.marker is not None and not wanted.marker.evaluate():\n"
        "        continue\n"
        "    try:\n"
        "        found = version(wanted.name)\n"
        "    except PackageNotFoundError:\n"
        "        found = None\n"
        "    if found is None or not wanted.specifier.contains(found, prereleases=True):\n"
        "        missing.append('%s (installed: %s)' % (line, found))\n"
        "print('\\n'.join(missing))\n"
    )
    checked = run([str(host_python(python_version)), "-c", script, str(COLLECTION_ROOT / "requirements.txt")])
    assert checked.stdout.strip() == "", "not in the %s venv:\n%s" % (python_version, checked.stdout)


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("python_version", sorted(CONTROLLERS))
def test_wal_archive_backup_and_restore_on_the_host_python(python_version: str, store: str, target: StorageTarget,
                                                           workdir: Path) -> None:
    ansible_bin = CONTROLLERS[python_version]
    version = run([str(ansible_bin / "ansible-playbook"), "--version"]).stdout
    assert ("[core 2.16." in version) == (ansible_bin == OLDEST_ANSIBLE_BIN), version
    interpreter = host_python(python_version)
    reported = run([str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    assert reported == python_version
    host = {"ansible_connection": "local", "ansible_python_interpreter": str(interpreter)}
    if target.module_env():
        # sudo keeps the GCS emulator's address for the module, as a host's environment would.
        host["ansible_become_flags"] = "-H -S -n --preserve-env=%s" % ",".join(target.module_env())
    inventory = {"all": {"hosts": {"db-python-%s" % python_version: host}}}
    env = {**LOCAL_ENV, **target.module_env()}
    with HostPythonCluster(interpreter, target) as cluster:
        cluster.load_data(1)
        # The archiver works before the backup waits on it (a failure shows the server's log).
        cluster.switch_wal_and_wait()
        for name in ("check", "backup"):
            result = run_inventory_playbook(COLLECTION_ROOT / "playbooks" / ("%s.yml" % name), inventory,
                                            backup_vars(target, cluster), ansible_bin=ansible_bin, env=env)
            assert result.rc == 0, result.output
        taken = result.task("Take a base backup")
        assert taken["status"] == "DONE" and BACKUP_ID_PATTERN.match(taken["backup_id"]), result.output
        listed = {backup["backup_id"]: backup["status"] for backup in backup_list(target)}
        assert listed == {taken["backup_id"]: "DONE"}
        # Rows after the backup: the copy has them only if the WAL archived since was replayed.
        cluster.execute("CREATE TABLE after_backup AS SELECT g AS id FROM generate_series(1, 1000) g")
        cluster.switch_wal_and_wait()
        archiver = cluster.psql("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]
        assert archiver[0] > 0 and archiver[1] == 0, (archiver, tail(cluster.log_file))
        expected = data_fingerprint(cluster.connect)
        expected_after = cluster.scalar("SELECT count(*) FROM after_backup")
    restored = run_inventory_playbook(INTEGRATION_DIR / "playbooks" / "restore_on_host.yml", inventory,
                                      restore_vars(target, taken["backup_id"], workdir), ansible_bin=ansible_bin,
                                      env=env)
    assert restored.rc == 0, restored.output
    result = restored.task("Restore the backup")
    assert result["changed"] is True and result["backup_id"] == taken["backup_id"], result
    connect = promoted_copy(workdir / "pgdata")
    assert data_fingerprint(connect) == expected
    with contextlib.closing(connect("postgres")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM after_backup")
        assert cursor.fetchone()[0] == expected_after
