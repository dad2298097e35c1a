# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The default restore_command (the collection's wal-restore of a job of the same source) and the
flags of `pgcloud-backup restore`, made from the restore options' declarations."""

from __future__ import annotations

import json

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import cli
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore import recovery
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.command import job_defaults, restore_params
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.options import (
    RESTORE_OPTIONS,
    RestoreConfig,
    restore_argument_spec,
)

SOURCE = {"destination_url": "s3://bucket/pg", "server_name": "db1", "cloud_provider": "aws-s3",
          "endpoint_url": "http://127.0.0.1:9"}


@pytest.fixture
def host(tmp_path):
    """An install dir with bin/pgcloud-backup and a config root with no job yet."""
    command = tmp_path / "install" / "bin" / "pgcloud-backup"
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    (tmp_path / "etc").mkdir()
    return tmp_path


def job(host, name, **storage):
    folder = host / "etc" / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"storage": dict(SOURCE, **storage)}))
    return folder / "config.json"


def options(host, tmp_path, **params):
    return RestoreConfig(target_directory=str(tmp_path / "pgdata"), install_dir=str(host / "install"),
                         job_config_root=str(host / "etc"), **params)


def storage(**params):
    return StorageConfig(**dict(SOURCE, **params))


def test_the_job_of_the_same_store_and_server_is_used(host, tmp_path):
    job(host, "a-other-server", server_name="db2")
    job(host, "b-other-bucket", destination_url="s3://other/pg")
    job(host, "c-other-endpoint", endpoint_url="http://127.0.0.1:10")
    config = job(host, "d-db1", destination_url="s3://bucket/pg/")
    command = recovery.restore_command(storage(), options(host, tmp_path))
    assert command == "%s --config %s wal-restore %%f %%p" % (host / "install" / "bin" / "pgcloud-backup", config)


def test_barman_when_no_job_matches_or_nothing_is_installed(host, tmp_path):
    job(host, "other", server_name="db2")
    assert "barman-cloud-wal-restore" in recovery.restore_command(storage(), options(host, tmp_path))
    job(host, "db1")
    (host / "install" / "bin" / "pgcloud-backup").unlink()
    assert "barman-cloud-wal-restore" in recovery.restore_command(storage(), options(host, tmp_path))


def test_a_given_restore_command_wins(host, tmp_path):
    job(host, "db1")
    assert recovery.restore_command(storage(), options(host, tmp_path, restore_command="cp /a/%f %p")) == "cp /a/%f %p"


def test_the_default_root_names_the_job(tmp_path):
    command = recovery.wal_restore_command("/opt/x/bin/pgcloud-backup", "/etc/pgcloud-backup/db1/config.json",
                                           "/etc/pgcloud-backup/")
    assert command == "/opt/x/bin/pgcloud-backup --job db1 wal-restore %f %p"


@pytest.mark.parametrize("name, words", [("other", "another server_name"), ("missing", "cannot be read")])
def test_a_named_job_of_another_source_is_refused(host, tmp_path, name, words):
    job(host, "other", server_name="db2")
    with pytest.raises(ConfigurationError, match=words) as raised:
        recovery.restore_command(storage(), options(host, tmp_path, wal_restore_job=name))
    assert raised.value.parameter == "wal_restore_job"


def test_a_named_job_without_the_command_is_refused(host, tmp_path):
    job(host, "db1")
    (host / "install" / "bin" / "pgcloud-backup").unlink()
    with pytest.raises(ConfigurationError, match="is not installed") as raised:
        recovery.restore_command(storage(), options(host, tmp_path, wal_restore_job="db1"))
    assert raised.value.parameter == "wal_restore_job"


@pytest.mark.parametrize("bad", ["../etc", "a b", ""])
def test_a_job_name_that_is_not_one_is_refused(tmp_path, bad):
    with pytest.raises(ConfigurationError) as raised:
        RestoreConfig(target_directory=str(tmp_path), wal_restore_job=bad)
    assert raised.value.parameter == "wal_restore_job"


def test_every_restore_option_is_a_flag_and_a_config_field():
    arguments = cli.parser().parse_args([
        "--job", "db1", "restore", "--target-directory", "/srv/r", "--backup-id", "oldest", "--tablespace", "ts=/srv/t",
        "--tablespace", "u=/srv/u", "--jobs", "4", "--force", "--no-verify", "--standby", "--no-wal-archiving",
        "--restore-command", "cp",
        "--recovery-target-time", "2026-01-25 03:15:00+00", "--recovery-target-action", "promote", "--check"])
    params = restore_params(arguments)
    assert params["tablespaces"] == {"ts": "/srv/t", "u": "/srv/u"}
    assert (params["jobs"], params["force"], params["verify"], params["standby"]) == (4, True, False, True)
    assert params["wal_archiving"] is False
    assert arguments.check is True and params["recovery_target_lsn"] is None
    spec = restore_argument_spec()
    assert set(spec) == {option.name for option in RESTORE_OPTIONS}
    fields = set(RestoreConfig.__dataclass_fields__) | {"jobs"}
    assert set(spec) <= fields and fields - set(spec) == set()


def test_unset_flags_keep_the_defaults():
    params = restore_params(cli.parser().parse_args(["restore", "--target-directory", "/srv/r"]))
    assert {name for name, value in params.items() if value is not None} == {"target_directory"}
    assert RestoreConfig(**{k: v for k, v in params.items() if v is not None and k != "jobs"}).verify is True


def test_the_host_command_recovers_through_its_own_job(host):
    params = {"target_directory": "/srv/r"}
    job_defaults(params, "db1", "/etc/pgcloud-backup/db1/config.json", str(host / "install"))
    assert (params["wal_restore_job"], params["job_config_root"]) == ("db1", "/etc/pgcloud-backup")
    params = {"target_directory": "/srv/r"}
    job_defaults(params, None, str(host / "etc" / "db1" / "config.json"), str(host / "install"))
    assert (params["wal_restore_job"], params["job_config_root"]) == ("db1", str(host / "etc"))
    params = {"target_directory": "/srv/r"}
    job_defaults(params, "db1", "/etc/pgcloud-backup/db1/config.json", str(host / "nothing"))
    assert "wal_restore_job" not in params
    params = {"target_directory": "/srv/r"}
    job_defaults(params, None, str(host / "etc" / "not.a.job" / "config.json"), str(host / "install"))
    assert "wal_restore_job" not in params and RestoreConfig(**params).wal_restore_job is None


def test_the_result_is_json_on_stdout_whatever_happens(monkeypatch, capsys):
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine import restore
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.restore.command import run_restore

    def broken(*_arguments, **_keywords):
        raise RuntimeError("boom with s3cr3t")

    monkeypatch.setattr(restore, "restore_backup", broken)
    arguments = cli.parser().parse_args(["restore", "--target-directory", "/srv/r"])
    storage = dict(SOURCE)
    status = run_restore(arguments, "/etc/pgcloud-backup/db1/config.json", storage, "/nothing",
                         lambda text: text.replace("s3cr3t", "********"))
    document = json.loads(capsys.readouterr().out)
    assert status == 1 and document == {"failed": True, "msg": "unexpected error: RuntimeError: boom with ********"}
    status = run_restore(cli.parser().parse_args(["restore", "--target-directory", "relative"]),
                         "/etc/pgcloud-backup/db1/config.json", dict(SOURCE), "/nothing", str)
    document = json.loads(capsys.readouterr().out)
    assert status == 2 and document["parameter"] == "target_directory"
