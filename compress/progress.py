"""Progress of long work (searches, sensitivity analysis, calibration), logged at a bounded rate.

Long loops call :meth:`ProgressLog.update` at every step; a line reaches ``logging`` (level INFO, the caller's
logger) at most every ``interval`` seconds, and once at the end, so a log file gets a heartbeat and not one line
per evaluation. Show it with ``logging.basicConfig(level=logging.INFO)``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Optional

__all__ = ["ProgressLog"]


class ProgressLog:
    """A rate-limited progress line: ``what: 12/40 (30%), 7.1 s, about 16.6 s left; best sparsity 0.71``.

    Args:
        logger: where the lines go (level INFO).
        what: what is running (``"sensitivity"``, ``"greedy search"``).
        total: steps in all, when known (then the line has a percentage and an estimate of the time left).
        interval: at least this many seconds between two lines.

    Example:
        >>> import logging
        >>> progress = ProgressLog(logging.getLogger("demo"), "calibration", total=3, interval=0.0)
        >>> for i in range(3):
        ...     progress.update(i + 1)
        >>> progress.lines
        3
    """

    def __init__(self, logger: logging.Logger, what: str, total: Optional[int] = None, interval: float = 30.0):
        self.logger, self.what, self.total, self.interval = logger, what, total, float(interval)
        self.started = self.last = time.monotonic()
        self.done = 0
        #: lines logged so far
        self.lines = 0

    def update(self, done: int, note: str = "", *args: Any, force: bool = False) -> None:
        """``done`` steps so far; ``note % args`` is appended to the line (formatted only when logged)."""
        self.done = done
        now = time.monotonic()
        if not force and now - self.last < self.interval and not (self.total and done >= self.total):
            return
        self.last = now
        self.lines += 1
        elapsed = now - self.started
        if self.total:
            left = elapsed * (self.total - done) / done if done else float("nan")
            head = f"{self.what}: {done}/{self.total} ({100 * done / self.total:.0f}%), {elapsed:.1f} s"
            if done < self.total:
                head += f", about {left:.1f} s left"
        else:
            head = f"{self.what}: {done} done, {elapsed:.1f} s"
        self.logger.info("%s", head + "; " + (note % args if args else note) if note else head)
