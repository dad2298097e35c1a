# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's version, returned by every module as `version`.

Kept here once for the code; galaxy.yml holds the same string for the packaging, and a unit
test checks that the two agree.
"""

from __future__ import annotations

COLLECTION_VERSION = "0.1.0"
