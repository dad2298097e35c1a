# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""errors.py: what callers catch and what the operator reads."""

from __future__ import annotations

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils.engine import errors


@pytest.mark.parametrize("cls", [
    errors.ConfigurationError, errors.MissingDependencyError, errors.StorageError,
    errors.StorageUnreachableError, errors.BucketNotFoundError, errors.StorageAccessDeniedError,
    errors.BackupNotFoundError, errors.PostgresError, errors.BackupError,
])
def test_every_engine_error_is_a_pgcloud_error(cls):
    assert issubclass(cls, errors.PgCloudError)


@pytest.mark.parametrize("cls", [errors.StorageUnreachableError, errors.BucketNotFoundError,
                                 errors.StorageAccessDeniedError])
def test_store_failures_are_storage_errors(cls):
    assert issubclass(cls, errors.StorageError)


def test_configuration_error_names_the_parameter():
    error = errors.ConfigurationError("jobs must be a positive integer", "jobs")
    assert error.parameter == "jobs"
    assert str(error) == "jobs must be a positive integer"
    assert errors.ConfigurationError("no parameter").parameter is None


def test_missing_dependency_says_what_to_install():
    cause = ImportError("No module named 'zstandard'")
    error = errors.MissingDependencyError("zstandard", "compression: zstd", cause)
    assert str(error) == (
        "the Python library zstandard is required for compression: zstd; install it on the managed host "
        "(for example: pip install zstandard)"
    )
    assert (error.library, error.purpose, error.cause) == ("zstandard", "compression: zstd", cause)


def test_backup_error_carries_the_backup_id():
    error = errors.BackupError("backup 20261125T023350 failed: boom", "20261125T023350")
    assert error.backup_id == "20261125T023350"
    assert "boom" in str(error)
