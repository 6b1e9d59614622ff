"""``ixon-agent replay``: recorded values through a config's alarms, counted per alarm.

Each row is a moment; a source with at least one cell in it is polled then, with its other
variables holding their last values. A source whose data stops for longer than its
``offline_after`` counts as not answering from its last sample: its offline alarm starts
``offline_after`` later (as the agent's would) and ends with its next sample.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.alarms.engine import AlarmEngine
from agent.common.values import Value
from agent.config import Config
from agent.core import Step, step
from agent.sources.base import PollResult
from agent.tools.alarmtest.spec import rules
from agent.tools.backtest.data import Row


@dataclass
class Figures:
    """One alarm over the replayed data."""

    name: str
    severity: str
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (webhook, kind)
    occurrences: int = 0
    notified: int = 0  # occurrences whose start was sent
    active: float = 0.0  # seconds, all occurrences
    longest: float = 0.0
    since: float | None = None  # the current occurrence's start
    occurrence: str | None = None
    told: str | None = None  # the last occurrence whose start was sent

    @property
    def held_back(self) -> int:
        """Starts flapping control did not send (an owed start sent later counts as sent)."""
        return self.occurrences - self.notified

    @property
    def pages(self) -> int:
        """Starts sent, to any webhook: how often someone would have been paged."""
        return sum(n for (_, kind), n in self.sent.items() if kind == "start")

    def as_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "pages": self.pages,
            "sent": {f"{w}:{k}": n for (w, k), n in sorted(self.sent.items())},
            "occurrences": self.occurrences,
            "held_back": self.held_back,
            "active_seconds": round(self.active, 3),
            "longest_seconds": round(self.longest, 3),
        }


@dataclass
class Replay:
    alarms: dict[str, Figures]
    first: float | None = None  # Unix seconds of the first and last row
    last: float | None = None


def replay(config: Config, data: Iterable[Row]) -> Replay:
    engine = AlarmEngine.from_config(config)
    found = Replay({name: Figures(name, rule.severity) for name, rule in rules(config).items()})
    sources = {s.name: s for s in config.sources}
    held: dict[str, dict[str, Value]] = {name: {} for name in sources}
    last_sample: dict[str, float] = {}
    source_of = {key: source.name for key, source, _ in config.variables()}
    single = config.sources[0].name if len(config.sources) == 1 else None
    origin: float | None = None
    t = 0.0
    for at, samples in data:
        if origin is None:
            origin = found.first = at
        found.last = at
        t = at - origin
        if single is not None:
            polled = {single: samples} if samples else {}
        else:
            polled = {}
            for key, value in samples.items():
                polled.setdefault(source_of[key], {})[key] = value
        for name, values in polled.items():
            source = sources[name]
            before = last_sample.get(name)
            if before is not None and source.offline_after and t - before > source.offline_after:
                gone = before + source.offline_after  # not answering since the last sample
                for _ in range(2):  # the first makes it pending since ``before``, the second
                    _count(found, _poll(engine, config, origin, PollResult(name), before, gone))
            held[name].update(values)  # (the engine keeps it as the source's last cycle: the
            result = PollResult(name, held[name], requests=1, answered=True)  # held values)
            _count(found, _poll(engine, config, origin, result, t, t))
            last_sample[name] = t
    for figures in found.alarms.values():  # still active at the end of the data
        if figures.since is not None:
            _ended(figures, t)
    return found


def _poll(
    engine: AlarmEngine,
    config: Config,
    origin: float,
    result: PollResult,
    last_answer: float | None,
    now: float,
) -> tuple[Step, float]:
    wall = datetime.fromtimestamp(origin + now, UTC)
    return step(engine, config, result, last_answer, now, wall), now


def _ended(figures: Figures, t: float) -> None:
    assert figures.since is not None
    length = t - figures.since
    figures.active += length
    figures.longest = max(figures.longest, length)
    figures.since = figures.occurrence = None


def _count(found: Replay, done_at: tuple[Step, float]) -> None:
    done, t = done_at
    if not (done.states or done.transitions):
        return  # the usual row: nothing happened
    for m in done.messages:
        found.alarms[_name(done, m.occurrence_id)].sent[(m.webhook, m.kind)] += 1
    for transition in done.transitions:
        figures = found.alarms[transition.rule.name]
        if transition.kind == "start" and transition.occurrence_id != figures.told:
            figures.notified += 1
            figures.told = transition.occurrence_id
    for state in done.states:
        figures = found.alarms[state["name"]]
        if state["active"] and state["occurrence_id"] != figures.occurrence:
            if figures.since is not None:
                _ended(figures, t)
            figures.occurrences += 1
            figures.since, figures.occurrence = t, state["occurrence_id"]
        elif not state["active"] and figures.since is not None:
            _ended(figures, t)


def _name(done: Step, occurrence: str) -> str:
    return next(t.rule.name for t in done.transitions if t.occurrence_id == occurrence)
