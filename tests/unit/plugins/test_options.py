# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every option is declared once, in the modules' argument specs; each other place that names
it must agree: the engine's configs, the role's variables, what the role's job passes to the
engine, and what the playbooks pass to the modules. A new option fails here until it is
everywhere."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from typing import Any, Dict, Set

import pytest
import yaml

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import (
    BackupConfig,
    PostgresConfig,
    StorageConfig,
)
from ansible_collections.pgcloud.backup.plugins.modules import base_backup, check

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
ROLE = os.path.join(ROOT, "roles", "scheduled_backup")

# Options of base_backup that a scheduled job has no use for, and why.
NOT_SCHEDULED = {
    # A fixed name on a timer: every run after the first would find that backup and stop.
    "backup_name": "a timer's runs would all carry one name",
}
# Options that are not config fields but module-level behaviour.
NOT_CONFIG: Set[str] = set()


def read_yaml(*parts: str) -> Any:
    with open(os.path.join(ROOT, *parts)) as handle:
        return yaml.safe_load(handle)


def read_text(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts)) as handle:
        return handle.read()


def role_variables() -> Dict[str, Any]:
    specs = read_yaml("roles", "scheduled_backup", "meta", "argument_specs.yml")
    return specs["argument_specs"]["main"]["options"]


def module_task_args(playbook: str, module: str) -> Dict[str, Any]:
    for play in read_yaml("playbooks", playbook):
        for task in play.get("tasks", []):
            if module in task:
                return task[module]
    raise AssertionError("%s has no task of %s" % (playbook, module))


def config_fields(*classes: type) -> Set[str]:
    return {item.name for config_class in classes for item in fields(config_class)}


def base_backup_options() -> Set[str]:
    return set(base_backup.argument_spec())


def test_every_base_backup_option_is_a_field_of_the_engines_configs():
    missing = base_backup_options() - NOT_CONFIG - config_fields(StorageConfig, PostgresConfig, BackupConfig)
    assert missing == set(), "options no config takes: %s" % sorted(missing)


@pytest.mark.parametrize("option", sorted(base_backup_options() - set(NOT_SCHEDULED)))
def test_the_role_has_a_variable_for_the_option(option):
    variables = role_variables()
    assert "pgcloud_backup_" + option in variables, (
        "roles/scheduled_backup/meta/argument_specs.yml has no pgcloud_backup_%s" % option)
    spec = base_backup.argument_spec()[option]
    if spec.get("no_log"):
        assert variables["pgcloud_backup_" + option].get("no_log") is True, (
            "pgcloud_backup_%s holds a secret: mark it no_log in the role's argument_specs.yml" % option)


@pytest.mark.parametrize("option", sorted(base_backup_options() - set(NOT_SCHEDULED)))
def test_the_roles_job_passes_the_option_to_the_engine(option):
    """The job's config (vars/main.yml) or its credentials file carries every option."""
    variables = read_text("roles", "scheduled_backup", "vars", "main.yml")
    assert re.search(r"\bpgcloud_backup_%s\b" % option, variables), (
        "roles/scheduled_backup/vars/main.yml does not pass pgcloud_backup_%s to the job" % option)


def passes(args: Dict[str, Any], option: str) -> bool:
    value = str(args.get(option, ""))
    return "pgcloud_backup_" + option in value


@pytest.mark.parametrize("option", sorted(base_backup_options() - set(NOT_SCHEDULED)))
def test_the_backup_playbook_passes_the_option(option):
    args = module_task_args("backup.yml", "pgcloud.backup.base_backup")
    assert passes(args, option), "playbooks/backup.yml does not pass pgcloud_backup_%s as %s" % (option, option)


@pytest.mark.parametrize("option", sorted(set(check.argument_spec())))
def test_the_check_playbook_passes_the_option(option):
    args = module_task_args("check.yml", "pgcloud.backup.check")
    assert passes(args, option), "playbooks/check.yml does not pass pgcloud_backup_%s as %s" % (option, option)


def test_the_playbooks_pass_no_unknown_option():
    for playbook, module, spec in (("backup.yml", "pgcloud.backup.base_backup", base_backup.argument_spec()),
                                   ("check.yml", "pgcloud.backup.check", check.argument_spec())):
        unknown = set(module_task_args(playbook, module)) - set(spec)
        assert unknown == set(), "%s passes options %s has not" % (playbook, module)
