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
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from agent.config import Alarm, Config, Threshold, Variable, short_id
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


@dataclass
class AlarmEngine:
    """All alarms of an agent; ``evaluate`` takes a cycle's fresh values and returns transitions.

    A variable missing from ``values`` (its source could not be read) leaves its alarms as
    they are: no start and no end on stale data.
    """

    states: list[AlarmState]
    by_variable: dict[str, list[AlarmState]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_variable = {}
        for state in self.states:
            self.by_variable.setdefault(state.rule.variable, []).append(state)

    @classmethod
    def from_config(cls, config: Config) -> AlarmEngine:
        agent_id = config.agent.agent_id
        rules = [
            AlarmRule.compile(alarm, config.variable(alarm.variable)[1], agent_id)
            for alarm in config.alarms
        ]
        return cls([AlarmState(rule) for rule in rules])

    def evaluate(self, values: Mapping[str, Value], now: float, wall: datetime) -> list[Transition]:
        transitions = []
        for key, value in values.items():
            for state in self.by_variable.get(key, ()):
                transition = state.step(value, now, wall)
                if transition is not None:
                    transitions.append(transition)
        return transitions

    def active(self) -> Iterable[AlarmState]:
        return (state for state in self.states if state.active)
