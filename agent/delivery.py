"""Delivery: POST queued messages to their webhooks, in order, retrying until they arrive.

One FIFO queue per webhook: a message that fails blocks the ones behind it, so an alarm's end
can never overtake its start. Network errors, timeouts, 408, 429 and 5xx are retried with
capped exponential backoff and jitter (``Retry-After`` honoured); other 4xx are permanent.

The queue is in memory for now: it survives an unreachable webhook, not a restart.
Webhooks are logged by name only; their URLs carry secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from agent import __version__
from agent.config import Webhook

log = logging.getLogger("agent.delivery")

USER_AGENT = f"ixon-agent/{__version__}"
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0
#: ilert's answer to a RESOLVE whose alert is already closed: the goal is reached.
ALREADY_RESOLVED = frozenset({"NO_OPEN_ALERT_WITH_KEY", "NONE_OPEN_FOR_KEY"})

Outcome = Literal["delivered", "retry", "rejected"]


@dataclass
class Delivery:
    """One message on its way to one webhook."""

    webhook: str
    body: dict[str, Any]
    label: str  # e.g. "start of 'Oil temperature high' (occurrence abc)", for logs
    enqueued: float = field(default_factory=time.monotonic)
    attempts: int = 0
    last_error: str | None = None
    status: int | None = None


def make_http_client() -> httpx.AsyncClient:
    """The process's one HTTP client: TLS verified, no redirects followed, named agent."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        verify=True,
        timeout=10.0,
    )


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: full jitter on a capped exponential."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(attempts, 16))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


def classify(response: httpx.Response, body: dict[str, Any]) -> Outcome:
    """What an HTTP answer means for a message."""
    status = response.status_code
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    if status == 400 and body.get("eventType") in ("RESOLVE", "ACCEPT"):
        with contextlib.suppress(ValueError, AttributeError):
            if response.json().get("code") in ALREADY_RESOLVED:
                return "delivered"
    return "rejected"


class Deliverer:
    """Per-webhook FIFO senders sharing one HTTP client."""

    def __init__(
        self,
        webhooks: list[Webhook],
        client: httpx.AsyncClient,
        on_result: Callable[[Delivery, Outcome], None] | None = None,
    ) -> None:
        self.webhooks = {w.name: w for w in webhooks}
        self.client = client
        self.on_result = on_result
        self.queues: dict[str, deque[Delivery]] = {name: deque() for name in self.webhooks}
        self._wake: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self.webhooks}
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()  # set while every queue is empty
        self._idle.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(name), name=f"deliver:{name}") for name in self.webhooks
        ]

    def submit(self, delivery: Delivery) -> None:
        self.queues[delivery.webhook].append(delivery)
        self._idle.clear()
        self._wake[delivery.webhook].set()

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    async def drain(self, within: float) -> bool:
        """Wait until every queue is empty, at most ``within`` seconds; True if all went out."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._idle.wait()
        return not self.pending

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.pending:
            log.warning("%d message(s) not delivered at shutdown", self.pending)

    async def _run(self, name: str) -> None:
        queue, wake = self.queues[name], self._wake[name]
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            delivery = queue[0]
            outcome, retry_after = await self._attempt(delivery)
            if self.on_result:
                self.on_result(delivery, outcome)
            if outcome != "retry":
                queue.popleft()
                if not self.pending:
                    self._idle.set()
                continue
            delay = backoff(delivery.attempts - 1, retry_after)
            log.warning(
                "webhook %s: %s failed (attempt %d: %s); retrying in %.1fs",
                name,
                delivery.label,
                delivery.attempts,
                delivery.last_error,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(self, delivery: Delivery) -> tuple[Outcome, float | None]:
        webhook = self.webhooks[delivery.webhook]
        delivery.attempts += 1
        try:
            response = await self.client.post(
                webhook.url.get_secret_value(), json=delivery.body, timeout=webhook.timeout
            )
        except httpx.HTTPError as exc:
            # str(exc) of httpx errors names no URL; the log filter redacts any that slips in
            delivery.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return "retry", None
        delivery.status = response.status_code
        outcome = classify(response, delivery.body)
        if outcome == "delivered":
            log.info(
                "webhook %s: delivered %s (HTTP %d, attempt %d)",
                delivery.webhook,
                delivery.label,
                response.status_code,
                delivery.attempts,
            )
            return outcome, None
        delivery.last_error = f"HTTP {response.status_code}"
        if outcome == "rejected":
            log.error(
                "webhook %s: %s rejected with HTTP %d: %s; dropped",
                delivery.webhook,
                delivery.label,
                response.status_code,
                response.text[:200],
            )
        return outcome, parse_retry_after(response.headers.get("Retry-After"))
