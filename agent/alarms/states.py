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
- Shelved (ISA-18.2; ``ixon-agent shelve``): evaluated as usual, but no start is notified
  until the shelf time ends; an alarm still active then is notified at that moment. The end
  of an occurrence notified before it was shelved still goes out, so no alert stays open.
- Flapping: at most ``max_notifications`` starts are notified per ``flap_window``; the rest are
  suppressed and counted. The end of a notified start always goes out, and a suppressed
  occurrence still active when the window reopens is notified then, so the receiver always
  ends up knowing the alarm's real state.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from agent.alarms.rules import AlarmRule, in_hex
from agent.common.ids import new_id
from agent.common.values import Value, show

log = logging.getLogger("agent.alarms")


class State(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"
    ACTIVE = "active"
    CLEARING = "clearing"


@dataclass(frozen=True, slots=True)
class Shelf:
    """An alarm put aside by a person for a while (``ixon-agent shelve``)."""

    until: float  # monotonic, the engine's clock (when it ends on the wall clock is
    # worked out when shown, so a wall-clock jump does not leave it wrong)
    reason: str = ""
    by: str = ""  # who shelved it


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
    #: notified starts in the flapping window; made at the first start (an empty deque is
    #: 760 bytes, and most of 10k alarms never start)
    starts: deque[float] | None = None
    suppressed: int = 0
    shelf: Shelf | None = None
    #: rate of change: the samples (monotonic time, value) of the window, oldest first
    samples: deque[tuple[float, float]] | None = None

    def shelved(self, now: float) -> bool:
        return self.shelf is not None and now < self.shelf.until

    def step(
        self, value: Any, now: float, wall: datetime, triggered: bool | None = None
    ) -> Transition | None:
        """Advance with a fresh value; returns the start or end it causes, if any.
        ``triggered``: what ``rule.triggers(value)`` gave, if the caller asked already."""
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
            if held:
                cond = bool(rule.holds(value))
            else:
                cond = triggered if triggered is not None else bool(rule.triggers(value))
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
        starts = self.starts
        if not starts:
            return True
        while starts and now - starts[0] >= self.rule.flap_window:
            starts.popleft()
        return len(starts) < self.rule.max_notifications

    def notified_start(self, now: float) -> None:
        """Count a notified start in the flapping window."""
        if self.starts is None:
            self.starts = deque()
        self.starts.append(now)

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


def describe_values(t: Transition) -> str:
    """``Oil temperature = 84.2 degC, Pump running = true``."""
    return _describe(t.rule, t.values)


def describe_reading(rule: AlarmRule, value: Any) -> str:
    """What an alarm's inputs read now (``AlarmState.last_value``); empty before any."""
    if value is None:
        return ""
    return _describe(rule, value if rule.kind == "formula" else (value,))


def _describe(rule: AlarmRule, values: tuple[Value, ...]) -> str:
    pairs = zip(rule.inputs, values, strict=False)
    return ", ".join(f"{i.label} = {in_hex(v, rule.digits) or show(v, i.unit)}" for i, v in pairs)
