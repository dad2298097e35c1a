# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled_backup role's argument spec: every secret variable is no_log."""

from __future__ import annotations

import os
import re

import yaml

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import host_config

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "scheduled_backup")
# Names that look like secrets and are not: identifiers of keys kept elsewhere.
NOT_SECRETS = {"pgcloud_backup_sse_kms_key_id", "pgcloud_backup_kms_key_name", "pgcloud_backup_gcp_service_account_file"}
SECRET_LOOKING = re.compile(r"secret|password|token|_key$|connection_string|contents|ping_url")


def options():
    with open(os.path.join(ROLE, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["argument_specs"]["main"]["options"]


def credential_variables():
    """The variables the role writes to credentials.env: the job's CREDENTIAL_KEYS, prefixed."""
    return {"pgcloud_backup_" + parameter for _section, parameter in host_config.CREDENTIAL_KEYS.values()}


def test_every_secret_variable_is_no_log():
    spec = options()
    secrets = credential_variables() | {"pgcloud_backup_ping_url"}
    secrets |= {name for name in spec if SECRET_LOOKING.search(name)} - NOT_SECRETS
    assert secrets <= set(spec)
    assert sorted(name for name in secrets if spec[name].get("no_log") is not True) == []


def test_only_secrets_are_no_log():
    spec = options()
    secrets = credential_variables() | {"pgcloud_backup_ping_url"}
    assert sorted(name for name, option in spec.items() if option.get("no_log") and name not in secrets and not (
        SECRET_LOOKING.search(name) and name not in NOT_SECRETS)) == []
