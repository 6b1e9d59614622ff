"""ilert's limits as ilert counts them: so many requests per key in each fixed window
(one minute by default, starting on the wall clock's whole minutes); past the limit, 429
with no ``Retry-After`` until the next window starts (docs.ilert.com, alert source
throttle). A refused request does not count."""

from __future__ import annotations

import time
from collections.abc import Callable


class FixedWindows:
    """At most ``limit`` requests per key in each window of ``seconds``."""

    def __init__(
        self, limit: int, seconds: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.limit, self.seconds, self.clock = limit, seconds, clock
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window, count in it)
        self.refused = 0

    def allow(self, key: str) -> bool:
        """Count a request for ``key``; False when its window is full (the 429)."""
        window = int(self.clock() // self.seconds)
        last, count = self._counts.get(key, (window, 0))
        if last != window:
            count = 0
            if len(self._counts) > 10_000:  # many client addresses: forget past windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        if count >= self.limit:
            self.refused += 1
            return False
        self._counts[key] = (window, count + 1)
        return True
