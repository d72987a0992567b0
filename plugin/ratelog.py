"""A log call that speaks at most once per interval and says how much it held back.

An outage can make the plugin drop or retry thousands of events a minute; one
line per event would bury the orchestrator's own log, none would hide the loss.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class RateLimitedLog:
    """Logs the first call at once, then at most one line per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._held = 0

    def warning(self, msg: str, *args: Any, count: int = 1) -> None:
        """Log ``msg % args`` unless one was logged less than ``interval`` ago.

        ``count`` is how many occurrences this call stands for; those held back
        are reported with the next line that gets through.
        """
        now = time.monotonic()
        with self._lock:
            self._held += count
            if now < self._next_at:
                return
            held, self._held = self._held, 0
            self._next_at = now + self._interval
        suffix = f" ({held} occurrences since the last report)" if held > 1 else ""
        self._logger.warning(msg + suffix, *args)
