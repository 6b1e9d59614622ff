"""Alarm evaluation: pure state machines, one per configured alarm, driven by an injected clock.

    normal -condition-> pending -on_delay-> ACTIVE -condition gone-> clearing -off_delay-> normal
             ^            | lapse              ^                        | returns
             +------------+                    +------------------------+

- A pending condition that lapses resets its on-delay, as Prometheus' ``for`` does.
- With a ``deadband`` the condition is "gone" only once the value is past the threshold by
  that margin.
- Stale input (its source unread this cycle) changes nothing: no start, no end, and running
  delays are frozen until fresh values arrive.
- A start and its end share one occurrence id; the alarm's public id is stable across
  restarts.
- Flapping: at most ``max_notifications`` starts are notified per ``flap_window``; the rest are
  suppressed and counted. The end of a notified start always goes out, and a suppressed
  occurrence still active when the window reopens is notified then, so the receiver always
  ends up knowing the alarm's real state.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from agent.alarms.formula import compile_formula
from agent.common.ids import new_id, short_id
from agent.common.retry import milestone
from agent.common.values import Value, show
from agent.config import Alarm, Config, Source, Threshold

log = logging.getLogger("agent.alarms")

Predicate = Callable[[Any], bool]


class State(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"
    ACTIVE = "active"
    CLEARING = "clearing"


def _compare(condition: str, threshold: Threshold, margin: float = 0.0) -> Predicate:
    """The trigger predicate; with ``margin`` > 0, the predicate that keeps an alarm active."""
    if condition in ("between", "outside"):
        assert isinstance(threshold, tuple)
        low, high = threshold
        if condition == "between":  # active inside the band; ends once outside it by margin
            return lambda v: low - margin <= v <= high + margin
        return lambda v: v < low + margin or v > high - margin
    t: Any = threshold
    match condition:
        case "==":
            return lambda v: v == t
        case "!=":
            return lambda v: v != t
        case ">" if not margin:
            return lambda v: v > t
        case "<" if not margin:
            return lambda v: v < t
        case ">" | ">=":  # with a deadband: active until the value is below t - margin
            return lambda v: v >= t - margin
        case "<" | "<=":  # with a deadband: active until the value is above t + margin
            return lambda v: v <= t + margin
    raise ValueError(f"unknown condition {condition!r}")


def describe_condition(condition: str, threshold: Threshold) -> str:
    """``> 80.0`` or ``between [10.0, 20.0]``, as shown to the person paged."""
    if isinstance(threshold, tuple):
        return f"{condition} [{threshold[0]}, {threshold[1]}]"
    if isinstance(threshold, bool):
        return f"{condition} {str(threshold).lower()}"
    return f"{condition} {threshold}"


@dataclass(frozen=True, slots=True)
class Input:
    """One value an alarm reads, with what a person needs to make sense of it."""

    key: str  # "<source>.<variable>"
    label: str
    unit: str | None = None

    @property
    def source(self) -> str:
        return self.key.partition(".")[0]


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """A configured alarm, compiled for evaluation.

    A ``variable`` alarm's predicates take the variable's value; a ``formula`` alarm's take
    the tuple of its inputs' values; an ``offline`` alarm's take "online"/"offline".
    """

    name: str
    public_id: str
    inputs: tuple[Input, ...]
    severity: Literal["low", "medium", "high"]
    on_delay: float
    off_delay: float
    instructions: str
    condition_text: str
    triggers: Predicate
    holds: Predicate  # while active: true until the condition is gone (past the deadband)
    kind: Literal["variable", "formula", "offline"] = "variable"
    max_notifications: int = 0  # 0: no flapping control
    flap_window: float = 3600.0

    @property
    def source(self) -> str:
        return self.inputs[0].source if self.inputs else ""

    @property
    def variable(self) -> str:
        return self.inputs[0].key if self.inputs else ""

    @property
    def label(self) -> str:
        return self.inputs[0].label if self.inputs else self.name

    @property
    def unit(self) -> str | None:
        return self.inputs[0].unit if self.inputs else None

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(i.source for i in self.inputs)

    @classmethod
    def synthetic(
        cls, name: str, public_id: str, severity: Literal["low", "medium", "high"],
        instructions: str, condition_text: str, inputs: tuple[Input, ...] = (),
    ) -> AlarmRule:  # fmt: skip
        """A rule that no condition drives: a test message, a removed alarm's end."""
        return cls(
            name=name, public_id=public_id, inputs=inputs, severity=severity, on_delay=0.0,
            off_delay=0.0, instructions=instructions, condition_text=condition_text,
            triggers=bool, holds=bool,
        )  # fmt: skip

    @classmethod
    def compile(cls, alarm: Alarm, config: Config) -> AlarmRule:
        agent_id = config.agent.agent_id
        common: dict[str, Any] = {
            "name": alarm.name,
            "public_id": short_id(agent_id, "alarm", alarm.name),
            "severity": alarm.severity,
            "on_delay": alarm.on_delay,
            "off_delay": alarm.off_delay,
            "instructions": alarm.instructions,
            "max_notifications": alarm.max_notifications,
            "flap_window": alarm.flap_window,
        }
        if alarm.formula is not None:
            types = {key: v.type for key, _, v in config.variables()}
            formula = compile_formula(alarm.formula, types)
            inputs = []
            for key in formula.inputs:
                variable = config.variable(key)[1]
                inputs.append(Input(key, variable.display_name, variable.unit))
            predicate = formula.evaluate
            return cls(
                inputs=tuple(inputs), condition_text=f"formula {alarm.formula}",
                triggers=predicate, holds=predicate, kind="formula", **common,
            )  # fmt: skip
        assert alarm.variable and alarm.condition and alarm.threshold is not None
        variable = config.variable(alarm.variable)[1]
        triggers = _compare(alarm.condition, alarm.threshold)
        holds = (
            _compare(alarm.condition, alarm.threshold, alarm.deadband)
            if alarm.deadband
            else triggers
        )
        return cls(
            inputs=(Input(alarm.variable, variable.display_name, variable.unit),),
            condition_text=describe_condition(alarm.condition, alarm.threshold),
            triggers=triggers, holds=holds, **common,
        )  # fmt: skip


