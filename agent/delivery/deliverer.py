"""Delivery: send what the outbox holds, in order, until it arrives or provably cannot.

- Order: per webhook and per alarm occurrence, strictly first-in first-out: a message waits
  while an earlier one of its occurrence is retrying, so an end never overtakes its start.
  Different occurrences and different webhooks proceed in parallel.
- Retries: network errors, timeouts, 408, 429 and 5xx, with capped exponential backoff and
  jitter (``Retry-After`` honoured), unlimited in count until ``max_age``; attempts and the
  next attempt time live in the outbox, so a restart resumes the schedule. Other 4xx are
  permanent: the message goes to the dead-letter table with the status and response. A 400
  ``NO_OPEN_ALERT_WITH_KEY`` to an ilert RESOLVE means the goal is already reached.
- Pacing (``pacing.py``): never more sends to a receiver's key than it allows (ilert: 50 a
  minute per alert-source key, IXON source and Events API alike). Under a backlog the most
  severe message goes first, the oldest first within a severity, so a high alarm behind a
  storm of low ones takes the key's next free slot. A 429 without ``Retry-After`` closes
  the key until the receiver's next window, plus jitter.

Retry libraries (stamina, tenacity) run a retry loop around a call inside one process; here
every retry is a row in SQLite with its due time, so the schedule survives a restart and
does not hold a task per waiting message. The backoff is the same full-jitter exponential.
Webhooks are logged by name only; URLs and keys are added at send time, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from agent.common import retry
from agent.common.retry import Throttle
from agent.config import Webhook
from agent.delivery.pacing import Budget, Pacer
from agent.delivery.post import Outcome, Poster
from agent.observe.logs import Redactor
from agent.outbox.store import FLUSH_INTERVAL, Entry, Store, StoreDamaged, StoreError

log = logging.getLogger("agent.delivery")

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
IDLE_CHECK = 5.0  # seconds between outbox checks when nothing is due (another process may add)
EXPIRY_CHECK = 10.0


@dataclass(frozen=True)
class Result:
    """What one attempt came to, for observers (the demo, tests, later metrics)."""

    entry: Entry
    outcome: Outcome
    status: int | None
    error: str | None
    attempts: int
    latency: float


def _about(entry: Entry) -> dict[str, str]:
    """What a log line is about, as fields of a JSON log line."""
    return {"webhook": entry.webhook, "occurrence": entry.occurrence_id}


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt (``retry.backoff`` with delivery's base and cap)."""
    return retry.backoff(attempts, BACKOFF_BASE, BACKOFF_CAP, retry_after)


