# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_verifybackup on the restored copy, when the backup carries a backup_manifest.

It runs before the recovery settings are written (they are changes the manifest does not
know of) and with --no-parse-wal, since the copy holds no WAL until recovery fetches it.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from typing import Any, Dict, Optional

from .extract import RestoreError

LOG = logging.getLogger("pgcloud.backup")
MANIFEST = "backup_manifest"
TOOL = "pg_verifybackup"
# Where distributions install the server's tools, outside PATH.
TOOL_FOLDERS = ("/usr/lib/postgresql/%s/bin", "/usr/pgsql-%s/bin")
VERIFY_TIMEOUT = 6 * 3600


def find_tool(version: Optional[int]) -> Optional[str]:
    """pg_verifybackup of the backup's major if installed, else one on PATH, else the newest installed."""
    major = str(version // 10000) if version else "*"
    for pattern in TOOL_FOLDERS:
        for folder in sorted(glob.glob(pattern % major), reverse=True):
            if os.access(os.path.join(folder, TOOL), os.X_OK):
                return os.path.join(folder, TOOL)
    found = shutil.which(TOOL)
    if found or not version:
        return found
    return find_tool(None)


def verify_copy(pgdata: str, version: Optional[int], wanted: bool) -> Dict[str, Any]:
    """{"verified": True, False (not run) ...}; raises RestoreError when the copy fails the check."""
    if not wanted:
        return {"verified": False, "message": "not verified: verify is false"}
    if not os.path.isfile(os.path.join(pgdata, MANIFEST)):
        return {"verified": False, "message": "not verified: the backup carries no backup_manifest"}
    tool = find_tool(version)
    if tool is None:
        return {"verified": False, "message": "not verified: pg_verifybackup is not installed on this host"}
    LOG.info("verifying the restored copy with %s", tool)
    # Called by the restore module and the host's command alike: the engine has no AnsibleModule.
    command = [tool, "--no-parse-wal", pgdata]
    process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # pylint: disable=ansible-bad-function
                             universal_newlines=True, timeout=VERIFY_TIMEOUT, check=False)
    output = process.stdout.strip()
    if process.returncode != 0:
        raise RestoreError("the restored copy does not match its backup_manifest (%s): %s" % (
            tool, output[-2000:]))
    return {"verified": True, "message": output.splitlines()[-1] if output else "verified"}
