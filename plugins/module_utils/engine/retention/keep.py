# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep annotations: a backup marked to be kept is never removed by a retention policy.

The annotation is the object barman-cloud-backup-keep writes (layout.annotation_parts), so
either tool sees the keeps of the other.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from .. import layout
from ..catalog import Catalog
from ..config import StorageConfig
from ..errors import BackupNotFoundError, ConfigurationError
from ..storage.factory import open_store

LOG = logging.getLogger("pgcloud.backup")
KEEP_STATES = ("present", "absent", "query")


def resolve_backup(catalog: Catalog, backup: str, parameter: str) -> Dict[str, Any]:
    """The backup an id, name or shortcut names; an unknown one is an error of `parameter`."""
    try:
        return catalog.resolve(backup)
    except BackupNotFoundError as error:
        raise ConfigurationError("%s: %s" % (parameter, error), parameter)


def _check_request(state: str, target: Optional[str]) -> None:
    if state not in KEEP_STATES:
        raise ConfigurationError("state=%r is not one of %s" % (state, ", ".join(KEEP_STATES)), "state")
    if state == "present" and target not in layout.KEEP_TARGETS:
        raise ConfigurationError(
            "target=%r: state=present needs target full (the backup and all later WAL are kept) or standalone "
            "(the backup and only the WAL that restoring it needs)" % (target,), "target")
    if state != "present" and target is not None:
        raise ConfigurationError("target is only used with state=present: remove it", "target")


def manage_keep(storage: StorageConfig, backup: str, state: str = "present", target: Optional[str] = None,
                check_mode: bool = False) -> Dict[str, Any]:
    """Add (present), release (absent) or show (query) the keep of a backup.

    Only a DONE backup can be kept: a FAILED or running one cannot be restored. changed says
    whether the annotation's content changed (or would, in check mode).
    """
    _check_request(state, target)
    catalog = Catalog(open_store(storage))
    fields = resolve_backup(catalog, backup, "backup")
    backup_id = fields["backup_id"]
    key = catalog.keep_key(backup_id)
    stored = catalog.store.get_object(key)
    previous = None if stored is None else layout.parse_keep(stored)
    result = {"backup_id": backup_id, "previous_keep": previous, "keep": previous, "changed": False}
    if state == "present":
        if fields.get("status") != layout.DONE:
            raise ConfigurationError("backup: %s is %s; only a DONE backup can be kept"
                                     % (backup_id, fields.get("status")), "backup")
        # The exact bytes, not the reading: an empty or odd annotation is rewritten.
        wanted = layout.render_keep(target or "")
        result.update(keep=target, changed=stored != wanted)
        if result["changed"] and not check_mode:
            catalog.store.put_object(key, wanted)
            LOG.info("backup %s is kept (%s)", backup_id, target)
    elif state == "absent":
        result.update(keep=None, changed=stored is not None)
        if result["changed"] and not check_mode:
            catalog.store.delete_objects([key])
            LOG.info("backup %s is no longer kept", backup_id)
    return result
