"""The agent's dead man's switch: it pings an ilert heartbeat monitor, which pages when the
pings stop (the agent dead, its box off, its network gone). The URL holds a key: never logged.
"""

from __future__ import annotations

import logging

import httpx

from agent.common.retry import Throttle
from agent.config import HeartbeatSection
from agent.delivery.pacing import Pacer

log = logging.getLogger("agent")


class Heartbeat:
    """Pings at ``interval`` ± 10% (``JitteredInterval``), so a fleet switched on together
    does not ping in lockstep, and never more than ilert's 5 a minute per heartbeat key:
    a ping past that is skipped, not sent to be refused."""

    def __init__(self, beat: HeartbeatSection, http: httpx.AsyncClient, pacer: Pacer) -> None:
        self.beat = beat
        self.http = http
        self.failures = 0  # pings failed in a row
        self.skipped = 0  # pings not sent: 5 were sent in the last minute
        self._log = Throttle()
        self._skip_log = Throttle()
        self.clock = pacer.clock
        self.budget = pacer.heartbeat(beat.url.get_secret_value())

    async def ping(self) -> None:
        """Tell the monitor the agent is alive; a failure is counted and logged now and then."""
        beat = self.beat
        if not self.budget.take(self.clock()):
            self.skipped += 1
            if self._skip_log.hit():
                log.info(
                    "heartbeat: ping skipped: 5 were sent to this heartbeat key in the last"
                    " minute, ilert's limit (heartbeat.interval %g s; 12 s or more stays"
                    " within it); %d skipped so far",
                    beat.interval,
                    self.skipped,
                )
            return
        try:
            response = await self.http.request(
                beat.method, beat.url.get_secret_value(), timeout=beat.timeout
            )
            problem = None if response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        finally:
            self.budget.settle(self.clock())
        if problem is None:
            if self.failures:
                log.info("heartbeat: ping answered again after %d failure(s)", self.failures)
            self.failures = 0
            self._log.clear()
            return
        self.failures += 1
        if self._log.hit():
            log.warning("heartbeat: ping failed (%s), %d in a row", problem, self.failures)
