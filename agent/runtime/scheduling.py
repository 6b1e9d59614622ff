"""Time for the runtime: the injected clock, an interval trigger that survives wall-clock
jumps, and the watch that notices them.

APScheduler 3 times jobs by the wall clock. A Raspberry Pi without a battery clock, or NTP,
may move it by days; durations and due times here go by the monotonic clock instead.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

#: seconds the wall clock may move against the monotonic clock before it counts as a jump
JUMP = 2.0


class Clock:
    """Monotonic time for delays, wall time for timestamps; tests inject their own."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class SteadyInterval(IntervalTrigger):  # type: ignore[misc]
    """An interval trigger that does not replay what a forward jump of the wall clock
    skipped. APScheduler 3 lists every missed run before it coalesces them: after a 25 h jump
    at a 100 ms interval that is 900,000 datetimes, seconds of CPU and tens of MB on a Pi.
    Far behind, the next run is the first one from now on."""

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        following: datetime | None = super().get_next_fire_time(previous, now)
        if previous is not None and following is not None and following < now - self.interval:
            following = super().get_next_fire_time(None, now)
        return following


class JitteredInterval(SteadyInterval):
    """Each run ``interval`` after the last, ± ``spread`` of it, drawn anew every time: a
    fleet of agents started together (a plant's power back) spreads out instead of pinging
    in lockstep. (APScheduler's own ``jitter`` only ever adds.)"""

    def __init__(self, *, spread: float = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        self.spread = spread

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        if previous is None:
            return super().get_next_fire_time(previous, now)
        step = self.interval_length * random.uniform(1 - self.spread, 1 + self.spread)
        following = previous + timedelta(seconds=step)
        return following if following >= now - self.interval else now  # far behind: now


class WallJumps:
    """Notices the wall clock moving against the monotonic clock between two looks."""

    def __init__(self) -> None:
        self.skew = time.time() - time.monotonic()

    def check(self) -> float:
        """Seconds the wall clock jumped since the last look (0.0 within ``JUMP``)."""
        skew = time.time() - time.monotonic()
        jump, self.skew = skew - self.skew, skew
        return jump if abs(jump) > JUMP else 0.0


def pull_in_far_jobs(scheduler: Any) -> None:
    """After the wall clock was set back, every job whose next run went far away is due now
    (a jump forward is ``SteadyInterval``'s)."""
    wall = datetime.now(UTC)
    for job in scheduler.get_jobs():
        if job.next_run_time and job.next_run_time > wall + job.trigger.interval:
            job.modify(next_run_time=wall)


def signed(seconds: float) -> str:
    sign = "forward" if seconds > 0 else "back"
    size = abs(seconds)
    if size >= 7200:
        return f"{sign} by {size / 3600:.1f} h"
    return f"{sign} by {size / 60:.1f} min" if size >= 120 else f"{sign} by {size:.0f} s"
