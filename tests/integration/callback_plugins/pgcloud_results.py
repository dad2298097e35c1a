# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: every task result of a playbook run, written to one JSON file.

ansible-core ships no JSON callback (that one lives in ansible.posix, which the test bed does
not install). This is a notification callback, so the normal output stays on stdout; the
integration tests (tests/integration/testbed.py, run_playbook) enable it with
ANSIBLE_CALLBACKS_ENABLED=pgcloud_results and read the file named by PGCLOUD_RESULTS_FILE.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: pgcloud_results
type: notification
short_description: Write every task result to a JSON file (pgcloud.backup integration tests)
description:
  - At the end of the run, writes a JSON document with the keys C(tasks) and C(stats) to the
    file named by E(PGCLOUD_RESULTS_FILE). Each task entry has C(name), C(action), C(host),
    C(status) and C(result).
options:
  results_file:
    description: The file to write.
    type: path
    env:
      - name: PGCLOUD_RESULTS_FILE
"""

import json

from ansible.plugins.callback import CallbackBase


def _field(result, name):
    """CallbackTaskResult (ansible-core 2.19+) has result/task/host; older ones _result/..."""
    value = getattr(result, name, None)
    if value is None or callable(value):
        value = getattr(result, "_" + name)
    return value


def _text(warning):
    """A warning as text: a str before ansible-core 2.19, a summary object with a message since."""
    if isinstance(warning, str):
        return warning
    event = getattr(warning, "event", None)
    return str(getattr(event, "msg", None) or getattr(warning, "msg", None) or warning)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "pgcloud_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tasks = []

    def _record(self, result, status):
        task = _field(result, "task")
        host = _field(result, "host")
        payload = _field(result, "result")
        if status == "ok" and payload.get("changed"):
            status = "changed"
        # _dump_results turns Ansible's own types into plain JSON (and hides no_log values).
        dumped = json.loads(self._dump_results(payload, keep_invocation=True))
        # ansible-core 2.19+ keeps "failed" out of the dumped result; the status says it.
        dumped["failed"] = status in ("failed", "unreachable")
        # _dump_results also drops the warnings, which tests want to see: back as text.
        dumped["warnings"] = [_text(warning) for warning in payload.get("warnings") or []]
        self._tasks.append({
            "name": task.get_name(),
            "action": task.action,
            "host": host.get_name(),
            "status": status,
            "result": dumped,
        })

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        summary = {host: stats.summarize(host) for host in sorted(stats.processed)}
        path = self.get_option("results_file")
        if path:
            with open(path, "w") as results:
                json.dump({"tasks": self._tasks, "stats": summary}, results, indent=1, default=str)
