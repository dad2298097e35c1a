# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Ansible side of the modules: argument specs, parameter translation, log and errors.

The module tests run a real AnsibleModule (its arguments patched in, as ansible-test does)
and read the JSON it prints, so that they see what a playbook would see, no_log masking
included.
"""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.pgcloud.backup.plugins.module_utils import ansible_adapter as adapter
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.errors import (
    BackupError,
    ConfigurationError,
    MissingDependencyError,
    StorageError,
)
from ansible_collections.pgcloud.backup.plugins.module_utils.engine.version import COLLECTION_VERSION

SECRET_OPTIONS = {"aws_access_key", "aws_secret_key", "aws_session_token", "sse_customer_key", "password",
                  "azure_storage_connection_string", "azure_storage_sas_token", "azure_storage_key",
                  "gcp_service_account_contents", "primary_conninfo"}
REQUIRED = {"destination_url": "s3://acme-backups/postgres", "server_name": "db1"}


def every_piece():
    return {
        "storage": adapter.storage_argument_spec(),
        "sse_customer_key": adapter.sse_customer_key_argument_spec(),
        "postgres": adapter.postgres_argument_spec(),
        "upload": adapter.upload_argument_spec(),
    }


def writer_spec():
    """The shared part of base_backup's spec: every option of every piece."""
    return adapter.merge_argument_specs(
        adapter.storage_argument_spec(), adapter.postgres_argument_spec(), adapter.upload_argument_spec()
    )


def writer_rules():
    return adapter.merge_rules(adapter.storage_rules(), adapter.upload_rules())


# --- fixtures: the host's journal and Ansible's global warning lists -------------------------


@pytest.fixture(autouse=True)
def journal(monkeypatch):
    """What AnsibleModule.log sends to syslog (the journal is switched off for the test)."""
    lines = []
    monkeypatch.setattr(basic, "has_journal", False)
    monkeypatch.setattr(basic, "HAS_SYSLOG", True)
    monkeypatch.setattr(basic.syslog, "openlog", lambda *args: None)
    monkeypatch.setattr(basic.syslog, "syslog", lambda priority, message: lines.append(message))
    return lines


@pytest.fixture(autouse=True)
def quiet_engine_logger():
    """No handler or level of one test leaks into the next."""
    logger = logging.getLogger(adapter.ENGINE_LOGGER)
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture
def run(run_main):
    """run(args, body, spec=None, rules=None) -> (exit code, result, raw output).

    body(module) plays the module's main: it must end with exit_json or fail_json.
    """

    def run_module(args, body, spec=None, rules=None):
        def main():
            body(adapter.PgCloudModule(spec or writer_spec(), rules=writer_rules() if rules is None else rules))

        return run_main(args, main)

    return run_module


def exit_with_nothing(module):
    module.exit_json()


def fail_with(error):
    def body(module):
        with module.engine_errors():
            raise error
        module.exit_json()  # not reached

    return body


# --- argument specs ----------------------------------------------------------------------


def test_every_secret_is_no_log_and_nothing_else_is():
    merged = writer_spec()
    hidden = {name for name, option in merged.items() if option.get("no_log")}
    assert hidden == SECRET_OPTIONS


def test_deprecated_aliases_name_the_collection_and_the_removal_version():
    merged = writer_spec()
    deprecated = {}
    for name, option in merged.items():
        for entry in option.get("deprecated_aliases", []):
            assert entry["collection_name"] == "pgcloud.backup"
            assert entry["version"] == "2.0.0"
            # Ansible only accepts a deprecated alias that is an alias too.
            assert entry["name"] in option["aliases"]
            deprecated[entry["name"]] = name
    assert deprecated == {"profile": "aws_profile", "credential": "azure_credential"}


def test_aliases_follow_the_option_map():
    merged = writer_spec()
    aliases = {name: option["aliases"] for name, option in merged.items() if option.get("aliases")}
    assert aliases == {
        "aws_profile": ["profile"],
        "azure_credential": ["credential"],
        "aws_access_key": ["access_key"],
        "aws_secret_key": ["secret_key"],
        "aws_session_token": ["session_token"],
        "host": ["login_host"],
        "port": ["login_port"],
        "user": ["login_user"],
        "dbname": ["login_db"],
        "password": ["login_password"],
        "backup_name": ["name"],
    }


