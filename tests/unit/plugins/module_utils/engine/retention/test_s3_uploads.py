# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3Store.list_open_uploads and abort_open_upload on moto: under the prefix only, then gone."""

from __future__ import annotations

from datetime import datetime

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store


def test_open_uploads_listed_under_the_prefix_and_aborted(s3_config):
    store = open_store(s3_config())
    mine = store.create_multipart("backups/pg/db1/base/20261101T000000/data.tar")
    store.upload_part("backups/pg/db1/base/20261101T000000/data.tar", mine, 1, b"x" * 10)
    store.create_multipart("backups/pg/db10/base/20261101T000000/data.tar")
    listed = list(store.list_open_uploads("backups/pg/db1/"))
    assert [(item.key, item.upload_id) for item in listed] == [("backups/pg/db1/base/20261101T000000/data.tar", mine)]
    assert isinstance(listed[0].initiated, datetime)
    store.abort_open_upload(listed[0])
    assert list(store.list_open_uploads("backups/pg/db1/")) == []
    assert [item.key for item in store.list_open_uploads("backups/pg/")] == ["backups/pg/db10/base/20261101T000000/data.tar"]
