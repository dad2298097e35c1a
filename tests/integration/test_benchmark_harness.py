# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The benchmarks' measurement of one run, which every figure of benchmarks/README.md rests on."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import run as bench  # noqa: E402  pylint: disable=wrong-import-position

MIB = 1 << 20


def test_a_wall_ends_when_the_process_exits(tmp_path):
    # Memory sampled every 2 s: a wall that waited for the next sample would take 2 s.
    result = bench.measure("quick", "none", "", [sys.executable, "-c", "pass"], tmp_path / "quick", 2.0)
    assert result.ok
    assert result.wall < 1.0


def test_memory_is_sampled_while_the_process_runs(tmp_path):
    command = [sys.executable, "-c", "import time; data = b'x' * (64 << 20); time.sleep(0.5)"]
    result = bench.measure("busy", "none", "", command, tmp_path / "busy", 0.05, with_pss=False)
    assert result.ok
    assert result.peak_rss > 64 * MIB
    assert result.peak_pss == 0
    assert 0.5 <= result.wall < 5.0
