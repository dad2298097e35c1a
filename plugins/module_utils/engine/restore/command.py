# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`pgcloud-backup restore`: the restore module's options as flags, on the host, without Ansible.

    pgcloud-backup --job db1 restore --target-directory /var/lib/postgresql/15/restored \\
        --tablespace fast_space=/srv/restored/fast_space --recovery-target-time '2026-01-25 14:02:00+00'

The store and its credentials are the job's (config.json, credentials.env); the flags are made
from RESTORE_OPTIONS (options.py), the declarations the module's argument spec is made from.
The result is printed on stdout as one JSON document, as the module returns it; the log goes
to stderr. Unless --restore-command or --wal-restore-job is given, recovery fetches WAL with
this job's own wal-restore when this command is installed by the role (<install dir>/bin).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from typing import Any, Dict, Optional

from ..errors import ConfigurationError, PgCloudError
from .options import DEFAULT_JOB_CONFIG_ROOT, RESTORE_OPTIONS, RestoreOption
from .recovery import HOST_COMMAND

LOG = logging.getLogger("pgcloud-backup")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
# Options of the storage section that a flag overrides.
STORAGE_OPTIONS = ("jobs",)
JOB_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# The host command's own defaults where they are not the module's (see job_defaults).
HOST_DEFAULTS = {"install_dir": "the install dir of this command",
                 "wal_restore_job": "this job, when this command is installed by the role"}


def add_restore_parser(commands: Any) -> argparse.ArgumentParser:
    """The `restore` subcommand, one flag per restore option."""
    restore = commands.add_parser("restore", help="restore a base backup of the job's store into a data directory "
                                                  "(the options of the pgcloud.backup.restore module); prints JSON")
    for option in RESTORE_OPTIONS:
        _add_flag(restore, option)
    restore.add_argument("--check", action="store_true",
                         help="check everything and print what would be restored, without writing")
    return restore


def _add_flag(restore: argparse.ArgumentParser, option: RestoreOption) -> None:
    flag = "--" + option.name.replace("_", "-")
    if option.kind == "bool":
        if option.default:
            restore.add_argument("--no-" + option.name.replace("_", "-"), dest=option.name, action="store_false",
                                 default=None, help="do not " + option.help)
        else:
            restore.add_argument(flag, dest=option.name, action="store_true", default=None, help=option.help)
    elif option.kind == "dict":
        restore.add_argument("--" + (option.item_flag or option.name).replace("_", "-"), dest=option.name,
                             action="append", metavar=option.item_metavar, help=option.help)
    else:
        default = HOST_DEFAULTS.get(option.name, option.default)
        default_text = " (default: %s)" % default if default is not None else ""
        restore.add_argument(flag, dest=option.name, required=option.required,
                             type=int if option.kind == "int" else str, choices=option.choices or None,
                             help=option.help + default_text)


def restore_params(arguments: argparse.Namespace) -> Dict[str, Any]:
    """The restore options given on the command line, by name (None: not given)."""
    params: Dict[str, Any] = {}
    for option in RESTORE_OPTIONS:
        value = getattr(arguments, option.name, None)
        if option.kind == "dict" and value is not None:
            value = _pairs(value, option)
        params[option.name] = value
    return params


def _pairs(items: Any, option: RestoreOption) -> Dict[str, str]:
    pairs = {}
    for item in items:
        key, separator, value = str(item).partition("=")
        if not separator or not key:
            flag = "--" + (option.item_flag or option.name).replace("_", "-")
            raise ConfigurationError("%s %r is not NAME=PATH" % (flag, item), option.name)
        pairs[key] = value
    return pairs


def job_defaults(params: Dict[str, Any], job: Optional[str], config_file: str, install_dir: str) -> None:
    """Recovery through this job's wal-restore, when this command is installed by the role."""
    params["install_dir"] = params.get("install_dir") or install_dir
    if params.get("restore_command") or params.get("wal_restore_job"):
        return
    if not os.path.isfile(os.path.join(params["install_dir"], HOST_COMMAND)):
        return
    config_file = os.path.abspath(config_file)
    if job:
        params["wal_restore_job"] = job
        params["job_config_root"] = params.get("job_config_root") or DEFAULT_JOB_CONFIG_ROOT
    elif not params.get("job_config_root") and JOB_NAME.match(os.path.basename(os.path.dirname(config_file))):
        # A config outside <root>/<job>/config.json is left to the detection (recovery.py).
        params["wal_restore_job"] = os.path.basename(os.path.dirname(config_file))
        params["job_config_root"] = os.path.dirname(os.path.dirname(config_file))


def run_restore(arguments: argparse.Namespace, config_file: str, storage_params: Dict[str, Any],
                install_dir: str, redact: Any) -> int:
    """Run the restore; print its result (or the error) as JSON; the exit status."""
    from ..config import StorageConfig, from_params
    from . import restore_backup
    from .options import RestoreConfig

    status = EXIT_OK
    try:
        params = restore_params(arguments)
        for name in STORAGE_OPTIONS:
            if params.get(name) is not None:
                storage_params[name] = params[name]
        job_defaults(params, arguments.job, config_file, install_dir)
        storage = from_params(StorageConfig, storage_params)
        result = restore_backup(storage, from_params(RestoreConfig, params), check_mode=arguments.check)
        result["failed"] = False
    except ConfigurationError as error:
        result, status = {"failed": True, "msg": str(error), "parameter": error.parameter}, EXIT_CONFIG
    except PgCloudError as error:
        result, status = {"failed": True, "msg": str(error)}, EXIT_FAILED
    except Exception as error:  # pylint: disable=broad-except  # a caller reads JSON on stdout whatever happens
        LOG.exception("unexpected error: %s", error)
        message = "unexpected error: %s: %s" % (type(error).__name__, error)
        result, status = {"failed": True, "msg": message}, EXIT_FAILED
    sys.stdout.write(redact(json.dumps(result, indent=2, sort_keys=True, default=str)) + "\n")
    sys.stdout.flush()
    return status