def offline_rule(source: Source, agent_id: str) -> AlarmRule:
    """IXON's connection monitoring: an alarm when a source has not answered for a while."""
    after = f"{source.offline_after:g} s"
    return AlarmRule(
        name=f"Source {source.name} offline",
        public_id=short_id(agent_id, "offline", source.name),
        inputs=(Input(source.name, "Connection"),),
        severity=source.offline_severity,
        on_delay=source.offline_after,
        off_delay=0.0,
        instructions=(
            f"No answer from {source.address} (unit {source.unit_id}) for {after}: check the"
            " device's power and its network or serial connection. Its alarms are on hold"
            " until it answers again."
        ),
        condition_text=f"no answer for {after}",
        triggers=lambda v: v == "offline",
        holds=lambda v: v == "offline",
        kind="offline",
    )


@dataclass(frozen=True, slots=True)
class Transition:
    """An alarm started or ended: what becomes a message."""

    rule: AlarmRule
    kind: Literal["start", "end"]
    occurrence_id: str
    values: tuple[Value, ...]  # aligned with rule.inputs
    occurred_on: datetime  # when the occurrence started
    at: datetime  # when this transition happened (== occurred_on for a start)

    @property
    def value(self) -> Value | None:
        return self.values[0] if self.values else None


def _is_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, tuple):
        return any(isinstance(v, float) and math.isnan(v) for v in value)
    return False


