"""An alarm test in simulated time, through the core step that ``ixon-agent run`` calls.

Each source is polled at its own interval from t = 0 with the test's series; a source in an
offline window does not answer. A poll whose outcome cannot change anything (its values are
the last poll's, it answers, and ``AlarmEngine.settled``: no delay running, nothing owed) is
skipped up to the next change of a series or window; ``dense=True`` polls every interval and
gives the same notifications (a test holds the two to that).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agent.alarms.engine import AlarmEngine
from agent.common.values import Value
from agent.config import Config, Source
from agent.core import step
from agent.sources.base import PollResult
from agent.tools.alarmtest.spec import AlarmTest

#: the wall-clock time a simulated test starts at (messages carry timestamps)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Sent:
    """One message that was sent to a webhook, at a simulated time."""

    at: float
    webhook: str
    kind: str  # start | end
    alarm: str
    occurrence: str
    value: Value | None


def _offline(windows: tuple[tuple[float, float], ...], t: float) -> bool:
    return any(start <= t < end for start, end in windows)


class _Source:
    """One source's polls: its series, its offline windows, and when it must poll next."""

    def __init__(self, source: Source, test: AlarmTest) -> None:
        self.source = source
        self.period = source.poll_interval
        prefix = f"{source.name}."
        self.series = {k: s for k, s in test.series.items() if k.startswith(prefix)}
        self.windows = test.offline.get(source.name, ())
        self.last: dict[str, Value] | None = None
        # the values now, and when each next changes (linear series: every poll)
        self.now: dict[str, Value] = {k: s.at(0.0) for k, s in self.series.items()}
        self.linear = [k for k, s in self.series.items() if s.linear]
        self.changes = [
            (c, k) for k, s in self.series.items() if (c := s.changes_after(0.0)) is not None
        ]
        heapq.heapify(self.changes)
        self.last_answer: float | None = None
        self.skipped = False  # polls were skipped (all answering) before the next one

    def tick(self, t: float) -> float:
        """The first poll at or after ``t`` (polls are at 0, period, 2 period, ...)."""
        n = math.ceil(t / self.period - 1e-9)
        return n * self.period

    def poll(self, t: float) -> PollResult:
        if _offline(self.windows, t):
            if self.skipped and self.last_answer is not None:
                # the polls skipped before this one all answered: the last at t - period
                self.last_answer = max(self.last_answer, t - self.period)
            self.skipped = False
            return PollResult(self.source.name, errors=["offline (test window)"])
        self.skipped = False
        values = self._values(t)
        self.last_answer = t
        return PollResult(self.source.name, values, requests=1, answered=True)

    def _values(self, t: float) -> dict[str, Value]:
        """The series' values at ``t``, recomputing only those that changed since."""
        changes, series, now = self.changes, self.series, self.now
        while changes and changes[0][0] <= t:
            _, key = heapq.heappop(changes)
            now[key] = series[key].at(t)
            following = series[key].changes_after(t)
            if following is not None and not series[key].linear:
                heapq.heappush(changes, (following, key))
        for key in self.linear:
            now[key] = series[key].at(t)
        return dict(now)

    def next_poll(self, t: float, settled: bool, dense: bool) -> float:
        following = t + self.period
        if dense or not settled or _offline(self.windows, t):
            return following
        changes = [c for c, _ in self.changes[:1]]  # the heap's first is the soonest
        changes += [c for k in self.linear if (c := self.series[k].changes_after(t)) is not None]
        changes += [edge for window in self.windows for edge in window if edge > t]
        after = max(following, self.tick(min(changes))) if changes else math.inf
        self.skipped = after > following
        return after


def simulate(config: Config, test: AlarmTest, dense: bool = False) -> tuple[list[Sent], int]:
    """What the config sends during ``test``, and how many polls that took."""
    engine = AlarmEngine.from_config(config)
    sources = [_Source(s, test) for s in config.sources]
    queue = [(0.0, i) for i in range(len(sources))]  # (next poll, source index)
    sent: list[Sent] = []
    polls = 0
    while queue:
        t, index = heapq.heappop(queue)
        if t > test.duration:
            break
        src = sources[index]
        result = src.poll(t)
        polls += 1
        done = step(engine, config, result, src.last_answer, t, EPOCH + timedelta(seconds=t))
        for message in done.messages:
            transition = next(
                x for x in done.transitions if x.occurrence_id == message.occurrence_id
            )
            sent.append(
                Sent(
                    t,
                    message.webhook,
                    message.kind,
                    transition.rule.name,
                    message.occurrence_id,
                    transition.rule.shown(transition.value),  # as the message gives it
                )
            )
        unchanged = result.values == src.last
        src.last = result.values if result.answered else src.last
        settled = result.answered and unchanged and engine.settled(src.source.name)
        if not result.answered or not unchanged:
            settled = False
        following = src.next_poll(t, settled, dense)
        if following <= test.duration:
            heapq.heappush(queue, (following, index))
    return sent, polls
