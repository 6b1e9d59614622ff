"""What observers see: a copy of the running agent's state, made when they ask.

The status page and the metrics read a ``Snapshot``, never the service's objects, so they
cannot change it by accident, and the runtime can change its insides without touching them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime

from agent.alarms.states import AlarmState, State
from agent.common.values import Value
from agent.outbox.store import Entry
from agent.sources.base import SourceStats


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
    notified: bool  # False while flapping control holds it back
    suppressed: int
    occurred_on: datetime | None

    @classmethod
    def of(cls, alarm: AlarmState) -> AlarmView:
        rule = alarm.rule
        return cls(
            rule.name,
            rule.severity,
            alarm.state,
            alarm.active,
            alarm.notified,
            alarm.suppressed,
            alarm.occurred_on,
        )


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
class Snapshot:
    agent_name: str
    started: float  # monotonic
    sources: tuple[SourceView, ...]
    values: tuple[tuple[str, str | None, Value], ...]  # (key, unit, value), config order
    alarms: tuple[AlarmView, ...]
    outbox: OutboxView
    heartbeat_failures: int
    problems: tuple[str, ...]  # why it is not ready; empty: ready


def copy_stats(stats: SourceStats) -> SourceStats:
    return replace(stats, errors=Counter(stats.errors))
