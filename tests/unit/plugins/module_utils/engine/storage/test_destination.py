# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""storage.py: destination URLs to bucket + path, and keys in the reference layout.

Reference (section a): the bucket is the URL's netloc, the path is the URL path without its
leading slash, keys are os.path.join(path, server_name, ...); `s3://bkt` gives an empty path.
"""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage import factory as storage
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import StorageConfig
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError


def destination(url, server_name="db1", **kwargs):
    return storage.parse_destination(StorageConfig(destination_url=url, server_name=server_name, **kwargs))


@pytest.mark.parametrize("url, bucket, prefix", [
    ("s3://bkt", "bkt", ""),
    ("s3://bkt/", "bkt", ""),
    ("s3://bkt/some/path", "bkt", "some/path"),
    ("s3://bkt/some/path/", "bkt", "some/path"),
    ("s3://my.bucket-1/pg", "my.bucket-1", "pg"),
])
def test_s3_url_gives_bucket_and_path(url, bucket, prefix):
    parsed = destination(url)
    assert (parsed.bucket, parsed.prefix, parsed.server_name, parsed.url) == (bucket, prefix, "db1", url)


def test_keys_follow_the_reference_layout():
    parsed = destination("s3://bkt/some/path/")
    assert parsed.key("base", "20261125T023350", "backup.info") == "some/path/db1/base/20261125T023350/backup.info"
    assert parsed.key("base", "20261125T023350", "data.tar.gz") == "some/path/db1/base/20261125T023350/data.tar.gz"
    assert parsed.key("base", "20261125T023350", "data_0001.tar.gz") == "some/path/db1/base/20261125T023350/data_0001.tar.gz"
    assert parsed.key("base", "20261125T023350", "16384.tar") == "some/path/db1/base/20261125T023350/16384.tar"


def test_empty_path_gives_keys_starting_with_the_server_name():
    assert destination("s3://bkt").key("base", "20261125T023350", "backup.info") == "db1/base/20261125T023350/backup.info"


def test_url_of_names_the_place_for_the_operator():
    assert destination("s3://bkt/some/path/").url_of("base", "20261125T023350") == "s3://bkt/some/path/db1/base/20261125T023350"
    assert destination("s3://bkt").url_of("base") == "s3://bkt/db1/base"


@pytest.mark.parametrize("url", ["https://bkt/path", "bkt/path", "s3:///path", "gs://bkt/path", ""])
def test_not_an_s3_url_is_rejected(url):
    with pytest.raises(ConfigurationError) as caught:
        destination(url)
    assert caught.value.parameter == "destination_url"
    assert "s3://BUCKET/PATH" in str(caught.value)


@pytest.mark.parametrize("url, bucket, prefix", [
    ("s3://arn:aws:s3:us-west-2:123456789012:accesspoint/my-access-point/some/path",
     "arn:aws:s3:us-west-2:123456789012:accesspoint/my-access-point", "some/path"),
    ("s3://arn:aws:s3-outposts:us-west-2:123456789012:outpost/op-01234567890123456/accesspoint/name/pg",
     "arn:aws:s3-outposts:us-west-2:123456789012:outpost/op-01234567890123456/accesspoint/name", "pg"),
], ids=["access-point", "outposts-access-point"])
def test_access_point_arn_is_the_whole_bucket(url, bucket, prefix):
    # Reference: S3 access-point ARNs (and Outposts access-point ARNs) are recognised as the
    # whole bucket identifier; only what follows them is the path.
    parsed = destination(url)
    assert (parsed.bucket, parsed.prefix) == (bucket, prefix)


def test_open_store_gives_the_s3_store(aws_environment):
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage.s3 import S3Store

    store = storage.open_store(StorageConfig(destination_url="s3://bkt/p", server_name="db1",
                                             endpoint_url="http://127.0.0.1:9", aws_access_key="a", aws_secret_key="b"))
    assert isinstance(store, S3Store)
    assert (store.bucket, store.destination.prefix) == ("bkt", "p")
    # The multipart limits of S3 (reference: MAX_CHUNKS 10000, MIN_CHUNK 5 MiB, 1 TiB per archive).
    assert (store.max_chunks, store.min_chunk_size, store.max_archive_size) == (10000, 5 << 20, 1 << 40)


def test_exists_is_an_exact_key_match(store):
    store.put_object("p/db1/base/x/backup.info", b"1")
    store.put_object("p/db1/base/x/backup.info.old", b"2")
    assert store.exists("p/db1/base/x/backup.info")
    assert not store.exists("p/db1/base/x/backup")


@pytest.mark.parametrize("url", [
    "s3://../x", "s3://./x", "s3://a..b/x", "s3://-bkt/x", "s3://bkt-/x", "s3://b%2e/x", "s3://bkt:443/x",
    "s3://[b/pg", "s3://b\\x/pg", "s3://bkt/a/../x", "s3://bkt/a//x", "s3://bkt/%2e%2e/x", "s3://bkt/p?x=1",
    "s3://arn:aws:s3:us-west-2:123456789012:accesspoint/../other/pg",
])
def test_s3_url_with_a_bad_bucket_or_path_is_refused_by_the_provider(url):
    from ansible_collections.pgcloud.backup.plugins.module_utils.engine.storage import s3

    with pytest.raises(ConfigurationError) as caught:
        s3.parse_url(url)
    assert caught.value.parameter == "destination_url"


def test_keys_too_long_for_the_stores_are_refused():
    with pytest.raises(ConfigurationError) as caught:
        destination("s3://bkt/" + "/".join(["folder"] * 140))
    assert caught.value.parameter == "destination_url" and "1024 bytes" in str(caught.value)
    assert destination("s3://bkt/" + "/".join(["folder"] * 100)).bucket == "bkt"
