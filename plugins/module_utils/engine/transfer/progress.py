# -*- coding: utf-8 -*-
# Copyright: contributors to the pgcloud.backup collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far a long transfer is: bytes counted from several threads, and a line for the journal
at most every PROGRESS_INTERVAL seconds, so that a backup or restore of hours can be followed."""

from __future__ import annotations

import threading
import time

PROGRESS_INTERVAL = 10.0
MIB = float(1 << 20)


class ProgressCounter:
    """Counts bytes; add() says when a progress line is due (read at each call, so that tests
    can set PROGRESS_INTERVAL)."""

    def __init__(self) -> None:
        self.count = 0
        self.started = time.monotonic()
        self._last_report = self.started
        self._lock = threading.Lock()

    def add(self, size: int) -> bool:
        with self._lock:
            self.count += size
            now = time.monotonic()
            if now - self._last_report < PROGRESS_INTERVAL:
                return False
            self._last_report = now
            return True

    def mib_per_second(self) -> float:
        return self.count / MIB / max(time.monotonic() - self.started, 1e-6)
