# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Multipart uploads left open by runs that were killed (SIGKILL, a lost host): aborted by age.

A run that fails aborts its own uploads; one that is killed cannot, and the store keeps (and
bills) the parts it sent until the upload is aborted. Only uploads older than a minimum age
(a day by default) are aborted, so that a backup or a WAL file being written now is never
touched: a run lasts less than that (the role's max_runtime is a day too).

S3 and Cloud Storage list open uploads; Azure's uncommitted blocks are discarded by the
service a week after they were staged, so there is nothing to abort there.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

from .. import layout
from ..errors import ConfigurationError, StorageError
from ..storage.base import ObjectStore, OpenUpload

LOG = logging.getLogger("pgcloud.backup")
# Seconds an upload must have been open before the retention pass aborts it.
DEFAULT_MIN_AGE = 86400
PARAMETER = "abort_uploads_older_than"


def check_min_age(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            "%s=%r must be a whole number of seconds, 0 or more (default %d, a day; 0 aborts every open upload, "
            "those of a backup running now too)" % (PARAMETER, value, DEFAULT_MIN_AGE), PARAMETER)
    return value


def is_orphan(upload: OpenUpload, now: datetime, min_age: int) -> bool:
    """Open for at least min_age seconds. An upload the store gives no start time for is left alone."""
    if upload.initiated is None:
        return False
    initiated = upload.initiated if upload.initiated.tzinfo else upload.initiated.replace(tzinfo=timezone.utc)
    return now - initiated >= timedelta(seconds=min_age)


def describe(upload: OpenUpload) -> Dict[str, Any]:
    return {"key": upload.key, "upload_id": upload.upload_id, "initiated": layout.describe_time(upload.initiated)}


def abort_orphan_uploads(store: ObjectStore, prefix: str, min_age: int, now: datetime,
                         check_mode: bool = False) -> List[Dict[str, Any]]:
    """Abort the uploads open under prefix for min_age seconds or more (in check mode, only list them)."""
    orphans = [upload for upload in store.list_open_uploads(prefix) if is_orphan(upload, now, min_age)]
    for upload in orphans:
        if check_mode:
            continue
        try:
            store.abort_open_upload(upload)
        except StorageError as error:
            raise StorageError("aborting the upload of %s left open since %s failed: %s"
                               % (upload.key, layout.describe_time(upload.initiated), error)) from error
        LOG.info("aborted the upload of %s left open since %s", upload.key, layout.describe_time(upload.initiated))
    return [describe(upload) for upload in orphans]
