# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The "wal" section of a job's config.json: how the host's wal-archive and wal-restore work.

    "wal": {"compression": "zstd",        # none by default; any barman-cloud-wal-archive writes
            "archive_parallel": 8,        # files the archive worker stores at a time (1: no worker)
            "restore_prefetch": 8,        # files fetched per call: the one asked + the next segments
            "spool_dir": "/var/lib/..."}  # default: <the job's status folder>/wal-spool
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from .. import layout
from ..errors import ConfigurationError
from .spool import spool_dir_of

DEFAULT_PARALLEL = 8
MAX_PARALLEL = 64


@dataclass(frozen=True)
class WalSettings:
    compression: Optional[str]
    archive_parallel: int
    restore_prefetch: int
    spool_dir: str


def _count(section: Mapping[str, Any], name: str) -> int:
    value = section.get(name, DEFAULT_PARALLEL)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        raise ConfigurationError("wal.%s=%r must be a whole number from 1 to %d (1: one file per call)"
                                 % (name, value, MAX_PARALLEL), "wal.%s" % name)
    return value


def wal_settings(config: Dict[str, Any]) -> WalSettings:
    section = config.get("wal") or {}
    if not isinstance(section, dict):
        raise ConfigurationError("the job config's 'wal' section must be a mapping", "wal")
    unknown = sorted(set(section) - {"compression", "archive_parallel", "restore_prefetch", "spool_dir"})
    if unknown:
        raise ConfigurationError("wal.%s is not an option: use compression, archive_parallel, restore_prefetch or "
                                 "spool_dir" % unknown[0], "wal.%s" % unknown[0])
    compression = section.get("compression")
    if compression in ("", "none"):
        compression = None
    if compression is not None and compression not in layout.WAL_COMPRESSIONS:
        raise ConfigurationError("wal.compression=%r is not one of %s" % (compression, ", ".join(layout.WAL_COMPRESSIONS)),
                                 "wal.compression")
    spool_dir = spool_dir_of(config)
    if not isinstance(spool_dir, str) or not os.path.isabs(spool_dir):
        raise ConfigurationError("wal.spool_dir=%r must be an absolute path" % (spool_dir,), "wal.spool_dir")
    return WalSettings(compression, _count(section, "archive_parallel"), _count(section, "restore_prefetch"), spool_dir)