@dataclass(eq=False, slots=True)
class AlarmState:
    rule: AlarmRule
    state: State = State.NORMAL
    since: float = 0.0  # monotonic time the current pending/clearing phase began
    occurrence_id: str | None = None
    occurred_on: datetime | None = None
    last_value: Any = None
    last_seen: float = 0.0  # monotonic time of the last fresh evaluation
    stale: bool = False  # input went stale since last_seen: delays must not count that gap
    notified: bool = False  # the current occurrence's start was sent
    start: Transition | None = None  # the current occurrence's start, to send when owed
    starts: deque[float] = field(default_factory=deque)  # notified starts in the window
    suppressed: int = 0

    def step(self, value: Any, now: float, wall: datetime) -> Transition | None:
        """Advance with a fresh value; returns the start or end it causes, if any."""
        if self.stale:
            if self.state in (State.PENDING, State.CLEARING):
                self.since += now - self.last_seen  # the stale gap does not count
            self.stale = False
        self.last_seen = now
        self.last_value = value
        rule = self.rule
        if _is_nan(value):
            return None  # no decision on a NaN
        try:
            held = self.state in (State.ACTIVE, State.CLEARING)
            cond = bool(rule.holds(value) if held else rule.triggers(value))
        except (TypeError, ArithmeticError):
            return None  # a value of the wrong type, a division by zero: no decision
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

    def _values(self, value: Any) -> tuple[Value, ...]:
        return value if self.rule.kind == "formula" else (value,)

    def _start(self, value: Any, wall: datetime) -> Transition:
        self.state = State.ACTIVE
        self.occurrence_id = new_id()
        self.occurred_on = wall
        self.start = Transition(
            self.rule, "start", self.occurrence_id, self._values(value), wall, wall
        )
        return self.start

    def _end(self, value: Any, wall: datetime) -> Transition:
        assert self.occurrence_id is not None and self.occurred_on is not None
        values = self._values(value)
        transition = Transition(
            self.rule, "end", self.occurrence_id, values, self.occurred_on, wall
        )
        self.state, self.occurrence_id, self.occurred_on, self.start = (
            State.NORMAL,
            None,
            None,
            None,
        )
        return transition

    def may_notify_start(self, now: float) -> bool:
        """Flapping control: room in the window for one more start?"""
        if not self.rule.max_notifications:
            return True
        while self.starts and now - self.starts[0] >= self.rule.flap_window:
            self.starts.popleft()
        return len(self.starts) < self.rule.max_notifications

    @property
    def active(self) -> bool:
        return self.state in (State.ACTIVE, State.CLEARING)

    @property
    def owed(self) -> bool:
        """Active, but the receiver was never told (its start was suppressed)."""
        return self.active and not self.notified

    def snapshot(self) -> dict[str, Any]:
        """What survives a restart: whether it is active, and whether that was notified."""
        return {
            "alarm_id": self.rule.public_id,
            "name": self.rule.name,
            "severity": self.rule.severity,
            "active": self.active,
            "occurrence_id": self.occurrence_id,
            "occurred_on": self.occurred_on.isoformat() if self.occurred_on else None,
            "notified": self.notified,
            "suppressed": self.suppressed,
            "values": list(self.start.values) if self.start else None,
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Resume from a snapshot: an active alarm comes back active, awaiting fresh values."""
        self.suppressed = int(saved.get("suppressed") or 0)
        if not saved.get("active") or not saved.get("occurrence_id"):
            return
        self.state = State.ACTIVE
        self.occurrence_id = saved["occurrence_id"]
        occurred = saved.get("occurred_on")
        self.occurred_on = datetime.fromisoformat(occurred) if occurred else None
        self.notified = bool(saved.get("notified"))
        if self.occurred_on is not None:
            values = tuple(saved.get("values") or ())
            when = self.occurred_on
            self.start = Transition(self.rule, "start", saved["occurrence_id"], values, when, when)


_MISSING = object()
_STABLE = (State.NORMAL, State.ACTIVE)


class AlarmEngine:
    """All alarms of an agent, evaluated per source after each of its poll cycles.

    ``evaluate`` returns the transitions to notify. Every state whose persistent part changed
    (see ``AlarmState.snapshot``) is collected in ``dirty`` for the caller to save in the
    same transaction as the messages.
    """

    def __init__(self, states: list[AlarmState], offline: Iterable[AlarmState] = ()) -> None:
        self.states = states
        self.offline = {state.rule.source: state for state in offline}
        self.dirty: set[AlarmState] = set()
        self.last_cycle: dict[str, Mapping[str, Value]] = {}  # per source: its last values
        # per source: each alarm reading it, with how to get its input from a cycle's values
        self._watch: dict[str, list[tuple[AlarmState, Callable[[Mapping[str, Any]], Any]]]] = {}
        for state in states:
            rule = state.rule
            if rule.kind == "formula":
                for source in rule.sources:
                    read = lambda _values, rule=rule: self._inputs(rule)  # noqa: E731
                    self._watch.setdefault(source, []).append((state, read))
            else:
                read = lambda values, key=rule.variable: values.get(key, _MISSING)  # noqa: E731
                self._watch.setdefault(rule.source, []).append((state, read))

    @classmethod
    def from_config(cls, config: Config) -> AlarmEngine:
        agent_id = config.agent.agent_id
        rules = [AlarmRule.compile(alarm, config) for alarm in config.alarms]
        offline = [AlarmState(offline_rule(s, agent_id)) for s in config.sources if s.offline_after]
        return cls([AlarmState(rule) for rule in rules], offline)

    def all_states(self) -> list[AlarmState]:
        return [*self.states, *self.offline.values()]

    def evaluate(
        self, source: str, values: Mapping[str, Value], now: float, wall: datetime
    ) -> list[Transition]:
        """Step the alarms of ``source`` with a cycle's values; returns what to notify."""
        self.last_cycle[source] = values
        out: list[Transition] = []
        for state, read in self._watch.get(source, ()):
            value = read(values)
            if value is _MISSING:
                state.stale = True
            elif not (state.state in _STABLE and value == state.last_value):
                self._advance(state, value, now, wall, out)
            elif state.owed:
                self._owed(state, now, out)
        return out

    def connection(
        self, source: str, answered: bool, last_answer: float | None, now: float, wall: datetime
    ) -> list[Transition]:
        """Step the source's offline alarm; its delay runs from the last answer."""
        state = self.offline.get(source)
        if state is None:
            return []
        out: list[Transition] = []
        self._advance(state, "online" if answered else "offline", now, wall, out)
        if state.state is State.PENDING and last_answer is not None:
            state.since = min(state.since, last_answer)
        return out

    def _inputs(self, rule: AlarmRule) -> Any:
        """A formula's input values, if all were read in their source's last cycle."""
        values = []
        for item in rule.inputs:
            value = self.last_cycle.get(item.source, {}).get(item.key, _MISSING)
            if value is _MISSING:
                return _MISSING
            values.append(value)
        return tuple(values)

    def _advance(
        self, state: AlarmState, value: Any, now: float, wall: datetime, out: list[Transition]
    ) -> None:
        transition = state.step(value, now, wall)
        if transition is None:
            if state.owed:
                self._owed(state, now, out)
            return
        self.dirty.add(state)
        if transition.kind == "start":
            if state.may_notify_start(now):
                state.starts.append(now)
                state.notified = True
                out.append(transition)
            else:
                state.notified = False
                self._suppressed(state, transition)
        elif state.notified:
            state.notified = False
            out.append(transition)
        else:
            self._suppressed(state, transition)  # the end of a start nobody was told about

    @staticmethod
    def _suppressed(state: AlarmState, transition: Transition) -> None:
        state.suppressed += 1
        if milestone(state.suppressed):
            log.warning(
                "alarm %r is flapping: %s not notified (%d suppressed so far; at most %d starts"
                " per %g s)", state.rule.name, transition.kind, state.suppressed,
                state.rule.max_notifications, state.rule.flap_window,
                extra={"alarm": state.rule.name},
            )  # fmt: skip

    def _owed(self, state: AlarmState, now: float, out: list[Transition]) -> None:
        if state.start is not None and state.may_notify_start(now):
            state.starts.append(now)
            state.notified = True
            self.dirty.add(state)
            out.append(state.start)

    def take_dirty(self) -> list[AlarmState]:
        if not self.dirty:  # the usual cycle: nothing changed, nothing to allocate
            return []
        dirty, self.dirty = list(self.dirty), set()
        return dirty

    def restore(self, saved: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Resume states saved by id; returns the saved ids no configured alarm has."""
        known = {state.rule.public_id: state for state in self.all_states()}
        for alarm_id, row in saved.items():
            if alarm_id in known:
                known[alarm_id].restore(row)
        return [alarm_id for alarm_id in saved if alarm_id not in known]

    def active(self) -> Iterable[AlarmState]:
        return (s for s in self.all_states() if s.active)

    def adopt(self, previous: AlarmEngine, ids: set[str]) -> AlarmEngine:
        """A new engine where the alarms in ``ids`` are ``previous``'s own state objects."""
        old = {s.rule.public_id: s for s in previous.all_states() if s.rule.public_id in ids}
        states = [old.get(s.rule.public_id, s) for s in self.states]
        offline = [old.get(s.rule.public_id, s) for s in self.offline.values()]
        engine = AlarmEngine(states, offline)
        engine.last_cycle = dict(previous.last_cycle)
        return engine


def describe_values(t: Transition) -> str:
    """``Oil temperature = 84.2 degC, Pump running = true``."""
    pairs = zip(t.rule.inputs, t.values, strict=False)
    return ", ".join(f"{i.label} = {show(v, i.unit)}" for i, v in pairs)
