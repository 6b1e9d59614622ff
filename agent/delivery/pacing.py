"""Pacing: never more sends to a receiver's key than it allows, so it never has to refuse.

ilert allows 50 events a minute per alert-source key, counted in fixed one-minute windows;
past that it answers 429 until the next window, and an alert source that keeps going over
gets a warning for 48 hours. A webhook is paced by the key its receiver counts by (the
format names it: ``WebhookFormat.rate_key``), at its ``rate_limit`` or, for ilert's paths,
ilert's 50 a minute; webhooks with the same key share one budget.

The receiver's windows have a phase the agent cannot see (and the wall clock of an edge box
may be off), so a budget does not count in windows of its own: it has ``count`` slots, and
a send holds one from its start until ``per`` seconds after its answer. Two sends through
one slot then reach the receiver at least ``per`` apart, so no window of the receiver's,
fixed or sliding, whatever its phase, ever sees more than ``count``: a storm drains at the
receiver's full rate (``count`` at once, then ``count`` a window) with no 429 of its own
making. A 429 that comes anyway (another sender on the key) closes the budget until the
receiver's next window, plus jitter.

Budgets live as long as the process (``Pacer``), across a reload of the config, and go by
the monotonic clock: a jump of the wall clock neither opens nor closes one.
"""

from __future__ import annotations

import heapq
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

from agent.config import Rate, Webhook
from agent.formats import format_of

#: ilert's limits per alert-source key and per heartbeat key (docs.ilert.com, alert
#: source throttle)
ILERT_RATE = Rate(50, 60.0)
HEARTBEAT_RATE = Rate(5, 60.0)
#: a receiver's window, for a 429 without ``Retry-After`` to a webhook that is not paced
RECEIVER_WINDOW = 60.0
#: ilert's heartbeat paths, whatever host is in front: the key is the last segment
_HEARTBEAT_KEY = re.compile(r"/api/(?:v1/heartbeats|heartbeats|pings)/([^/]+)/?$")


class Budget:
    """``rate.count`` sends per ``rate.per`` seconds to one key, whatever the phase of the
    receiver's windows (the module's docstring says how)."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._free = [-math.inf] * rate.count  # a heap: when each idle slot is free again
        self.in_use = 0  # slots held by sends not yet answered
        self.closed_until = -math.inf  # after a 429: nothing before the receiver's next window

    def room(self, now: float) -> bool:
        """Whether a send may start now."""
        return now >= self.closed_until and bool(self._free) and self._free[0] <= now

    def take(self, now: float) -> bool:
        """Start a send now if there is room (it holds a slot until ``settle``)."""
        if not self.room(now):
            return False
        heapq.heappop(self._free)
        self.in_use += 1
        return True

    def settle(self, now: float, sent: bool = True) -> None:
        """A send started with ``take`` is over: answered (or failed) at ``now``; its slot is
        free again ``per`` seconds later. ``sent=False``: it never left (free at once)."""
        self.in_use = max(0, self.in_use - 1)
        heapq.heappush(self._free, now + self.rate.per if sent else -math.inf)

    def close(self, until: float) -> None:
        """The receiver refused (429): nothing goes to this key before ``until``."""
        self.closed_until = max(self.closed_until, until)

    def next_room(self) -> float:
        """When a send may start next (inf: every slot is in a send not yet answered)."""
        return max(self.closed_until, self._free[0]) if self._free else math.inf

    def resized(self, rate: Rate, now: float) -> Budget:
        """This budget at another rate, keeping the slots most recently used (a reload
        changed ``rate_limit``), a send still under way counted as sent now: a change of
        rate never lets a burst through. (Such a send settles in this budget, not the new.)"""
        fresh = Budget(rate)
        taken = [*self._free, *[now + self.rate.per] * self.in_use]
        used = sorted(taken, reverse=True)[: rate.count]
        fresh._free = [*used, *[-math.inf] * (rate.count - len(used))]
        heapq.heapify(fresh._free)
        fresh.closed_until = self.closed_until
        return fresh


def rate_of(webhook: Webhook) -> tuple[str, Rate] | None:
    """The key and rate a webhook is paced by, or None: its ``rate_limit`` if set (by its
    URL when its format names no key), else ilert's limit when the format names a key."""
    key = format_of(webhook).rate_key(webhook)
    rate = webhook.rate_limit
    if rate is None:
        return (key, ILERT_RATE) if key is not None else None
    if not rate.count:
        return None
    return key or webhook.url.get_secret_value(), rate


def until_next_window(per: float, wall: Callable[[], float] = time.time) -> float:
    """Seconds until the receiver's next window, taken to start on whole multiples of
    ``per`` of the wall clock (ilert's minutes), plus jitter so that senders told "no" at
    once do not all come back in the same instant. Only a duration is taken from the wall
    clock: it is at most one window, whatever the clock says."""
    return per - wall() % per + random.uniform(0.02, 0.15) * per


class Pacer:
    """The process's budgets, by receiver key (a secret: never logged, never shown)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._budgets: dict[str, Budget] = {}
        self._of: dict[str, Budget] = {}  # by webhook name, for the config in use

    def configure(self, webhooks: Iterable[Webhook]) -> None:
        """Budgets for a config's webhooks: one per key, at the strictest rate of the
        webhooks that share it; a budget the last config used too keeps its history."""
        keys: dict[str, Rate] = {}
        paced: dict[str, str] = {}
        for webhook in webhooks:
            found = rate_of(webhook)
            if found is None:
                continue
            key, rate = found
            paced[webhook.name] = key
            known = keys.get(key)
            if known is None or rate.count / rate.per < known.count / known.per:
                keys[key] = rate
        for key, rate in keys.items():
            budget = self._budgets.get(key)
            if budget is None:
                self._budgets[key] = Budget(rate)
            elif budget.rate != rate:
                self._budgets[key] = budget.resized(rate, self.clock())
        self._of = {name: self._budgets[key] for name, key in paced.items()}

    def budget(self, webhook: str) -> Budget | None:
        """The budget a webhook (by name) sends within; None if it is not paced."""
        return self._of.get(webhook)

    def refused(self, webhook: str, retry_after: float | None) -> float:
        """A 429 to ``webhook``: seconds to wait (its ``Retry-After``, else until the
        receiver's next window), for which its whole key is closed if it is paced."""
        budget = self._of.get(webhook)
        window = budget.rate.per if budget is not None else RECEIVER_WINDOW
        wait = retry_after if retry_after is not None else until_next_window(window)
        if budget is not None:
            budget.close(self.clock() + wait)
        return wait

    def heartbeat(self, url: str) -> Budget:
        """The budget of a heartbeat's key: ilert's 5 pings a minute, whatever the interval
        (more would be refused, and a ping more often than that tells nothing more)."""
        found = _HEARTBEAT_KEY.search(urlsplit(url).path)
        key = "heartbeat " + (unquote(found.group(1)) if found else url)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = Budget(HEARTBEAT_RATE)
        return budget
