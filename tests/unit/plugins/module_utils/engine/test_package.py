# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine package: plain Python that the role copies to hosts without Ansible."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ENGINE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "..",
                                      "plugins", "module_utils", "engine"))


def engine_modules():
    for folder, _dirs, files in os.walk(ENGINE):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(folder, name), ENGINE)


def imported_names(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("relative", list(engine_modules()))
def test_no_engine_module_names_ansible(relative):
    names = [name for name in imported_names(os.path.join(ENGINE, relative))
             if name == "ansible" or name.startswith("ansible.")
             or (name.startswith("ansible_collections.") and ".engine" not in name)]
    assert names == [], "%s imports %s" % (relative, names)


def test_every_engine_folder_is_a_package():
    folders = [folder for folder, _dirs, files in os.walk(ENGINE) if "__pycache__" not in folder]
    assert [folder for folder in folders if not os.path.exists(os.path.join(folder, "__init__.py"))] == []


def test_the_whole_engine_imports_without_ansible(tmp_path):
    """Every module imported in an interpreter where importing ansible fails, as on a host."""
    blocker = tmp_path / "ansible"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('ansible is not on this host')\n")
    modules = ["ansible_collections.pgcloud.backup.plugins.module_utils.engine."
               + relative[:-3].replace(os.sep, ".").replace(".__init__", "")
               for relative in engine_modules() if not relative.endswith("__init__.py")]
    code = "import importlib, sys\nfor name in %r:\n    importlib.import_module(name)\n" % modules
    code += "print(sorted(m for m in sys.modules if m == 'ansible' or m.startswith('ansible.')))\n"
    path = os.pathsep.join([str(tmp_path)] + sys.path)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            env=dict(os.environ, PYTHONPATH=path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]"]


def test_no_engine_function_is_longer_than_60_lines():
    """Complexity is ruff's (mccabe, 15, scripts/lint.sh); length is checked here."""
    long_ones = []
    for relative in engine_modules():
        with open(os.path.join(ENGINE, relative)) as handle:
            tree = ast.parse(handle.read(), relative)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_ones.append("%s:%d %s" % (relative, node.lineno, node.name))
    assert long_ones == []