def test_choices_keep_the_documented_spellings():
    merged = writer_spec()
    assert merged["cloud_provider"]["choices"] == ["aws-s3", "azure-blob-storage", "google-cloud-storage"]
    assert merged["encryption"]["choices"] == ["AES256", "aws:kms"]
    assert merged["azure_credential"]["choices"] == ["azure-cli", "managed-identity", "default"]
    assert merged["addressing_style"]["choices"] == ["auto", "virtual", "path"]


def test_defaults_are_the_reference_tools():
    merged = writer_spec()
    defaults = {name: option["default"] for name, option in merged.items() if "default" in option}
    assert defaults == {
        "cloud_provider": "aws-s3",
        "aws_irsa": False,
        "read_timeout": 60,
        "addressing_style": "auto",
        "dbname": "postgres",
        "immediate_checkpoint": False,
        "keepalive_interval": 60,
        # Not the reference's, which does not wait at all: a backup from a standby is only
        # recorded DONE once it can be restored (see backup_job._await_end_wal).
        "wal_archive_timeout": 300,
        # Not the reference's either: a primary that archives no WAL gives backups that cannot be restored.
        "require_wal_archiving": True,
    }


@pytest.mark.parametrize("piece", sorted(every_piece()))
def test_each_piece_is_a_valid_ansible_argument_spec(piece):
    spec = dict(adapter.storage_argument_spec())
    spec.update(every_piece()[piece])
    result = ArgumentSpecValidator(spec).validate(dict(REQUIRED))
    assert result.error_messages == []


def test_readers_and_writers_share_one_sse_customer_key_option():
    # backup_info needs the key to read what base_backup encrypted with it.
    assert adapter.upload_argument_spec()["sse_customer_key"] == adapter.sse_customer_key_argument_spec()["sse_customer_key"]


def test_pieces_are_new_dicts_each_time():
    first = adapter.storage_argument_spec()
    first["server_name"]["required"] = False
    first["aws_profile"]["aliases"].append("other")
    second = adapter.storage_argument_spec()
    assert second["server_name"]["required"] is True
    assert second["aws_profile"]["aliases"] == ["profile"]


def test_merging_refuses_an_option_defined_twice():
    with pytest.raises(ValueError, match="host"):
        adapter.merge_argument_specs(adapter.postgres_argument_spec(), {"host": {"type": "str"}})


def test_merged_rules_keep_every_rule():
    rules = writer_rules()
    assert ["aws_profile", "aws_irsa"] in rules["mutually_exclusive"]
    assert ["sse_customer_key", "encryption"] in rules["mutually_exclusive"]
    assert rules["required_by"] == {
        "aws_session_token": ["aws_access_key", "aws_secret_key"],
        "sse_kms_key_id": ["encryption"],
    }


# --- parameters to engine configs --------------------------------------------------------


def test_parameters_and_their_aliases_become_engine_configs(run):
    configs = {}

    def body(module):
        with module.engine_errors():
            configs.update(storage=module.storage_config(), postgres=module.postgres_config(),
                           backup=module.backup_config())
        module.exit_json()

    args = dict(REQUIRED, login_host="/var/run/postgresql", login_port=5433, login_user="backup",
                name="nightly", tags={"team": "dba", "copies": 2}, endpoint_url="http://127.0.0.1:9000",
                immediate_checkpoint=True)
    code, result, _raw = run(args, body)
    assert code == 0, result
    storage, postgres, backup = configs["storage"], configs["postgres"], configs["backup"]
    assert (storage.destination_url, storage.server_name) == ("s3://acme-backups/postgres", "db1")
    assert storage.endpoint_url == "http://127.0.0.1:9000"
    assert storage.tags == {"team": "dba", "copies": "2"}
    assert storage.read_timeout == 60
    assert (postgres.host, postgres.port, postgres.user, postgres.dbname) == ("/var/run/postgresql", 5433, "backup", "postgres")
    assert postgres.immediate_checkpoint is True
    assert postgres.keepalive_interval == 60
    assert backup.backup_name == "nightly"
    assert backup.max_archive_size == 100 * 1024 ** 3  # the default 100GB, B being base 1024


def test_a_deprecated_alias_still_works_and_warns(run):
    seen = {}

    def body(module):
        seen["profile"] = module.storage_config().aws_profile
        module.exit_json()

    code, result, _raw = run(dict(REQUIRED, profile="backups"), body)
    assert code == 0
    assert seen["profile"] == "backups"
    assert any("profile" in str(item) and "2.0.0" in str(item) for item in result.get("deprecations", []))


