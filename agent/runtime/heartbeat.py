"""The agent's dead man's switch: it pings an ilert heartbeat monitor, which pages when the
pings stop (the agent dead, its box off, its network gone). The URL holds a key: never logged.
"""

from __future__ import annotations

import logging

import httpx

from agent.common.retry import Throttle
from agent.config import HeartbeatSection

log = logging.getLogger("agent")


class Heartbeat:
    def __init__(self, beat: HeartbeatSection, http: httpx.AsyncClient) -> None:
        self.beat = beat
        self.http = http
        self.failures = 0  # pings failed in a row
        self._log = Throttle()

    async def ping(self) -> None:
        """Tell the monitor the agent is alive; a failure is counted and logged now and then."""
        beat = self.beat
        try:
            response = await self.http.request(
                beat.method, beat.url.get_secret_value(), timeout=beat.timeout
            )
            problem = None if response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        if problem is None:
            if self.failures:
                log.info("heartbeat: ping answered again after %d failure(s)", self.failures)
            self.failures = 0
            self._log.clear()
            return
        self.failures += 1
        if self._log.hit():
            log.warning("heartbeat: ping failed (%s), %d in a row", problem, self.failures)
