"""Shared retry primitives: capped exponential backoff with equal jitter, and a log throttle.

Used by the Modbus links (reconnects), delivery (resends), the heartbeat and every place
that reports a fault which may repeat each cycle: a fault is worth a line when it starts,
at its 10th, 100th, ... occurrence, and otherwise at most once per ``interval``, so a
device or a disk that stays broken for a day writes tens of lines, not a line a cycle.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


def backoff(failures: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait after the n-th failure in a row (0 = the first): "equal jitter" on a
    capped exponential (uniform between half the step and the step, so retries never bunch
    up near zero), never less than a server's ``Retry-After`` (itself capped at 1 h)."""
    ceiling = min(cap, base * 2 ** min(failures, 30))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, min(retry_after, 3600.0)) if retry_after is not None else delay


def milestone(count: int) -> bool:
    """1, 10, 100, 1000, ..."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


class Throttle:
    """Decides which occurrences of a repeating problem get a log line.

    ``hit()`` counts one occurrence and says whether to log it: the 1st, 10th, 100th, ...,
    and any other once ``interval`` seconds (monotonic) have passed since the last line.
    ``clear()`` ends the run of occurrences and returns how many there were.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.count = 0
        self._last = -float("inf")

    def hit(self) -> bool:
        self.count += 1
        now = self.clock()
        if milestone(self.count) or now - self._last >= self.interval:
            self._last = now
            return True
        return False

    def clear(self) -> int:
        count, self.count = self.count, 0
        self._last = -float("inf")
        return count
