# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's venv packages agree with requirements.txt, the collection's one list of them:
every package the role installs is there, and a package the role bounds (a version range, an
environment marker) has there exactly the lines the role gives it, so that the job's venv
gets on each Python the release the modules are tested with (test_host_pythons.py)."""

from __future__ import annotations

import os
from typing import Dict, List, Set, Tuple

import yaml
from packaging.requirements import Requirement

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
ROLE = os.path.join(ROOT, "roles", "scheduled_backup")

Bound = Tuple[str, str]  # (specifier, marker) as text, for comparing lines


def bound(requirement: Requirement) -> Bound:
    return (str(requirement.specifier), str(requirement.marker or ""))


def requirements_txt() -> Dict[str, Set[Bound]]:
    lines: Dict[str, Set[Bound]] = {}
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#")[0].strip()
            if line:
                requirement = Requirement(line)
                lines.setdefault(requirement.name, set()).add(bound(requirement))
    return lines


def role_packages() -> List[Requirement]:
    with open(os.path.join(ROLE, "vars", "main.yml"), encoding="utf-8") as handle:
        variables = yaml.safe_load(handle)
    with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    names = list(defaults["pgcloud_backup_pip_packages"])
    for group in ("__pgcloud_backup_provider_packages", "__pgcloud_backup_compression_packages"):
        for packages in variables[group].values():
            names.extend(packages)
    return [Requirement(name) for name in names]


def test_every_role_package_is_in_requirements_txt():
    listed = requirements_txt()
    assert sorted({package.name for package in role_packages()} - set(listed)) == []


def test_bounded_role_packages_have_the_lines_of_requirements_txt():
    listed = requirements_txt()
    role: Dict[str, Set[Bound]] = {}
    for package in role_packages():
        if package.specifier or package.marker:
            role.setdefault(package.name, set()).add(bound(package))
    assert role, "the role bounds no package: nothing compared"
    assert {name: listed.get(name, set()) for name in role} == role
