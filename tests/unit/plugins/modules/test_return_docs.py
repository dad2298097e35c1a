# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The return values every module shares are written out in each module's RETURN, not pulled
from a doc fragment: ansible-core reads fragments in RETURN only from 2.20 on, and the
collection supports 2.16 (meta/runtime.yml). These tests keep the copies equal to the fragments
of plugins/doc_fragments/results.py, and keep fragments out of RETURN."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import yaml

from ansible_collections.pgcloud.backup.plugins import modules as modules_package
from ansible_collections.pgcloud.backup.plugins.doc_fragments.results import ModuleDocFragment

SHARED = yaml.safe_load(ModuleDocFragment.RETURN)
OF_BACKUPS = yaml.safe_load(ModuleDocFragment.BACKUP)
# Every module of the collection, new ones included.
MODULES = sorted(info.name for info in pkgutil.iter_modules(modules_package.__path__))


def return_docs(name):
    module = importlib.import_module("%s.%s" % (modules_package.__name__, name))
    return yaml.safe_load(module.RETURN)


def test_every_module_is_seen():
    assert {"backup_info", "base_backup", "check", "snapshot_backup"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_return_docs_hold_the_shared_values_as_the_fragments_write_them(name):
    documented = return_docs(name)
    # The values of a backup belong to the modules that take one (and so return its WAL range).
    fragments = [SHARED, OF_BACKUPS] if "begin_wal" in documented else [SHARED]
    for fragment in fragments:
        for key, entry in fragment.items():
            assert documented.get(key) == entry, "%s: RETURN's %s differs from results.py's" % (name, key)


@pytest.mark.parametrize("name", MODULES)
def test_return_docs_use_no_doc_fragment(name):
    # ansible-doc of ansible-core 2.16 to 2.19 fails on a fragment in RETURN
    # ("dictionary update sequence element #0 has length 22; 2 is required").
    assert "extends_documentation_fragment" not in return_docs(name)