class Deliverer:
    """Sends due outbox entries with a bounded number in flight, sharing one HTTP client."""

    def __init__(
        self,
        store: Store,
        webhooks: Iterable[Webhook],
        client: httpx.AsyncClient,
        *,
        max_age: float = 86400.0,
        secrets: Iterable[str] = (),
        on_result: Callable[[Result], None] | None = None,
        max_in_flight: int = 32,  # sends at once: a burst of alarms goes out together
        clock: Callable[[], float] | None = None,
        on_fatal: Callable[[StoreError], None] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """``clock``: the agent clock of ``store`` unless a test injects one. ``on_fatal``:
        told when the store is damaged, after which delivery stops. ``pacer``: the
        process's budgets per receiver key (one that outlives a reload), else its own."""
        self.store = store
        self.webhooks = {w.name: w for w in webhooks}
        self.client = client
        self.max_age = max_age
        self.redact = Redactor(secrets)
        self.on_result = on_result
        self.max_in_flight = max_in_flight
        self.clock = clock or store.now
        self.pacer = pacer or Pacer()
        self.pacer.configure(self.webhooks.values())
        self._holding: dict[int, Budget] = {}  # sends in flight: the budget each is within
        self.in_flight: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_expiry_check = 0.0
        self.on_fatal = on_fatal
        self._troubles = Throttle()
        self._arrived: list[int] = []  # delivered, not yet deleted from the outbox
        self.poster = Poster(client)

    def start(self) -> None:
        self.store.release_dead_leases()
        self._task = asyncio.create_task(self._run(), name="deliverer")

    def wake(self) -> None:
        """New messages are in the outbox."""
        self._wake.set()

    async def drain(self, within: float) -> bool:
        """Wait until the outbox is empty, at most ``within`` seconds; True if it is."""
        deadline = time.monotonic() + within
        # polled, not evented: another process (send-test, the CLI) may change the outbox too
        while self.store.pending_count() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return not self.store.pending_count()

    def _record_delivered(self) -> None:
        """Delete what arrived since the last look, in one write. Until then such a message
        is only in flight no more: a crash before this sends it once more (at least once)."""
        if self._arrived:
            arrived, self._arrived = self._arrived, []
            self.store.delivered_many(arrived)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop taking new work; in-flight sends get ``grace`` seconds, the rest stays queued."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.in_flight:
            _, late = await asyncio.wait(self.in_flight.values(), timeout=grace or None)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        with contextlib.suppress(StoreError):
            self._record_delivered()
        left = self.store.pending_count()
        if left:
            log.info("%d message(s) stay in the outbox for the next start", left)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = self._dispatch()
                self._troubles.clear()
            except StoreDamaged as exc:
                log.critical("%s", exc)
                if self.on_fatal is not None:
                    self.on_fatal(exc)
                return
            except Exception:  # a locked or broken database must not end delivery for good
                if self._troubles.hit():
                    log.exception("outbox: cannot read due messages; trying again")
                delay = IDLE_CHECK
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _dispatch(self) -> float:
        """Start sends for what is due; returns how long to sleep if nothing wakes us."""
        now = self.clock()
        self.store.mark()
        if not self.store.durable:
            self.store.flush()  # new messages written as soon as the disk has room again
        if now >= self._next_expiry_check:
            self._expire(now)
            self._next_expiry_check = now + EXPIRY_CHECK
        self._record_delivered()
        mono = self.pacer.clock()
        full = {}  # webhooks whose key has no room now: their messages wait, unwritten
        for name in self.webhooks:
            budget = self.pacer.budget(name)
            if budget is not None and not budget.room(mono):
                full[name] = budget
        capacity = self.max_in_flight - len(self.in_flight)
        if capacity > 0:
            chosen: dict[int, Entry] = {}
            leases: dict[int, float] = {}
            taken: dict[int, Budget] = {}
            # the most severe first: a high alarm takes the next free slot of its key
            for entry in self.store.due(now, capacity, busy=self.in_flight, skip=full):
                webhook = self.webhooks.get(entry.webhook)
                budget = self.pacer.budget(entry.webhook)
                if budget is not None:
                    if not budget.take(mono):
                        full[entry.webhook] = budget  # no write: it waits for the slot
                        continue
                    taken[entry.id] = budget
                chosen[entry.id] = entry
                leases[entry.id] = now + (webhook.timeout if webhook else 10.0) + 30.0
            claimed = self.store.claim_many(leases)  # one write for them all
            for entry_id, budget in taken.items():
                if entry_id in claimed:
                    self._holding[entry_id] = budget
                else:  # another process holds it: this slot was never used
                    budget.settle(mono, sent=False)
            for entry_id, entry in chosen.items():  # in order: the most severe first
                if entry_id not in claimed:
                    continue
                task = asyncio.create_task(self._send(entry), name=f"send:{entry_id}")
                self.in_flight[entry_id] = task
        # not durable: come back soon to write (and then send) what waits in memory
        idle = IDLE_CHECK if self.store.durable else FLUSH_INTERVAL
        if len(self.in_flight) >= self.max_in_flight:
            return idle  # a finishing send wakes us
        # a paced key's next free slot wakes us too (a finishing send, if all are in use)
        rooms = [b.next_room() - mono for b in full.values() if b.next_room() != math.inf]
        wait = min([idle, *rooms])
        due = self.store.next_due(busy=self.in_flight, skip=full)
        return max(0.0, wait if due is None else min(wait, due - now))

    def _expire(self, now: float) -> None:
        expired = self.store.expired(now - self.max_age, busy=self.in_flight)
        if expired:
            self.store.bury([e.id for e in expired], "expired: undelivered for max_age")
            for entry in expired:
                log.error(
                    "webhook %s: %s expired after %d attempt(s) (last error: %s); dead-lettered",
                    entry.webhook,
                    entry.label,
                    entry.attempts,
                    entry.last_error,
                )

    async def _send(self, entry: Entry) -> None:
        try:
            result = await self._attempt(entry)
            if self.on_result is not None:
                self.on_result(result)
        except StoreDamaged as exc:
            log.critical("%s", exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)
        except Exception:
            if self._troubles.hit():
                log.exception(
                    "webhook %s: sending %s failed unexpectedly", entry.webhook, entry.label
                )
            with contextlib.suppress(Exception):
                self.store.retry_later(
                    entry.id, self.clock() + backoff(entry.attempts), "internal error"
                )
        finally:
            budget = self._holding.pop(entry.id, None)
            if budget is not None:  # the slot is free again a window after the answer
                budget.settle(self.pacer.clock())
            self.in_flight.pop(entry.id, None)
            self._wake.set()

    async def _attempt(self, entry: Entry) -> Result:
        webhook = self.webhooks.get(entry.webhook)
        attempts = entry.attempts + 1
        if webhook is None:
            self.store.bury([entry.id], "webhook no longer configured")
            log.error(
                "webhook %s is no longer configured: %s dead-lettered", entry.webhook, entry.label
            )
            return Result(entry, "rejected", None, "webhook not configured", entry.attempts, 0.0)
        answer = await self.poster.post(webhook, entry.body)  # (an old NaN: Entry.from_row)
        outcome, status, error = answer.outcome, answer.status, answer.error
        retry_after, latency = answer.retry_after, answer.latency
        now = self.clock()
        if outcome == "delivered":
            # recorded with the others that arrived meanwhile, before the next dispatch
            self._arrived.append(entry.id)
            log.info(
                "webhook %s: delivered %s (HTTP %s, attempt %d, %.0f ms)",
                entry.webhook,
                entry.label,
                status,
                attempts,
                latency * 1000,
                extra=_about(entry),
            )
        elif outcome == "rejected":
            text = self.redact(answer.text)[:500]  # redacted whole: no key cut in two
            self.store.bury([entry.id], "rejected", status, text, error, attempted=True)
            log.error(
                "webhook %s: %s rejected with HTTP %s: %s; dead-lettered",
                entry.webhook,
                entry.label,
                status,
                text[:200],
                extra=_about(entry),
            )
        elif now - entry.enqueued >= self.max_age:
            outcome = "expired"
            self.store.bury(
                [entry.id], "expired: undelivered for max_age", status, None, error, attempted=True
            )
            log.error(
                "webhook %s: %s expired (%s); dead-lettered",
                entry.webhook,
                entry.label,
                error,
                extra=_about(entry),
            )
        else:
            delay = backoff(entry.attempts, retry_after)
            if status == 429:  # the receiver's window is full: the whole key waits
                delay = self.pacer.refused(webhook.name, retry_after)
            self.store.retry_later(entry.id, now + delay, error or "unknown error")
            log.warning(
                "webhook %s: %s failed (attempt %d: %s); retrying in %.1fs",
                entry.webhook,
                entry.label,
                attempts,
                error,
                delay,
                extra=_about(entry),
            )
        return Result(entry, outcome, status, error, attempts, latency)
