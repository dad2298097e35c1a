# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The role's controller-side check of a job's variables (roles/scheduled_backup/files/
check_job_config.py), run as the role runs it: JSON on stdin, the engine on PYTHONPATH. The
integration tests run a few of these cases through the role itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.pgcloud.backup.plugins.module_utils import engine

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "scheduled_backup", "files",
                      "check_job_config.py")
CONFIG = {"storage": {"destination_url": "s3://bucket/pg", "server_name": "db1"}}
# What vars/main.yml gives for the role's defaults.
UNIT = {"schedule": ["*-*-* 02:00:00"], "cron_minute": "17", "cron_hour": "2", "cron_weekday": "*",
        "os_user": "postgres", "os_group": "postgres", "install_dir": "/opt/pgcloud-backup-job",
        "config_root": "/etc/pgcloud-backup", "status_root": "/var/lib/pgcloud-backup",
        "python": "/opt/pgcloud-backup-job/venv/bin/python", "unit_dir": "/etc/systemd/system",
        "cron_dir": "/etc/cron.d", "job_environment": {"HTTPS_PROXY": "http://proxy:3128"}}


def checked(**unit):
    given = {"config": CONFIG, "unit": dict(UNIT, **unit)}
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(engine.__file__)))
    return subprocess.run([sys.executable, SCRIPT], input=json.dumps(given), capture_output=True, text=True,
                          env=env, check=False)


def test_the_role_defaults_pass():
    result = checked()
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("unit, words", [
    ({"cron_hour": "2\n* * * * * root id"}, ("pgcloud_backup_cron_hour:", "U+000A")),
    ({"cron_minute": "0 3"}, ("pgcloud_backup_cron_minute:", "one cron field")),
    ({"cron_weekday": "mon;id"}, ("pgcloud_backup_cron_weekday:", "one cron field")),
    ({"cron_weekday": "$(id)"}, ("pgcloud_backup_cron_weekday:", "one cron field")),
    ({"schedule": ["daily", "*-*-* 02:00:00\nExecStartPre=id"]}, ("pgcloud_backup_schedule:", "U+000A")),
    ({"schedule": []}, ("pgcloud_backup_schedule:", "at least one")),
    ({"os_user": "postgres\nExecStartPre=id"}, ("pgcloud_backup_os_user:", "U+000A")),
    ({"os_group": "post gres"}, ("pgcloud_backup_os_group:", "group name")),
    ({"python": "/usr/bin/python3 -c id"}, ("pgcloud_backup_python:", "command line")),
    ({"install_dir": "/opt/pg%backup"}, ("pgcloud_backup_install_dir:", "archive_command")),
    ({"config_root": "/etc/pg backup"}, ("pgcloud_backup_config_root:", "command line")),
    ({"status_root": "/var/lib/pg\u2028backup"}, ("pgcloud_backup_status_root:", "U+2028")),
    ({"unit_dir": "/etc/systemd/system\t"}, ("pgcloud_backup_unit_dir:", "U+0009")),
    ({"job_environment": {"HTTPS_PROXY": "http://proxy:3128\n* * * * * root id"}},
     ("pgcloud_backup_job_environment:", "HTTPS_PROXY", "U+000A")),
    ({"job_environment": {"BAD NAME": "1"}}, ("pgcloud_backup_job_environment:", "variable name")),
    ({"job_environment": {"1ST": "1"}}, ("pgcloud_backup_job_environment:", "variable name")),
])
def test_unit_and_cron_text_is_refused_naming_the_variable(unit, words):
    result = checked(**unit)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert all(word in result.stdout for word in words), result.stdout
