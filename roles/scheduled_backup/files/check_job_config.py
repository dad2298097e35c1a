# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check a scheduled job's config with the backup engine's own rules, before the role writes anything.

Run by the role on the controller, with plugins/module_utils on PYTHONPATH (the engine needs
neither Ansible nor an SDK for this): reads the job's config as JSON on stdin and, for the
first value the engine refuses, prints `pgcloud_backup_<parameter>: <message>` and exits 1.
The role's argument spec cannot say "no line break" or "no '..' folder"; the engine can, and
gives the same messages as the modules.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict

from engine.config import BackupConfig, PostgresConfig, StorageConfig, from_params, validate_http_url
from engine.errors import ConfigurationError
from engine.retention.scheduled import retention_settings
from engine.storage.factory import parse_destination

VARIABLE_PREFIX = "pgcloud_backup_"


def check(config: Dict[str, Any]) -> None:
    storage = from_params(StorageConfig, config.get("storage") or {})
    parse_destination(storage)
    from_params(PostgresConfig, config.get("postgres") or {})
    from_params(BackupConfig, config.get("backup") or {})
    validate_http_url((config.get("report") or {}).get("ping_url"), "ping_url", "http(s)://HOST[:PORT]/PATH")
    retention_settings(config)


def main() -> int:
    try:
        check(json.load(sys.stdin))
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
