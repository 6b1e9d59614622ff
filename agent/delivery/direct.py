"""The last resort at a stop while the state is not durable (a full disk): the messages
that wait in memory, never written, are sent straight to their webhooks within a bounded
grace, by the same rules as the outbox's (per webhook and occurrence in order, the most
severe first, within each key's budget), so a restart, an update or a watchdog kill
(each a SIGTERM from systemd) does not take them away unsaid. What is neither sent nor
saved is the caller's to name."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence

from agent.common import retry
from agent.config import SEVERITY_RANK, Webhook
from agent.delivery.pacing import Budget, Pacer
from agent.delivery.post import Poster
from agent.observe.logs import Redactor
from agent.outbox.store import Message

log = logging.getLogger("agent.delivery")

#: sends at once, as the deliverer's
MAX_IN_FLIGHT = 32
#: seconds between looks for a slot while every one is in a send under way
SLOT_LOOK = 0.05


async def send_directly(
    messages: Sequence[Message],
    webhooks: Mapping[str, Webhook],
    poster: Poster,
    pacer: Pacer,
    within: float,
    redact: Redactor | None = None,
) -> list[Message]:
    """Send ``messages`` (oldest first) within ``within`` seconds; returns those delivered.
    A message that fails holds back the rest of its occurrence's queue, as in the outbox."""
    deadline = time.monotonic() + within
    queues: dict[tuple[str, str], list[Message]] = {}
    for m in messages:
        queues.setdefault((m.webhook, m.occurrence_id), []).append(m)
    # the most severe first, then the oldest: a semaphore serves its waiters in order
    order = sorted(queues.values(), key=lambda q: -SEVERITY_RANK.get(q[0].severity, 2))
    delivered: list[Message] = []
    room = asyncio.Semaphore(MAX_IN_FLIGHT)

    gates: dict[int, asyncio.Lock] = {}  # per budget: its next slot goes to the first in line

    async def slot(budget: Budget) -> bool:
        """Take one of the key's slots, in turn, by the deadline."""
        async with gates.setdefault(id(budget), asyncio.Lock()):  # FIFO: in severity order
            while not budget.take(pacer.clock()):
                # every slot in a send under way: its answer says when (look again soon)
                wait = budget.next_room() - pacer.clock()
                wait = SLOT_LOOK if math.isinf(wait) else max(0.0, wait)
                if wait >= deadline - time.monotonic():
                    return False
                await asyncio.sleep(wait)
        return True

    async def one(m: Message) -> bool:
        webhook = webhooks.get(m.webhook)
        if webhook is None:
            return False
        budget = pacer.budget(m.webhook)
        failures = 0
        while (left := deadline - time.monotonic()) > 0:
            if budget is not None and not await slot(budget):
                return False
            try:
                answer = await asyncio.wait_for(poster.post(webhook, m.body), left)
            except TimeoutError:
                return False
            finally:
                if budget is not None:
                    budget.settle(pacer.clock())
            if answer.outcome == "delivered":
                log.info("webhook %s: delivered %s without the outbox", m.webhook, m.label)
                return True
            if answer.outcome == "rejected":
                text = (redact or Redactor())(answer.text)[:200]
                log.error("webhook %s: %s rejected with HTTP %s: %s", m.webhook, m.label,
                          answer.status, text)  # fmt: skip
                return False
            pause = retry.backoff(failures, 0.2, 2.0, answer.retry_after)
            if answer.status == 429:
                pause = pacer.refused(m.webhook, answer.retry_after)
            failures += 1
            if pause >= deadline - time.monotonic():
                return False
            await asyncio.sleep(pause)
        return False

    async def run(queue: list[Message]) -> None:
        async with room:
            for m in queue:
                if not await one(m):
                    return  # its later messages stay behind it: an end never before a start
                delivered.append(m)

    await asyncio.gather(*(run(queue) for queue in order))
    return delivered
