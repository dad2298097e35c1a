# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the tests of the modules and of the Ansible adapter share: running a module's main with
patched-in arguments, as ansible-test does, and reading the JSON it prints."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19
    import contextlib

    @contextlib.contextmanager
    def patch_module_args(args):
        previous = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = previous


@pytest.fixture(autouse=True)
def fresh_warnings():
    """Warnings and deprecations of one test do not show up in the next one's result."""
    for name in ("_global_warnings", "_global_deprecations"):
        store = getattr(ansible_warnings, name, None)
        if store is not None:
            store.clear()


@pytest.fixture
def run_main(capsys):
    """run_main(args, main) -> (exit code, result, raw output); main must end like a module does."""

    def run(args, main):
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exited:
                main()
        raw = capsys.readouterr().out
        return exited.value.code, json.loads(raw.strip().splitlines()[-1]), raw

    return run
