# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The restore of a base backup: job (its steps), download, extract and tar_reader, recovery, verify.

restore_backup is the entry point of the restore module and of the scripts that restore. It is
here as well as in operations so that a restore imports only what it uses: operations imports
the backup jobs too (psycopg2, the snapshot providers), and a restore's start-up is part of
its time (benchmarks/README.md, "Restores").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:
    from ..config import StorageConfig
    from .options import RestoreConfig


def restore_backup(storage: "StorageConfig", restore: "RestoreConfig", check_mode: bool = False) -> Dict[str, Any]:
    """Restore a base backup into restore.target_directory, ready for PostgreSQL to recover."""
    from .job import RestoreJob  # pylint: disable=import-outside-toplevel

    return RestoreJob(storage, restore).run(check_mode=check_mode)
