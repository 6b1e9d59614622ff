"""What the pollers of session protocols (OPC UA, S7) share: one connection per source,
dropped whole after any failure and made anew after a capped, jittered backoff, with the
failure logged at its 1st, 10th, 100th... and now and then; and a variable without a value
logged once when that starts and once when it ends. (Modbus has links of its own: several
units may share one serial line.)"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

from agent.common.retry import Throttle, backoff
from agent.sources.base import PollResult, SourceStats
from agent.sources.schema import SourceBase

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
FAILURE_LOG_INTERVAL = 600.0

S = TypeVar("S", bound=SourceBase)

#: closings under way: a task nobody holds may be collected mid-way
_CLOSING: set[asyncio.Task[Any]] = set()


class SessionPoller(Generic[S]):
    log: logging.Logger

    #: the failure kinds of this protocol (beside not connected, no reply, protocol error)
    kinds: tuple[str, ...] = ()

    def __init__(self, source: S) -> None:
        self._source = source
        self.stats = SourceStats(kinds=("not connected", "no reply", "protocol error", *self.kinds))
        self.failures = 0
        self.retry_at = 0.0
        self.throttle = Throttle(FAILURE_LOG_INTERVAL)
        self.bad: dict[str, str] = {}  # variable -> why it had no value, as last logged

    @property
    def source(self) -> S:
        return self._source

    async def poll(self) -> PollResult:
        """One cycle. Never raises for anything the device or the network does."""
        result = PollResult(self.source.name)
        self.stats.cycles += 1
        await self._poll(result)
        if result.answered and self.failures:
            self.log.info(
                "source %s: answering again after %d failure(s)",
                self.source.name,
                self.failures,
                extra={"source": self.source.name},
            )
            self.failures = 0
            self.throttle.clear()
        self.stats.record(result)
        return result

    async def _poll(self, result: PollResult) -> None:
        raise NotImplementedError

    def waiting(self, result: PollResult) -> bool:
        """Whether the backoff after the last failure still runs (then no try this cycle)."""
        if time.monotonic() < self.retry_at:
            result.errors.append("not connected; waiting to retry")
            return True
        return False

    def backoff(self, reason: str, closing: Coroutine[Any, Any, Any] | None) -> None:
        """After a failure: ``closing`` (the dropped connection's goodbye) in the
        background, and a growing, jittered wait before the next try."""
        if closing is not None:
            task = asyncio.get_running_loop().create_task(closing)
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)
        delay = backoff(self.failures, BACKOFF_BASE, BACKOFF_CAP)
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        level = logging.WARNING if self.throttle.hit() else logging.DEBUG
        self.log.log(
            level,
            "source %s (%s): %s (failure %d in a row); next try in %.1fs",
            self.source.name,
            self.source.describe,
            reason,
            self.failures,
            delay,
            extra={"source": self.source.name},
        )

    def no_value(self, variable: str, why: str, where: str = "") -> None:
        """A variable without a value: logged when that starts or its reason changes."""
        if self.bad.get(variable) != why:
            at = f" ({where})" if where else ""
            self.log.warning(
                "source %s: %s%s has no value: %s",
                self.source.name,
                variable,
                at,
                why,
                extra={"source": self.source.name},
            )
            self.bad[variable] = why

    def has_value(self, variable: str) -> None:
        if variable in self.bad:
            self.log.info(
                "source %s: %s has a value again",
                self.source.name,
                variable,
                extra={"source": self.source.name},
            )
            del self.bad[variable]
