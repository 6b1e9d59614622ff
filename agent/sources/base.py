"""The door of the sources stage: what polling a source once gives, whatever its protocol.

A protocol is a folder beside ``modbus/`` with a ``Poller`` for each configured source: one
``poll()`` per cycle gives values plus health (``PollResult``), never raising for anything
the device or the network does; ``stats`` counts what happened, for logs and metrics.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from agent.common.values import Value
from agent.sources.schema import SourceBase


@dataclass
class PollResult:
    """One cycle of one source: the values read and what went wrong."""

    source: str
    values: dict[str, Value] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    answered: bool = False  # the device sent a valid reply (a valid exception reply counts)

    @property
    def ok(self) -> bool:
        return self.answered and not self.errors


@dataclass
class SourceStats:
    """Counters per source, for logs, metrics and the status page."""

    cycles: int = 0
    failed: int = 0  # cycles that did not read every block
    values: int = 0  # values decoded
    requests: int = 0
    replies: int = 0  # valid replies
    splits: int = 0
    skipped: int = 0  # scheduled cycles skipped because the previous one was still running
    errors: Counter[str] = field(default_factory=Counter)
    last_answer: float | None = None  # monotonic
    last_read: float | None = None  # wall-clock time of the last complete read (a timestamp)
    last_read_mono: float | None = None  # the same, monotonic, for ages
    #: the failure kinds this protocol counts, exported at 0 before they first happen
    kinds: tuple[str, ...] = ("not connected", "no reply", "protocol error")

    def record(self, result: PollResult) -> None:
        """Count one finished cycle: every protocol's poller ends its ``poll`` with this."""
        if result.answered:
            self.last_answer = time.monotonic()
        self.values += len(result.values)
        if result.ok:
            self.last_read = time.time()
            self.last_read_mono = time.monotonic()
        else:
            self.failed += 1


class Poller(Protocol):
    """One configured source, polled by the runtime's scheduler."""

    stats: SourceStats

    @property
    def source(self) -> SourceBase: ...

    @property
    def requests(self) -> int:
        """Requests one cycle sends when nothing fails (the watchdog's time allowance)."""
        ...

    async def poll(self) -> PollResult: ...

    def close(self) -> None: ...
