# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3Store.delete_objects on moto: batches in order, missing keys fine, a refused key stops the rest."""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import StorageError
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.factory import open_store


def test_batches_in_order_and_missing_keys(s3_config):
    store = open_store(s3_config())
    keys = ["backups/pg/db1/wals/%03d" % number for number in range(7)]
    for key in keys:
        store.put_object(key, b"w")
    sent = []
    real = store.client.delete_objects
    store.client.delete_objects = lambda **kwargs: sent.append([o["Key"] for o in kwargs["Delete"]["Objects"]]) or \
        real(**kwargs)
    store.delete_batch_size = 3
    store.delete_objects(keys[:5] + ["backups/pg/db1/wals/missing"])
    assert sent == [keys[:3], keys[3:5] + ["backups/pg/db1/wals/missing"]]
    assert [item.key for item in store.list_objects("backups/")] == keys[5:]


def test_a_refused_key_fails_its_batch_and_stops_the_next(s3_config):
    store = open_store(s3_config())
    sent = []

    def refuse(**kwargs):
        sent.append(kwargs["Delete"]["Objects"])
        return {"Errors": [{"Key": kwargs["Delete"]["Objects"][0]["Key"], "Code": "AccessDenied",
                            "Message": "Access Denied"}]}

    store.client.delete_objects = refuse
    store.delete_batch_size = 2
    with pytest.raises(StorageError, match="S3 refused to delete 1 of 2 objects .* such as a \\(AccessDenied"):
        store.delete_objects(["a", "b", "c"])
    assert len(sent) == 1