def test_rules_ansible_can_express_are_checked_before_the_engine(run):
    code, result, _raw = run(dict(REQUIRED, aws_profile="backups", aws_irsa=True), exit_with_nothing)
    assert code == 1
    assert "mutually exclusive" in result["msg"] and "aws_profile" in result["msg"]

    code, result, _raw = run(dict(REQUIRED, sse_customer_key="a2V5", encryption="AES256"), exit_with_nothing)
    assert code == 1
    assert "sse_customer_key" in result["msg"] and "encryption" in result["msg"]


def test_an_invalid_value_fails_with_the_parameter_name(run):
    def body(module):
        with module.engine_errors():
            module.storage_config()
        module.exit_json()

    code, result, _raw = run(dict(REQUIRED, server_name="db1/replica"), body)
    assert code == 1
    assert "server_name" in result["msg"]
    assert result["parameter"] == "server_name"
    assert "exception" not in result


# --- results: version, log, errors -------------------------------------------------------


def test_every_result_carries_the_collection_version_and_the_log(run):
    code, result, _raw = run(dict(REQUIRED), exit_with_nothing)
    assert code == 0
    assert result["version"] == COLLECTION_VERSION
    assert result["log"] == []
    assert result["changed"] is False

    code, result, _raw = run(dict(REQUIRED), fail_with(StorageError("the store said no")))
    assert code == 1
    assert result["version"] == COLLECTION_VERSION
    assert "log" in result


