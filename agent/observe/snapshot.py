"""What observers see: a copy of the running agent's state, made when they ask.

The status page and the metrics read a ``Snapshot``, never the service's objects, so they
cannot change it by accident, and the runtime can change its insides without touching them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from agent.alarms.rules import AlarmRule, in_hex
from agent.alarms.states import AlarmState, Shelf, State, describe_reading
from agent.common.values import Value, show
from agent.outbox.journal import Occurrence
from agent.outbox.store import Entry
from agent.sources.base import SourceStats

#: seconds between two points of a status page sparkline (per source; a slower poll: each)
TREND_STEP = 5.0


@dataclass(frozen=True)
class SourceView:
    name: str
    address: str
    online: bool  # its last cycle got a valid answer
    stats: SourceStats  # a copy


@dataclass(frozen=True)
class AlarmView:
    name: str
    severity: str
    state: State
    active: bool
    notified: bool  # False while flapping control or a shelf holds it back
    suppressed: int
    occurred_on: datetime | None
    kind: str = "variable"
    condition: str = ""
    instructions: str = ""
    reading: str = ""  # its input values now: "Oil temperature = 84.2 degC"
    inputs: tuple[str, ...] = ()  # the keys of its variables
    due_in: float | None = None  # pending or clearing: seconds until it starts or ends
    shelf: Shelf | None = None  # shelved now: why, and by whom
    shelf_ends: datetime | None = None  # when the shelf ends, on the wall clock now
    in_service: bool = True  # false: ``enabled = false`` in the config
    bit: int | None = None  # a fault word's bit: its sparkline is that bit's
    alarm_id: str = ""
    occurrence_id: str | None = None  # the current occurrence, while active

    @classmethod
    def of(cls, alarm: AlarmState, now: float, wall: datetime) -> AlarmView:
        """``now``: the engine's monotonic clock; ``wall``: the time to show times in."""
        rule = alarm.rule
        shelf = alarm.shelf if alarm.shelved(now) else None
        due_in = None
        if alarm.state is State.PENDING:
            due_in = max(0.0, alarm.since + rule.on_delay - now)
        elif alarm.state is State.CLEARING:
            due_in = max(0.0, alarm.since + rule.off_delay - now)
        return cls(
            rule.name,
            rule.severity,
            alarm.state,
            alarm.active,
            alarm.notified,
            alarm.suppressed,
            alarm.occurred_on,
            rule.kind,
            rule.condition_text,
            rule.instructions,
            describe_reading(rule, alarm.last_value),
            tuple(i.key for i in rule.inputs if rule.kind != "offline"),
            due_in,
            shelf,
            wall + timedelta(seconds=shelf.until - now) if shelf else None,
            bit=rule.bit,
            alarm_id=rule.public_id,
            occurrence_id=alarm.occurrence_id if alarm.active else None,
        )

    @classmethod
    def out_of_service(cls, rule: AlarmRule) -> AlarmView:
        return cls(
            rule.name, rule.severity, State.NORMAL, False, False, 0, None, rule.kind,
            rule.condition_text, rule.instructions, "", tuple(i.key for i in rule.inputs),
            in_service=False,
        )  # fmt: skip


@dataclass(frozen=True)
class OutboxView:
    pending: int
    dead: int
    oldest_age: float  # seconds, agent clock
    first: tuple[Entry, ...]  # the first few waiting
    durable: bool  # the state database can be written
    held: int  # new messages waiting in memory while it cannot
    dropped: int  # new messages dropped: memory full while not durable


@dataclass(frozen=True)
class VariableView:
    key: str  # source.variable
    label: str
    unit: str | None
    value: Value
    digits: int = 0  # a word an alarm reads bits of: shown in hex, with this many digits

    @property
    def shown(self) -> str:
        return in_hex(self.value, self.digits) or show(self.value, self.unit)


@dataclass(frozen=True)
class Snapshot:
    agent_name: str
    started: float  # monotonic
    sources: tuple[SourceView, ...]
    values: tuple[VariableView, ...]  # config order
    alarms: tuple[AlarmView, ...]
    outbox: OutboxView
    heartbeat_failures: int
    problems: tuple[str, ...]  # why it is not ready; empty: ready
    # for the status page only (``Agent.snapshot(detail=True)``): the store is read for them
    history: tuple[Occurrence, ...] = ()
    trends: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # recent values
    #: alarms (by name) whose ended occurrences wait for an acknowledgement
    manual_ack: frozenset[str] = frozenset()
    #: the active alarms' occurrences (by id), for their cards: the recent history may not
    #: reach back to an alarm that has been active a long time
    current: Mapping[str, Occurrence] = field(default_factory=dict)
    #: who looks (logged in), and the token their forms carry; None: no actions
    viewer: str | None = None
    token: str = ""


class Snapshots(Protocol):
    """Where a snapshot comes from (``Agent.snapshot``)."""

    def __call__(self, first: int = 10, detail: bool = False) -> Snapshot: ...


def copy_stats(stats: SourceStats) -> SourceStats:
    return replace(stats, errors=Counter(stats.errors))
