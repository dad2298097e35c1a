# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the restored copy recovers: settings in postgresql.auto.conf and a signal file.

The settings are appended to postgresql.auto.conf, which PostgreSQL reads after
postgresql.conf and in which a later line wins over an earlier one, so the restored
configuration stays as the backup holds it. Secrets are never written: the default
restore_command carries the store's options but no credential, which the server's OS user
finds where barman-cloud-wal-restore looks for it (its environment, ~/.aws, managed identity).

Unless restore_command is given, the collection's own `pgcloud-backup wal-restore` is used where
the scheduled_backup role installed it: <install_dir>/bin/pgcloud-backup exists and a job's
<job_config_root>/<job>/config.json names the same store and server as the restore (cloud
provider, destination URL, endpoint URL and server name alike), so that recovery reads the WAL
of the server restored, with the job's credentials file. `wal_restore_job` names the job; a
job that does not match is refused. Otherwise barman-cloud-wal-restore.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from typing import Any, Dict, List, Optional

from ..config import StorageConfig
from ..errors import ConfigurationError
from .options import DEFAULT_JOB_CONFIG_ROOT, RestoreConfig

LOG = logging.getLogger("pgcloud.backup")
HOST_COMMAND = os.path.join("bin", "pgcloud-backup")
# The storage settings that must be the same in a job's config for its wal-restore to read the
# WAL of the server restored.
SAME_SOURCE = ("cloud_provider", "destination_url", "endpoint_url", "server_name")

AUTO_CONF = "postgresql.auto.conf"
RECOVERY_SIGNAL = "recovery.signal"
STANDBY_SIGNAL = "standby.signal"
WAL_RESTORE_TOOL = "barman-cloud-wal-restore"
HEADER = "# Recovery settings written by pgcloud.backup.restore (backup %s)\n"


def restore_command(storage: StorageConfig, options: RestoreConfig) -> str:
    """The restore_command given, else the collection's wal-restore of a job of the same source
    where one is installed, else barman-cloud-wal-restore."""
    if options.restore_command:
        return options.restore_command
    job_config = wal_restore_job_config(storage, options)
    if job_config is None:
        return default_restore_command(storage)
    return wal_restore_command(os.path.join(options.install_dir, HOST_COMMAND), job_config, options.job_config_root)


def wal_restore_command(command: str, config_file: str, config_root: str) -> str:
    """`pgcloud-backup --job JOB wal-restore %f %p` (or --config FILE outside the default root)."""
    job = os.path.basename(os.path.dirname(config_file))
    if os.path.normpath(config_root) == DEFAULT_JOB_CONFIG_ROOT:
        selector = ["--job", job]
    else:
        selector = ["--config", config_file]
    return " ".join(shlex.quote(argument) for argument in [command, *selector, "wal-restore"]) + " %f %p"


def wal_restore_job_config(storage: StorageConfig, options: RestoreConfig) -> Optional[str]:
    """The config.json of the job whose wal-restore recovery runs, or None (none installed)."""
    command = os.path.join(options.install_dir, HOST_COMMAND)
    installed = os.path.isfile(command) and os.access(command, os.X_OK)
    if options.wal_restore_job is not None:
        path = os.path.join(options.job_config_root, options.wal_restore_job, "config.json")
        if not installed:
            raise ConfigurationError("wal_restore_job=%s: %s is not installed; give install_dir, where the "
                                     "scheduled_backup role installed it, or leave wal_restore_job unset"
                                     % (options.wal_restore_job, command), "wal_restore_job")
        differences = source_differences(storage, _job_storage(path))
        if differences:
            raise ConfigurationError(
                "wal_restore_job=%s cannot fetch the WAL of this restore: its config %s has another %s; name the "
                "job of the server restored, or leave wal_restore_job unset" % (
                    options.wal_restore_job, path, " and ".join(differences)), "wal_restore_job")
        return path
    if not installed:
        return None
    return _matching_job(storage, options.job_config_root)


