"""Alarm evaluation: pure state machines, one per configured alarm, driven by an injected clock.

    normal -condition-> pending -on_delay-> ACTIVE -condition gone-> clearing -off_delay-> normal
             ^            | lapse              ^                        | returns
             +------------+                    +------------------------+

A pending condition that lapses resets its on-delay, as Prometheus' ``for`` does. With a
``deadband`` the condition is "gone" only once the value is past the threshold by that margin.
A start and its end share one occurrence id; the alarm's public id is stable across restarts.
"""

from __future__ import annotations

import math
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from agent.config import Alarm, Config, Source, Threshold, Variable, short_id
from agent.decode import Value

_ID_ALPHABET = string.ascii_letters + string.digits

Predicate = Callable[[Value], bool]


def new_id(length: int = 12) -> str:
    """A random IXON-style public id."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class State(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"
    ACTIVE = "active"
    CLEARING = "clearing"


def _compare(condition: str, threshold: Threshold, margin: float = 0.0) -> Predicate:
    """The trigger predicate; with ``margin`` > 0, the predicate that keeps an alarm active."""
    if condition in ("between", "outside"):
        low, high = threshold  # type: ignore[misc]
        if condition == "between":  # active inside the band; ends once outside it by margin
            return lambda v: low - margin <= v <= high + margin  # type: ignore[operator]
        return lambda v: v < low + margin or v > high - margin  # type: ignore[operator]
    t = threshold
    match condition:
        case "==":
            return lambda v: v == t
        case "!=":
            return lambda v: v != t
        case ">" if not margin:
            return lambda v: v > t  # type: ignore[operator]
        case "<" if not margin:
            return lambda v: v < t  # type: ignore[operator]
        case ">" | ">=":  # with a deadband: active until the value is below t - margin
            return lambda v: v >= t - margin  # type: ignore[operator]
        case "<" | "<=":  # with a deadband: active until the value is above t + margin
            return lambda v: v <= t + margin  # type: ignore[operator]
    raise ValueError(f"unknown condition {condition!r}")


def describe_condition(condition: str, threshold: Threshold) -> str:
    """``> 80.0`` or ``between [10.0, 20.0]``, as shown to the person paged."""
    if isinstance(threshold, tuple):
        return f"{condition} [{threshold[0]}, {threshold[1]}]"
    if isinstance(threshold, bool):
        return f"{condition} {str(threshold).lower()}"
    return f"{condition} {threshold}"


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """A configured alarm, compiled for evaluation."""

    name: str
    public_id: str
    variable: str  # "<source>.<variable>"
    source: str
    severity: Literal["low", "medium", "high"]
    on_delay: float
    off_delay: float
    instructions: str
    condition_text: str
    label: str
    unit: str | None
    triggers: Predicate
    holds: Predicate  # while active: true until the condition is gone (past the deadband)
    kind: Literal["variable", "offline"] = "variable"

    @classmethod
    def compile(cls, alarm: Alarm, variable: Variable, agent_id: str) -> AlarmRule:
        triggers = _compare(alarm.condition, alarm.threshold)
        holds = (
            _compare(alarm.condition, alarm.threshold, alarm.deadband)
            if alarm.deadband
            else triggers
        )
        return cls(
            name=alarm.name,
            public_id=short_id(agent_id, "alarm", alarm.name),
            variable=alarm.variable,
            source=alarm.variable.partition(".")[0],
            severity=alarm.severity,
            on_delay=alarm.on_delay,
            off_delay=alarm.off_delay,
            instructions=alarm.instructions,
            condition_text=describe_condition(alarm.condition, alarm.threshold),
            label=variable.display_name,
            unit=variable.unit,
            triggers=triggers,
            holds=holds,
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """An alarm started or ended: what becomes a message."""

    rule: AlarmRule
    kind: Literal["start", "end"]
    occurrence_id: str
    value: Value
    occurred_on: datetime  # when the occurrence started
    at: datetime  # when this transition happened (== occurred_on for a start)


@dataclass(slots=True)
class AlarmState:
    rule: AlarmRule
    state: State = State.NORMAL
    since: float = 0.0  # monotonic time the current pending/clearing phase began
    occurrence_id: str | None = None
    occurred_on: datetime | None = None
    last_value: Value | None = None

    def step(self, value: Value, now: float, wall: datetime) -> Transition | None:
        """Advance with a fresh value; returns the start or end it causes, if any."""
        self.last_value = value
        rule = self.rule
        try:
            if self.state in (State.NORMAL, State.PENDING):
                cond = rule.triggers(value)
            else:
                cond = rule.holds(value)
        except TypeError:
            cond = False  # a value of the wrong type never satisfies a condition
        if isinstance(value, float) and math.isnan(value):
            cond = self.state in (State.ACTIVE, State.CLEARING)  # NaN changes nothing
        match self.state:
            case State.NORMAL if cond:
                if rule.on_delay <= 0:
                    return self._start(value, wall)
                self.state, self.since = State.PENDING, now
            case State.PENDING:
                if not cond:
                    self.state = State.NORMAL
                elif now - self.since >= rule.on_delay:
                    return self._start(value, wall)
            case State.ACTIVE if not cond:
                if rule.off_delay <= 0:
                    return self._end(value, wall)
                self.state, self.since = State.CLEARING, now
            case State.CLEARING:
                if cond:
                    self.state = State.ACTIVE
                elif now - self.since >= rule.off_delay:
                    return self._end(value, wall)
        return None

    def _start(self, value: Value, wall: datetime) -> Transition:
        self.state = State.ACTIVE
        self.occurrence_id = new_id()
        self.occurred_on = wall
        return Transition(self.rule, "start", self.occurrence_id, value, wall, wall)

    def _end(self, value: Value, wall: datetime) -> Transition:
        assert self.occurrence_id is not None and self.occurred_on is not None
        transition = Transition(self.rule, "end", self.occurrence_id, value, self.occurred_on, wall)
        self.state, self.occurrence_id, self.occurred_on = State.NORMAL, None, None
        return transition

    @property
    def active(self) -> bool:
        return self.state in (State.ACTIVE, State.CLEARING)


_MISSING = object()
_STABLE = (State.NORMAL, State.ACTIVE)


def offline_rule(source: Source, agent_id: str) -> AlarmRule:
    """IXON's connection monitoring: an alarm when a source has not answered for a while."""
    after = f"{source.offline_after:g} s"
    return AlarmRule(
        name=f"Source {source.name} offline",
        public_id=short_id(agent_id, "offline", source.name),
        variable=source.name,
        source=source.name,
        severity=source.offline_severity,
        on_delay=source.offline_after,
        off_delay=0.0,
        instructions=(
            f"No answer from {source.address} (unit {source.unit_id}) for {after}: check the"
            " device's power and its network or serial connection. Its alarms are on hold"
            " until it answers again."
        ),
        condition_text=f"no answer for {after}",
        label="Connection",
        unit=None,
        triggers=lambda v: v == "offline",
        holds=lambda v: v == "offline",
        kind="offline",
    )


