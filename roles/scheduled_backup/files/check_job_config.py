# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a scheduled job's config with the backup engine's own rules, before the role writes anything.

Run by the role on the controller, with plugins/module_utils on PYTHONPATH (the engine needs
neither Ansible nor an SDK for this): reads {"config": the job's config, "unit": the variables
the role writes into the units and the cron entry} as JSON on stdin and, for the first value
refused, prints `pgcloud_backup_<parameter>: <message>` and exits 1. The role's argument spec
cannot say "no line break" or "no '..' folder"; the engine can, and gives the same messages as
the modules.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Dict

from engine.config import BackupConfig, PostgresConfig, StorageConfig, from_params, validate_http_url
from engine.errors import ConfigurationError
from engine.inputs import check_printable
from engine.retention.scheduled import retention_settings
from engine.storage.factory import parse_destination

VARIABLE_PREFIX = "pgcloud_backup_"
# What a value written into a unit or the cron entry may hold, by variable (others: any
# printable text). A space would shift a crontab line's fields or split ExecStart's command; a
# % is a specifier in a unit and a placeholder in archive_command; $ and quotes mean something
# to cron's shell.
CRON_NUMBERS = r"^[0-9*/,-]+$"
COMMAND_PATH = r"^[A-Za-z0-9_./@+,:=-]+$"
PATH_SHAPE = "a path of letters, digits and _ . / @ + , : = - (it is part of the job's command line%s)"
SHAPES = {
    "cron_minute": (CRON_NUMBERS, "one cron field: digits and * / , - only, without spaces (for example 15)"),
    "cron_hour": (CRON_NUMBERS, "one cron field: digits and * / , - only, without spaces (for example 2 or 1-5)"),
    "cron_weekday": (r"^[0-9A-Za-z*/,-]+$", "one cron field: digits, day names and * / , - only, without spaces "
                     "(for example mon-fri)"),
    "os_user": (r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", "a user name (letters, digits, _ . and -)"),
    "os_group": (r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", "a group name (letters, digits, _ . and -)"),
    "python": (COMMAND_PATH, PATH_SHAPE % ""),
    "install_dir": (COMMAND_PATH, PATH_SHAPE % " and of archive_command"),
    "config_root": (COMMAND_PATH, PATH_SHAPE % " and of archive_command"),
}
ENVIRONMENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check(config: Dict[str, Any]) -> None:
    storage = from_params(StorageConfig, config.get("storage") or {})
    parse_destination(storage)
    from_params(PostgresConfig, config.get("postgres") or {})
    from_params(BackupConfig, config.get("backup") or {})
    validate_http_url((config.get("report") or {}).get("ping_url"), "ping_url", "http(s)://HOST[:PORT]/PATH")
    retention_settings(config)


def check_unit_text(unit: Dict[str, Any]) -> None:
    """The variables written as they are into the units and the cron entry: a line break in
    one would start a line of its own there (a directive, or a crontab line run as root)."""
    for name, value in unit.items():
        if name == "job_environment":
            check_environment(value or {})
            continue
        for item in value if isinstance(value, list) else [value]:
            check_printable(str(item), name, repr(item))
            pattern, shape = SHAPES.get(name, (None, ""))
            if pattern and not re.match(pattern, str(item)):
                raise ConfigurationError("%r is not %s" % (item, shape), name)
    if isinstance(unit.get("schedule"), list) and not unit["schedule"]:
        raise ConfigurationError("is empty: give at least one OnCalendar expression, such as '*-*-* 02:00:00'",
                                 "schedule")


def check_environment(environment: Dict[str, Any]) -> None:
    for name, value in environment.items():
        if not ENVIRONMENT_NAME.match(str(name)):
            raise ConfigurationError("%r is not an environment variable name (letters, digits and _, not starting "
                                     "with a digit)" % name, "job_environment")
        check_printable(str(value), "job_environment", "the value of %s" % name)


def main() -> int:
    try:
        given = json.load(sys.stdin)
        check(given["config"])
        check_unit_text(given.get("unit") or {})
    except ConfigurationError as error:
        parameter = VARIABLE_PREFIX + (error.parameter or "")
        print("%s: %s" % (parameter, error))
        return 1
    except TypeError as error:  # a missing required value, such as destination_url
        print("the job's variables are incomplete: %s" % error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
