"""The running agent: the scheduler drives poll -> decode -> evaluate -> deliver per source.

APScheduler owns timing: one interval job per source, never overlapping itself
(``max_instances=1``) and coalescing missed runs, so a slow device delays only its own job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.alarms import AlarmEngine, Transition
from agent.config import Config
from agent.delivery import Deliverer, Delivery, Outcome, make_http_client
from agent.messages import build, wanted
from agent.modbus import PollResult, SourcePoller, make_links

log = logging.getLogger("agent")

#: at shutdown, seconds a running poll cycle may still take before it is cancelled
CYCLE_GRACE = 0.5


class Clock:
    """Monotonic time for delays, wall time for timestamps; tests inject their own."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class Observer(Protocol):
    """What a live display (the demo) or a test wants to see happen."""

    def polled(self, result: PollResult) -> None: ...
    def transition(self, transition: Transition) -> None: ...
    def delivered(self, delivery: Delivery, outcome: Outcome) -> None: ...


@dataclass
class _Nothing:
    def polled(self, result: PollResult) -> None:
        pass

    def transition(self, transition: Transition) -> None:
        pass

    def delivered(self, delivery: Delivery, outcome: Outcome) -> None:
        pass


class Agent:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or Clock()
        self.observer: Observer = observer or _Nothing()
        self._own_http = http is None
        self.http = http or make_http_client()
        self.engine = AlarmEngine.from_config(config)
        links = make_links(config.sources)
        self.pollers = {s.name: SourcePoller(s, links[s.name]) for s in config.sources}
        self.deliverer = Deliverer(config.webhooks, self.http, on_result=self.observer.delivered)
        self.scheduler: AsyncIOScheduler | None = None
        self.values: dict[str, object] = {}
        self._cycles: set[asyncio.Task[None]] = set()  # poll cycles in flight

    async def start(self) -> None:
        """Start delivery and the polling schedule; must run inside the event loop."""
        self.deliverer.start()
        self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        for source in self.config.sources:
            self.scheduler.add_job(
                self.poll_source,
                "interval",
                args=[source.name],
                seconds=source.poll_interval,
                id=f"poll:{source.name}",
                name=f"poll {source.name}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(source.poll_interval)),
                next_run_time=datetime.now(UTC),
            )
        self.scheduler.start()
        log.info(
            "agent %r running: %d source(s), %d alarm(s), %d webhook(s)",
            self.config.agent.name,
            len(self.pollers),
            len(self.engine.states),
            len(self.config.webhooks),
        )

    async def stop(self, grace: float = 3.0) -> None:
        """Stop polling, give queued messages ``grace`` seconds, then close everything."""
        if self.scheduler is not None:
            self.scheduler.pause()  # no new cycles; running ones get a moment, then are cut
            if self._cycles:
                _, late = await asyncio.wait(self._cycles, timeout=CYCLE_GRACE)
                for cycle in late:
                    cycle.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await self.deliverer.drain(grace)
        await self.deliverer.stop()
        for poller in self.pollers.values():
            poller.close()
        if self._own_http:
            await self.http.aclose()

    async def poll_source(self, name: str) -> None:
        """The scheduler's job: one cycle, in a task of its own that stop() may cancel."""
        cycle = asyncio.create_task(self._cycle(name), name=f"cycle:{name}")
        self._cycles.add(cycle)
        try:
            await cycle
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise  # the job itself is being cancelled, not just this cycle
            log.debug("source %s: cycle cancelled at shutdown", name)
        finally:
            self._cycles.discard(cycle)

    async def _cycle(self, name: str) -> None:
        """Poll, decode, evaluate, queue. Never raises: a failing job would stop being scheduled.

        The only await is the poll itself, so a cancelled cycle never leaves an alarm
        transition without its messages.
        """
        try:
            poller = self.pollers[name]
            result = await poller.poll()
            if result.errors:
                log.debug("source %s: %s", name, "; ".join(result.errors))
            self.values.update(result.values)
            self.observer.polled(result)
            now, wall = self.clock.monotonic(), self.clock.now()
            last_answer = poller.stats.last_answer
            transitions = self.engine.connection(name, result.answered, last_answer, now, wall)
            transitions += self.engine.evaluate(name, result.values, now, wall)
            self.handle(transitions)
        except Exception:
            log.exception("source %s: poll cycle failed", name)

    def handle(self, transitions: list[Transition]) -> None:
        """Turn alarm transitions into one queued message per interested webhook."""
        for t in transitions:
            verb = "started" if t.kind == "start" else "ended"
            log.info(
                "alarm %r %s (%s = %s, occurrence %s)",
                t.rule.name,
                verb,
                t.rule.variable,
                t.value,
                t.occurrence_id,
            )
            self.observer.transition(t)
            self.submit(t)

    def submit(self, t: Transition, webhooks: list[str] | None = None) -> None:
        """Queue one message per webhook that wants this transition."""
        now = self.clock.now()
        for webhook in self.config.webhooks:
            if (webhooks is None or webhook.name in webhooks) and wanted(webhook, t):
                label = f"{t.kind} of {t.rule.name!r} (occurrence {t.occurrence_id})"
                body = build(self.config.agent, webhook, t, now)
                self.deliverer.submit(Delivery(webhook.name, body, label))


async def run_until(
    agent: Agent, stop: asyncio.Event, on_started: Callable[[], None] | None = None
) -> None:
    await agent.start()
    if on_started:
        on_started()
    try:
        await stop.wait()
    finally:
        await agent.stop()