class AlarmEngine:
    """All alarms of an agent, evaluated per source after each of its poll cycles.

    A variable missing from a cycle's values (its source or block could not be read) leaves
    its alarms as they are: no start and no end on stale data. A value that did not change
    is not evaluated again unless its alarm has a delay running.
    """

    def __init__(self, states: list[AlarmState], offline: Iterable[AlarmState] = ()) -> None:
        self.states = states
        self.offline = {state.rule.source: state for state in offline}
        self._watch: dict[str, dict[str, list[AlarmState]]] = {}
        for state in states:
            by_key = self._watch.setdefault(state.rule.source, {})
            by_key.setdefault(state.rule.variable, []).append(state)

    @classmethod
    def from_config(cls, config: Config) -> AlarmEngine:
        agent_id = config.agent.agent_id
        rules = [
            AlarmRule.compile(alarm, config.variable(alarm.variable)[1], agent_id)
            for alarm in config.alarms
        ]
        offline = [AlarmState(offline_rule(s, agent_id)) for s in config.sources if s.offline_after]
        return cls([AlarmState(rule) for rule in rules], offline)

    def evaluate(
        self, source: str, values: Mapping[str, Value], now: float, wall: datetime
    ) -> list[Transition]:
        """Step the alarms of ``source`` whose variables were read this cycle."""
        transitions = []
        for key, states in self._watch.get(source, {}).items():
            value = values.get(key, _MISSING)
            if value is _MISSING:
                continue
            for state in states:
                if state.state in _STABLE and value == state.last_value:
                    continue  # same input, same stable state: nothing can happen
                transition = state.step(value, now, wall)  # type: ignore[arg-type]
                if transition is not None:
                    transitions.append(transition)
        return transitions

    def connection(
        self, source: str, answered: bool, last_answer: float | None, now: float, wall: datetime
    ) -> Transition | None:
        """Step the source's offline alarm; its delay runs from the last answer."""
        state = self.offline.get(source)
        if state is None:
            return None
        transition = state.step("online" if answered else "offline", now, wall)
        if state.state is State.PENDING and last_answer is not None:
            state.since = min(state.since, last_answer)
        return transition

    def active(self) -> Iterable[AlarmState]:
        return (s for s in [*self.states, *self.offline.values()] if s.active)
