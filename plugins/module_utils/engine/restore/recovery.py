# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the restored copy recovers: settings in postgresql.auto.conf and a signal file.

The settings are appended to postgresql.auto.conf, which PostgreSQL reads after
postgresql.conf and in which a later line wins over an earlier one, so the restored
configuration stays as the backup holds it. Secrets are never written: the default
restore_command carries the store's options but no credential, which the server's OS user
finds where barman-cloud-wal-restore looks for it (its environment, ~/.aws, managed identity).
"""

from __future__ import annotations

import os
import shlex
import shutil
from typing import Dict, List, Optional

from ..config import StorageConfig
from .options import RestoreConfig

AUTO_CONF = "postgresql.auto.conf"
RECOVERY_SIGNAL = "recovery.signal"
STANDBY_SIGNAL = "standby.signal"
WAL_RESTORE_TOOL = "barman-cloud-wal-restore"
HEADER = "# Recovery settings written by pgcloud.backup.restore (backup %s)\n"


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
