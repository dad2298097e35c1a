# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""config.py: every validation rule, with a message that names the parameter to change.

The rules are those of barman-cloud-backup 3.20.1 (reference format doc, section c).
"""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine.config import (
    BackupConfig,
    PostgresConfig,
    StorageConfig,
    from_params,
    parse_size,
    validate_backup_name,
    validate_tags,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import ConfigurationError

URL = "s3://bucket/path"


def storage(**kwargs):
    settings = dict(destination_url=URL, server_name="db1")
    settings.update(kwargs)
    return StorageConfig(**settings)


def assert_rejected(parameter, build, *words):
    """The build raises a ConfigurationError about `parameter` whose message holds `words`."""
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert caught.value.parameter == parameter
    message = str(caught.value)
    assert parameter in message
    for word in words:
        assert word in message
    return message


# --- sizes: B is base 1024, iB is base 1000 (the reference tool's inverted convention) --------


@pytest.mark.parametrize("text, expected", [
    ("5MB", 5 * 1024 ** 2),
    ("5MiB", 5 * 1000 ** 2),
    ("5mb", 5 * 1024 ** 2),
    ("5mib", 5 * 1000 ** 2),
    ("512KB", 512 * 1024),
    ("1kib", 1000),
    ("1.5GB", int(1.5 * 1024 ** 3)),
    ("100GB", 100 * 1024 ** 3),
    ("2TB", 2 * 1024 ** 4),
    ("1PiB", 1000 ** 5),
    ("0.5KB", 512),
    ("100", 100),
    ("10B", 10),
    (4096, 4096),
])
def test_parse_size_reads_the_reference_syntax(text, expected):
    assert parse_size(text, "max_archive_size") == expected


@pytest.mark.parametrize("text", ["0", "0B", "0.5", 0, "0KB"])
def test_parse_size_rejects_less_than_one_byte(text):
    assert_rejected("max_archive_size", lambda: parse_size(text, "max_archive_size"), "at least 1 byte")


@pytest.mark.parametrize("text", ["", "abc", "5M", "5 megabytes", "-1", "1.5.2GB", "5XB", "GB"])
def test_parse_size_rejects_what_is_not_a_size(text):
    message = assert_rejected("min_chunk_size", lambda: parse_size(text, "min_chunk_size"), "is not a size")
    assert "5MB" in message  # shows an example of the syntax


def test_parse_size_rejects_booleans():
    assert_rejected("max_bandwidth", lambda: parse_size(True, "max_bandwidth"), "not a boolean")


# --- backup names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, "mybackup", "before-upgrade", "nightly 2026-11-25", "20261125"])
def test_acceptable_backup_names(name):
    validate_backup_name(name)
    assert BackupConfig(backup_name=name).backup_name == name


@pytest.mark.parametrize("name", ["", "   "])
def test_backup_name_must_not_be_empty(name):
    assert_rejected("backup_name", lambda: BackupConfig(backup_name=name), "must not be empty")


def test_backup_name_must_not_look_like_a_backup_id():
    assert_rejected("backup_name", lambda: BackupConfig(backup_name="20261125T023350"), "looks like a backup id")


@pytest.mark.parametrize("name", ["latest", "last", "oldest", "first", "last-failed", "latest-full", "last-full", "auto"])
def test_backup_name_must_not_be_a_reserved_word(name):
    assert_rejected("backup_name", lambda: BackupConfig(backup_name=name), "is reserved", repr(name))


# --- tags -----------------------------------------------------------------------------------


def test_ten_tags_are_allowed_and_values_become_text():
    tags = {"k%d" % number: number for number in range(9)}
    tags["empty"] = None
    assert validate_tags(tags) == dict({"k%d" % number: str(number) for number in range(9)}, empty="")
    assert storage(tags={"team": "dba", "env": "prod"}).tags == {"team": "dba", "env": "prod"}


def test_more_than_ten_tags_are_rejected():
    tags = {"k%d" % number: "v" for number in range(11)}
    assert_rejected("tags", lambda: storage(tags=tags), "11 entries", "at most 10")


@pytest.mark.parametrize("key", ["", "k" * 129, "aws:cost-center", "AWS:owner"])
def test_tag_keys_are_1_to_128_characters_without_the_aws_prefix(key):
    assert_rejected("tags", lambda: storage(tags={key: "v"}), "1 to 128 characters", "aws:")


def test_tag_key_of_128_and_value_of_256_characters_are_allowed():
    assert validate_tags({"k" * 128: "v" * 256}) == {"k" * 128: "v" * 256}


def test_tag_values_are_at_most_256_characters():
    assert_rejected("tags", lambda: storage(tags={"owner": "v" * 257}), "longer than 256")


def test_tag_characters_allowed_by_the_reference():
    tags = {"team name_1.a:b/c=d+e-f@g": "Data Team_1.x:y/z=w+v-u@t"}
    assert validate_tags(tags) == tags


@pytest.mark.parametrize("tags", [{"owner#1": "dba"}, {"owner": "dba;drop"}])
def test_tag_characters_outside_the_reference_set_are_rejected(tags):
    # Reference: key and value characters are [A-Za-z0-9 whitespace _ . : / = + - @]
    # (barman.utils.check_tag); S3 refuses other characters at the first upload.
    assert_rejected("tags", lambda: storage(tags=tags))


# --- encryption combinations --------------------------------------------------------------


def test_encryption_settings_that_work():
    assert storage(encryption="AES256").encryption == "AES256"
    assert storage(encryption="aws:kms", sse_kms_key_id="alias/backups").sse_kms_key_id == "alias/backups"
    assert storage(sse_customer_key="file:///etc/key").sse_customer_key == "file:///etc/key"


@pytest.mark.parametrize("encryption", [None, "AES256"])
def test_sse_kms_key_id_needs_aws_kms(encryption):
    assert_rejected("sse_kms_key_id", lambda: storage(encryption=encryption, sse_kms_key_id="alias/k"),
                    "encryption: aws:kms")


@pytest.mark.parametrize("settings", [
    {"encryption": "AES256"},
    {"encryption": "aws:kms"},
    {"encryption": "aws:kms", "sse_kms_key_id": "alias/k"},
])
def test_sse_customer_key_excludes_other_encryption(settings):
    assert_rejected("sse_customer_key", lambda: storage(sse_customer_key="file:///k", **settings),
                    "cannot be combined")


@pytest.mark.parametrize("encryption", ["aes256", "kms"])
def test_encryption_is_one_of_the_reference_choices(encryption):
    # Reference: -e/--encryption {AES256,aws:kms}; anything else fails at the first upload.
    assert_rejected("encryption", lambda: storage(encryption=encryption))


# --- other StorageConfig rules ------------------------------------------------------------


def test_storage_defaults():
    config = storage()
    assert (config.cloud_provider, config.jobs, config.tags) == ("aws-s3", 2, {})
    assert config.min_chunk_size is None and config.max_bandwidth is None


def test_cloud_provider_must_be_known():
    assert_rejected("cloud_provider", lambda: storage(cloud_provider="s3"), "aws-s3, azure-blob-storage, google-cloud-storage")


@pytest.mark.parametrize("name", ["", "a/b"])
def test_server_name_is_a_plain_name(name):
    assert_rejected("server_name", lambda: storage(server_name=name), "without '/'")


@pytest.mark.parametrize("jobs", [0, -1, None])
def test_jobs_must_be_positive(jobs):
    assert_rejected("jobs", lambda: storage(jobs=jobs), "positive integer")


def test_jobs_given_as_text_becomes_an_integer():
    assert storage(jobs="4").jobs == 4


def test_read_timeout_must_be_positive():
    assert_rejected("read_timeout", lambda: storage(read_timeout=0), "positive")
    assert storage(read_timeout=30).read_timeout == 30


def test_sizes_of_the_storage_are_parsed():
    config = storage(min_chunk_size="10MB", max_bandwidth="1MiB")
    assert (config.min_chunk_size, config.max_bandwidth) == (10 * 1024 ** 2, 1000 ** 2)


@pytest.mark.parametrize("value", [None, "", 0, "0"])
def test_max_bandwidth_zero_or_empty_means_unlimited(value):
    assert storage(max_bandwidth=value).max_bandwidth is None


def test_bad_sizes_name_their_parameter():
    assert_rejected("min_chunk_size", lambda: storage(min_chunk_size="lots"))
    assert_rejected("max_bandwidth", lambda: storage(max_bandwidth="fast"))


def test_aws_irsa_excludes_aws_profile():
    assert_rejected("aws_irsa", lambda: storage(aws_irsa=True, aws_profile="prod"), "aws_profile")


@pytest.mark.parametrize("style", ["bogus"])
def test_addressing_style_is_one_of_the_reference_choices(style):
    # Reference: --addressing-style {auto,virtual,path}; botocore raises its own error otherwise.
    assert_rejected("addressing_style", lambda: storage(addressing_style=style))


# --- PostgresConfig and BackupConfig ------------------------------------------------------


def test_postgres_defaults():
    config = PostgresConfig()
    assert (config.dbname, config.keepalive_interval, config.immediate_checkpoint) == ("postgres", 60, False)
    assert PostgresConfig(dbname=None).dbname == "postgres"


def test_keepalive_interval_zero_disables_and_negative_is_rejected():
    assert PostgresConfig(keepalive_interval=0).keepalive_interval == 0
    assert_rejected("keepalive_interval", lambda: PostgresConfig(keepalive_interval=-1), "0 (off)")


def test_standby_options():
    config = PostgresConfig()
    assert (config.primary_conninfo, config.wal_archive_timeout) == (None, 300)
    assert PostgresConfig(wal_archive_timeout="0").wal_archive_timeout == 0
    assert_rejected("wal_archive_timeout", lambda: PostgresConfig(wal_archive_timeout=-5), "0 (off)")
    assert_rejected("primary_conninfo", lambda: PostgresConfig(primary_conninfo="  "), "primary's conninfo")


def test_backup_defaults():
    config = BackupConfig()
    assert config.compression is None
    assert config.max_archive_size == 100 * 1024 ** 3  # "100GB", 1024-based
    assert config.backup_name is None


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "snappy", "lz4", "zstd"])
def test_compressions(compression):
    assert BackupConfig(compression=compression).compression == compression


@pytest.mark.parametrize("compression", ["gz", "xz", "none", "zst"])
def test_unknown_compression_is_rejected(compression):
    assert_rejected("compression", lambda: BackupConfig(compression=compression), "gzip, bzip2, snappy, lz4, zstd")


def test_max_archive_size_is_a_size():
    assert BackupConfig(max_archive_size="1MB").max_archive_size == 1024 ** 2
    assert_rejected("max_archive_size", lambda: BackupConfig(max_archive_size="big"))


def test_from_params_ignores_other_keys_and_unset_values():
    params = {"compression": "zstd", "max_archive_size": None, "backup_name": None, "jobs": 4, "state": "present"}
    config = from_params(BackupConfig, params)
    assert (config.compression, config.max_archive_size, config.backup_name) == ("zstd", 100 * 1024 ** 3, None)
    storage_config = from_params(StorageConfig, dict(destination_url=URL, server_name="db1", jobs=4, compression="zstd"))
    assert storage_config.jobs == 4


# --- names that do not round-trip or that move the backup elsewhere (issue 18) ---------------

INVISIBLE = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u200b", "\u202e", "\u2028", "\u2029", "\ufeff"]


@pytest.mark.parametrize("name", ["nightly ", " nightly", "\u00a0nightly", "nightly\u3000"])
def test_backup_name_with_spaces_at_either_end_is_refused(name):
    # backup.info is read back with the value stripped: "nightly " would never match again.
    assert_rejected("backup_name", lambda: BackupConfig(backup_name=name), "whitespace")


@pytest.mark.parametrize("character", INVISIBLE)
def test_backup_name_with_a_control_or_invisible_character_is_refused(character):
    message = assert_rejected("backup_name", lambda: BackupConfig(backup_name="weekly%srun" % character),
                              "U+%04X" % ord(character))
    assert character not in message


def test_backup_name_none_reads_back_as_no_name():
    # backup.info stores a missing value as the text None.
    assert_rejected("backup_name", lambda: BackupConfig(backup_name="None"), "no name")


@pytest.mark.parametrize("name", ["\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0665T023350", "20261125T023350"])
def test_backup_name_like_an_id_in_any_digits_is_refused(name):
    # The restore tools match ids with \d, which takes every Unicode digit.
    assert_rejected("backup_name", lambda: BackupConfig(backup_name=name), "looks like a backup id")


@pytest.mark.parametrize("name", [".", "..", "\uff0e\uff0e", "\u2025", "a\\b", "%2e%2e", "db%20one", "db1 ", " db1",
                                  "db\uff0f1", "db1\n", "db\r1", "db\x00", "db\u2028x"])
def test_server_name_that_moves_or_breaks_keys_is_refused(name):
    message = assert_rejected("server_name", lambda: storage(server_name=name))
    assert "\n" not in message and "\r" not in message


@pytest.mark.parametrize("name", ["db1", "pg-prod_1", "db.example.com", "...", "db 1", "\u00e9t\u00e9"])
def test_server_names_that_are_plain_folder_names(name):
    assert storage(server_name=name).server_name == name


@pytest.mark.parametrize("url", [
    "s3://b/a/../x", "s3://b/a/./x", "s3://b/..", "s3://b/a//x", "s3://b//", "s3://b/a/%2e%2e/x", "s3://b/a/%2E./x",
    "s3://b/a\\..\\x", "s3://b/\uff0e\uff0e/x", "s3://b/a\n", "s3://b/a\nb", "s3://b/\tx", " s3://b/a", "s3://b/a ",
    "https://acct.blob.core.windows.net/c/../other/p", "gs://b/p/../../x",
])
def test_destination_url_that_leaves_its_folder_or_breaks_a_file_is_refused(url):
    message = assert_rejected("destination_url", lambda: storage(destination_url=url))
    assert "\n" not in message


SECRET_QUERY = "sv=2024-11-04&sig=c2VjcmV0c2lnbmF0dXJl"


@pytest.mark.parametrize("url", [
    "https://acct.blob.core.windows.net/c/pg?" + SECRET_QUERY,
    "https://acct.blob.core.windows.net/c/pg#" + SECRET_QUERY,
    "s3://bkt/pg?" + SECRET_QUERY,
    "gs://bkt/pg?x=1#" + SECRET_QUERY,
    "s3://bkt/pg?",
    "https://user:" + SECRET_QUERY + "@acct.blob.core.windows.net/c/pg",
])
def test_destination_url_with_a_query_or_user_information_is_refused_without_echo(url):
    provider = "azure-blob-storage" if url.startswith("https") else "aws-s3"
    if url.startswith("gs"):
        provider = "google-cloud-storage"
    message = assert_rejected("destination_url", lambda: storage(destination_url=url, cloud_provider=provider))
    assert "sig=" not in message and "c2VjcmV0" not in message


@pytest.mark.parametrize("url", [
    "http://minio_1:9000", "http://minio:99999", "http://minio:0", "http://minio:port", "http://[::1", "http://[zz]:9000",
    "http://-minio:9000", "http://minio:9000?x=1", "http://key:secret@minio:9000", "http://minio:9000/a/../b",
    "http://minio\n:9000", "ftp://minio:9000", "http://", "minio:9000", "http://mi nio:9000",
])
def test_endpoint_url_that_no_client_can_use_is_refused(url):
    message = assert_rejected("endpoint_url", lambda: storage(endpoint_url=url))
    assert "secret" not in message


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000", "https://s3.eu-west-1.amazonaws.com", "http://[::1]:9000",
                                 "http://minio-1.local:9000/", "https://storage.example.com."])
def test_endpoint_urls_that_work(url):
    assert storage(endpoint_url=url).endpoint_url == url


# --- tags by store ----------------------------------------------------------------------------

AZURE_URL = "https://acct.blob.core.windows.net/c"
GCS_URL = "gs://bkt/pg"


@pytest.mark.parametrize("provider, url, tags", [
    ("azure-blob-storage", AZURE_URL, {"owner": "dba@example.com"}),
    ("azure-blob-storage", AZURE_URL, {"owner@team": "dba"}),
    ("google-cloud-storage", GCS_URL, {"team name": "dba"}),
    ("google-cloud-storage", GCS_URL, {"team:name": "dba"}),
    ("google-cloud-storage", GCS_URL, {"team/name": "dba"}),
    ("google-cloud-storage", GCS_URL, {"team=x": "dba"}),
    ("google-cloud-storage", GCS_URL, {"Team": "dba", "team": "ops"}),
    ("google-cloud-storage", GCS_URL, {"team": "dba\nX-Injected: 1"}),
    ("aws-s3", URL, {"team": "dba\nops"}),
    ("aws-s3", URL, {"team": "dba\tops"}),
    ("aws-s3", URL, {"team": " dba"}),
    ("aws-s3", URL, {"team ": "dba"}),
    ("aws-s3", URL, {1: "a", "1": "b"}),
])
def test_tags_a_store_would_refuse_are_refused_before_the_backup(provider, url, tags):
    assert_rejected("tags", lambda: storage(destination_url=url, cloud_provider=provider, tags=tags))


@pytest.mark.parametrize("provider, url, tags", [
    ("aws-s3", URL, {"owner": "dba@example.com", "path": "a/b:c=d+e"}),
    ("azure-blob-storage", AZURE_URL, {"team name": "a/b:c=d+e-f_g.h"}),
    ("google-cloud-storage", GCS_URL, {"team.name_1+x-y": "dba@example.com a/b:c=d"}),
])
def test_tags_each_store_takes(provider, url, tags):
    assert storage(destination_url=url, cloud_provider=provider, tags=tags).tags == tags


def test_tags_must_be_a_dictionary():
    assert_rejected("tags", lambda: storage(tags=["team", "dba"]), "dictionary")


# --- bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [65, 10000, "many", "1.5", True, 2.5])
def test_jobs_has_an_upper_bound_and_must_be_a_number(jobs):
    assert_rejected("jobs", lambda: storage(jobs=jobs), "at most 64")


def test_sixty_four_jobs_are_allowed():
    assert storage(jobs=64).jobs == 64


@pytest.mark.parametrize("provider, url, size", [
    ("aws-s3", URL, "5121MB"),
    ("google-cloud-storage", GCS_URL, "6GB"),
    ("azure-blob-storage", AZURE_URL, "4001MB"),
    ("aws-s3", URL, "1TB"),
])
def test_min_chunk_size_past_the_largest_part_of_the_store_is_refused(provider, url, size):
    assert_rejected("min_chunk_size", lambda: storage(destination_url=url, cloud_provider=provider,
                                                      min_chunk_size=size), "largest part")


@pytest.mark.parametrize("provider, url, size, expected", [
    ("aws-s3", URL, "5GB", 5 << 30),
    ("azure-blob-storage", AZURE_URL, "4000MB", 4000 << 20),
])
def test_min_chunk_size_up_to_the_largest_part(provider, url, size, expected):
    assert storage(destination_url=url, cloud_provider=provider, min_chunk_size=size).min_chunk_size == expected


@pytest.mark.parametrize("value", [1, "1", "1KB", "127KB"])
def test_max_bandwidth_too_low_to_finish_is_refused(value):
    assert_rejected("max_bandwidth", lambda: storage(max_bandwidth=value), "128KB")


def test_max_bandwidth_of_128_kib_is_allowed():
    assert storage(max_bandwidth="128KB").max_bandwidth == 128 << 10


@pytest.mark.parametrize("size", ["25001GB", "1PB", "9" * 400, "1e400"])
def test_max_archive_size_past_the_part_limits_is_refused(size):
    assert_rejected("max_archive_size", lambda: BackupConfig(max_archive_size=size))


def test_max_archive_size_up_to_25000_gib_is_allowed():
    assert BackupConfig(max_archive_size="25000GB").max_archive_size == 25000 << 30


@pytest.mark.parametrize("parameter, value", [
    ("read_timeout", 3601), ("read_timeout", "soon"),
])
def test_read_timeout_is_bounded(parameter, value):
    assert_rejected(parameter, lambda: storage(**{parameter: value}), "at most 3600")


@pytest.mark.parametrize("parameter, value", [
    ("keepalive_interval", 3601), ("wal_archive_timeout", 86401), ("keepalive_interval", "often"),
])
def test_postgres_timeouts_are_bounded(parameter, value):
    assert_rejected(parameter, lambda: PostgresConfig(**{parameter: value}), "at most")


@pytest.mark.parametrize("text, expected", [("false", False), ("no", False), ("0", False), ("True", True),
                                            ("yes", True), (True, True), (False, False)])
def test_booleans_given_as_text_are_read_as_booleans(text, expected):
    # A role's job config may carry "false" from `-e name=false`: as text it would be true.
    assert storage(aws_irsa=text).aws_irsa is expected
    assert PostgresConfig(immediate_checkpoint=text).immediate_checkpoint is expected


@pytest.mark.parametrize("value", ["maybe", 2, [True]])
def test_a_boolean_that_is_not_one_is_refused(value):
    assert_rejected("aws_irsa", lambda: storage(aws_irsa=value), "true or false")
    assert_rejected("immediate_checkpoint", lambda: PostgresConfig(immediate_checkpoint=value), "true or false")


@pytest.mark.parametrize("parameter, value, provider, url", [
    ("kms_key_name", "projects/p/locations/l/keyRings/r/cryptoKeys/k\nX-Injected: 1", "google-cloud-storage", GCS_URL),
    ("encryption_scope", "scope1\r\n", "azure-blob-storage", AZURE_URL),
    ("sse_kms_key_id", "alias/backups ", "aws-s3", URL),
    ("aws_profile", "prod\t", "aws-s3", URL),
])
def test_text_options_that_reach_headers_refuse_line_breaks(parameter, value, provider, url):
    extra = {"encryption": "aws:kms"} if parameter == "sse_kms_key_id" else {}
    assert_rejected(parameter, lambda: storage(destination_url=url, cloud_provider=provider,
                                               **dict(extra, **{parameter: value})))