def test_collection_version_is_the_one_of_galaxy_yml():
    """galaxy.yml in a checkout; its MANIFEST.json in an installed copy, which has no galaxy.yml."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
    galaxy = os.path.join(root, "galaxy.yml")
    if os.path.exists(galaxy):
        with open(galaxy) as handle:
            match = re.search(r"^version:\s*['\"]?([^'\"\s]+)", handle.read(), re.MULTILINE)
        version = match.group(1) if match else None
    else:
        with open(os.path.join(root, "MANIFEST.json")) as handle:
            version = json.load(handle)["collection_info"]["version"]
    assert version == COLLECTION_VERSION


def test_configuration_error_names_the_parameter(run):
    code, result, _raw = run(dict(REQUIRED), fail_with(ConfigurationError("must be at least 1", "jobs")))
    assert code == 1
    assert result["msg"] == "jobs: must be at least 1"
    assert result["parameter"] == "jobs"
    assert "exception" not in result


def test_configuration_error_that_names_its_parameter_is_left_alone(run):
    error = ConfigurationError("sse_kms_key_id is only used with encryption=aws:kms", "sse_kms_key_id")
    _code, result, _raw = run(dict(REQUIRED), fail_with(error))
    assert result["msg"] == "sse_kms_key_id is only used with encryption=aws:kms"


def test_missing_library_says_which_and_what_for(run):
    error = MissingDependencyError("zstandard", "compression: zstd", ImportError("No module named 'zstandard'"))
    code, result, _raw = run(dict(REQUIRED), fail_with(error))
    assert code == 1
    assert "Failed to import the required Python library (zstandard)" in result["msg"]
    assert "compression: zstd" in result["msg"]
    assert result["import_error"] == "No module named 'zstandard'"
    assert "exception" not in result


def test_failed_backup_reports_its_id(run):
    error = BackupError("backup 20260125T031500 failed: disk full", "20260125T031500")
    code, result, _raw = run(dict(REQUIRED), fail_with(error))
    assert code == 1
    assert result["msg"] == "backup 20260125T031500 failed: disk full"
    assert result["backup_id"] == "20260125T031500"
    assert "exception" not in result


def test_other_engine_errors_keep_their_message(run):
    error = StorageError("bucket 'acme-backups' does not exist; create it or fix destination_url")
    code, result, _raw = run(dict(REQUIRED), fail_with(error))
    assert code == 1
    assert result["msg"] == "bucket 'acme-backups' does not exist; create it or fix destination_url"


def test_unexpected_errors_say_what_happened(run):
    code, result, _raw = run(dict(REQUIRED), fail_with(KeyError("chunk")))
    assert code == 1
    assert "unexpected error" in result["msg"] and "KeyError" in result["msg"] and "chunk" in result["msg"]


# --- the engine's log --------------------------------------------------------------------


def log_and_exit(*records):
    def body(module):
        logger = logging.getLogger("pgcloud.backup")
        for level, message in records:
            logger.log(level, message)
        module.exit_json()

    return body


def test_engine_log_is_returned_and_sent_to_the_journal(run, journal):
    code, result, _raw = run(dict(REQUIRED), log_and_exit((logging.INFO, "backup X: 512 MiB read")))
    assert code == 0
    assert len(result["log"]) == 1 and result["log"][0].endswith("INFO backup X: 512 MiB read")
    assert any("backup X: 512 MiB read" in line for line in journal)


def test_debug_lines_follow_ansible_verbosity(run):
    records = ((logging.DEBUG, "part 7 uploaded"), (logging.INFO, "archiving PGDATA"))
    _code, quiet, _raw = run(dict(REQUIRED), log_and_exit(*records))
    _code, verbose, _raw = run(dict(REQUIRED, _ansible_verbosity=2), log_and_exit(*records))
    assert [line.split(" ", 2)[2] for line in quiet["log"]] == ["INFO archiving PGDATA"]
    assert [line.split(" ", 2)[2] for line in verbose["log"]] == ["DEBUG part 7 uploaded", "INFO archiving PGDATA"]


def test_engine_warnings_become_ansible_warnings(run):
    _code, result, _raw = run(dict(REQUIRED), log_and_exit((logging.WARNING, "max_archive_size is capped")))
    assert any("max_archive_size is capped" in str(warning) for warning in result.get("warnings", []))


def test_log_handler_is_removed_when_the_module_ends(run):
    run(dict(REQUIRED), exit_with_nothing)
    handlers = logging.getLogger("pgcloud.backup").handlers
    assert not [handler for handler in handlers if isinstance(handler, adapter.EngineLogCollector)]


# --- secrets -----------------------------------------------------------------------------


def test_secrets_never_reach_the_result_or_the_journal(run, journal):
    secrets = dict(password="Pg-Secret-1", aws_access_key="AKIAEXAMPLEKEY", aws_secret_key="Aws-Secret-2",
                   aws_session_token="Session-Token-3")

    def body(module):
        logging.getLogger("pgcloud.backup").info("connecting with %s", " ".join(secrets.values()))
        with module.engine_errors():
            raise StorageError("refused: %s" % secrets["aws_secret_key"])

    code, result, raw = run(dict(REQUIRED, **secrets), body)
    assert code == 1
    for secret in secrets.values():
        assert secret not in raw
        assert not [line for line in journal if secret in line]
    assert "refused: " in result["msg"]


def test_sse_customer_key_is_never_shown(run):
    key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    _code, _result, raw = run(dict(REQUIRED, sse_customer_key=key), log_and_exit((logging.INFO, "key " + key)))
    assert key not in raw


@pytest.mark.parametrize("text, shown", [
    ("cannot connect: host=db password=s3cr3t dbname=postgres", "cannot connect: host=db password=******** dbname=postgres"),
    ("password = 'with space' port=5432", "password = ******** port=5432"),
    ("dsn postgresql://backup:s3cr3t@db:5432/postgres", "dsn postgresql://backup:********@db:5432/postgres"),
    ("no secret in here", "no secret in here"),
])
def test_passwords_inside_connection_strings_are_redacted(text, shown):
    assert adapter.redact(text) == shown


def test_conninfo_password_in_dbname_is_redacted_from_the_log(run):
    _code, result, raw = run(
        dict(REQUIRED, dbname="host=db password=Conninfo-Secret"),
        log_and_exit((logging.INFO, "connecting to host=db password=Conninfo-Secret")),
    )
    assert "Conninfo-Secret" not in json.dumps(result["log"])


@pytest.mark.parametrize("url, shown", [
    ("https://acct.blob.core.windows.net/c/pg?sv=2024&sig=SECRET", "https://acct.blob.core.windows.net/c/pg"),
    ("https://acct.blob.core.windows.net/c/pg#sig=SECRET", "https://acct.blob.core.windows.net/c/pg"),
    ("https://acct.blob.core.windows.net/c/pg;sig=SECRET", "https://acct.blob.core.windows.net/c/pg"),
    ("http://key:SECRET@minio:9000/", "http://minio:9000/"),
    ("s3://bkt/pg", "s3://bkt/pg"),
])
def test_shown_params_cut_what_may_hold_a_secret_from_urls(url, shown):
    params = {"destination_url": url, "endpoint_url": url, "server_name": "db1?x"}
    assert adapter.shown_params(params) == {"destination_url": shown, "endpoint_url": shown, "server_name": "db1?x"}
