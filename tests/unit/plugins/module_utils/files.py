# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files of the PGDATA and tablespace trees the tests build."""

from __future__ import annotations

import os


def write_file(path, data=b"x", mtime_ns=None):
    """Write data to path, creating its folders; with mtime_ns, also set its times."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