def _matching_job(storage: StorageConfig, config_root: str) -> Optional[str]:
    try:
        jobs = sorted(os.listdir(config_root))
    except OSError:
        return None
    for job in jobs:
        path = os.path.join(config_root, job, "config.json")
        if os.path.isfile(path) and not source_differences(storage, _job_storage(path)):
            LOG.info("restore_command: the wal-restore of job %s (%s), of the same store and server", job, path)
            return path
    return None


def _job_storage(path: str) -> Optional[Dict[str, Any]]:
    """The storage section of a job's config; None when it cannot be read (another user's job)."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    storage = config.get("storage") if isinstance(config, dict) else None
    return storage if isinstance(storage, dict) else None


def source_differences(storage: StorageConfig, job_storage: Optional[Dict[str, Any]]) -> List[str]:
    """The settings of SAME_SOURCE in which a job's storage differs from the restore's."""
    if job_storage is None:
        return ["config (it cannot be read)"]
    job_storage = dict(job_storage)
    job_storage.setdefault("cloud_provider", "aws-s3")
    return [name for name in SAME_SOURCE
            if _normal(job_storage.get(name)) != _normal(getattr(storage, name))]


def _normal(value: Any) -> Optional[str]:
    return None if value in (None, "") else str(value).rstrip("/")


def default_restore_command(storage: StorageConfig) -> str:
    """barman-cloud-wal-restore for the destination and server, with the store's options.

    The tool's absolute path when it is on this host's PATH: PostgreSQL runs the command with
    the server's environment, whose PATH may not hold it.
    """
    tool = shutil.which(WAL_RESTORE_TOOL) or WAL_RESTORE_TOOL
    arguments: List[str] = [tool, "--cloud-provider", storage.cloud_provider]
    optional = (("--endpoint-url", storage.endpoint_url), ("--aws-profile", storage.aws_profile),
                ("--azure-credential", storage.azure_credential), ("--read-timeout", storage.read_timeout))
    for option, value in optional:
        if value not in (None, ""):
            arguments += [option, str(value)]
    arguments += [storage.destination_url, storage.server_name]
    return " ".join(shlex.quote(argument) for argument in arguments) + " %f %p"


def recovery_settings(options: RestoreConfig, restore_command: str) -> Dict[str, str]:
    """The settings to write, unquoted; the recovery target given (if any) among them."""
    settings = {"restore_command": restore_command}
    for name in options.recovery_targets():
        settings[name] = "immediate" if name == "recovery_target_immediate" else str(getattr(options, name))
    if "recovery_target_immediate" in settings:
        settings["recovery_target"] = settings.pop("recovery_target_immediate")
    for name in ("recovery_target_timeline", "recovery_target_action"):
        value = getattr(options, name)
        if value is not None:
            settings[name] = str(value)
    if not options.wal_archiving:
        # A clone must not archive into its source's folder of the store: once promoted, its
        # new timeline's WAL and history file would land beside the source's.
        settings["archive_mode"] = "off"
    return settings


def quote_setting(value: str) -> str:
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "''")


def signal_file(options: RestoreConfig) -> str:
    return STANDBY_SIGNAL if options.standby else RECOVERY_SIGNAL


def write_recovery(pgdata: str, options: RestoreConfig, settings: Dict[str, str], backup_id: str) -> List[str]:
    """Append the settings, remove the signal files the backup may hold, write ours; returns
    the paths written."""
    auto_conf = os.path.join(pgdata, AUTO_CONF)
    with open(auto_conf, "a", encoding="utf-8") as handle:
        handle.write("\n" + HEADER % backup_id)
        handle.writelines("%s = %s\n" % (name, quote_setting(value)) for name, value in settings.items())
    os.chmod(auto_conf, 0o600)
    for name in (RECOVERY_SIGNAL, STANDBY_SIGNAL):
        _remove(os.path.join(pgdata, name))
    signal_path = os.path.join(pgdata, signal_file(options))
    with open(signal_path, "w", encoding="utf-8"):
        pass
    os.chmod(signal_path, 0o600)
    return [auto_conf, signal_path]


def _remove(path: str) -> Optional[str]:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return None
    return path
