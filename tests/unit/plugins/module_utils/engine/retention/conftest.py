# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.tests.unit.plugins.module_utils.engine.retention.stores import DeletingStore


@pytest.fixture
def store():
    return DeletingStore()
