"""``ixon-agent run`` and its reload (SIGHUP): one ``Agent`` at a time; a reload validates
the file again and, if it is sound, replaces the agent, carrying over the state of every
alarm whose definition did not change."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from agent.alarms.rules import AlarmRule
from agent.common.ids import short_id
from agent.config import Config, ConfigError, config_warnings, load_config
from agent.delivery.pacing import Pacer
from agent.observe.logs import RedactSecrets
from agent.outbox.store import Held, StoreError
from agent.runtime.service import Agent
from agent.runtime.systemd import Notifier

log = logging.getLogger("agent")


def definitions(config: Config) -> dict[str, Any]:
    """What each alarm (by public id) depends on in the config: equal means unchanged."""
    agent_id = config.agent.agent_id
    found: dict[str, Any] = {}
    for alarm in config.alarms:
        for rule in AlarmRule.compile_all(alarm, config):
            found[rule.public_id] = (alarm, tuple(config.variable(i.key) for i in rule.inputs))
    for source in config.sources:
        found[short_id(agent_id, "offline", source.name)] = (
            source.offline_after,
            source.offline_severity,
            source.describe,
        )
    return found


class Runner:
    """``ixon-agent run``: one Agent at a time. ``reload`` validates the config file again and,
    if it is sound, replaces the agent; alarms whose definition did not change keep their
    whole state (delays running, occurrence, flapping window). An invalid file changes
    nothing but a logged error."""

    def __init__(
        self,
        path: Path,
        config: Config,
        redact: RedactSecrets | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.path = path
        self.error: StoreError | None = None  # why the agent had to stop, if it had to
        self._stop = asyncio.Event()
        self.notifier = notifier or Notifier({})
        self.pacer = Pacer()  # budgets per receiver key: a reload must not reset them
        self.lost = 0  # messages neither sent nor saved, over every agent this run
        self.agent = self._agent(config)
        self.redact = redact
        self._lock = asyncio.Lock()

    def _agent(self, config: Config, carry: Any = None, held: Held | None = None) -> Agent:
        return Agent(
            config,
            carry=carry,
            held=held,
            on_fatal=self._fatal,
            on_healthy=self.notifier.healthy,
            pacer=self.pacer,
        )

    def _ready(self) -> None:
        config = self.agent.config
        self.notifier.ready(
            f"polling {len(config.sources)} source(s), {len(self.agent.engine.states)} alarm(s)"
        )

    def _fatal(self, exc: StoreError) -> None:
        self.error = self.error or exc
        self._stop.set()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        await self.agent.start()
        self._ready()
        try:
            await stop.wait()
        finally:
            self.notifier.stopping()
            async with self._lock:
                await self.agent.stop()
                self.lost += len(self.agent.lost)

    async def reload(self) -> bool:
        async with self._lock:
            try:
                # in a thread: a large file takes seconds, and the running agent polls on
                config = await asyncio.to_thread(load_config, self.path)
            except ConfigError as exc:
                log.error("reload: %s; the running config stays", "; ".join(exc.problems))
                return False
            if self.redact is not None:
                self.redact.add(config.secrets())
            for warning in config_warnings(config):
                log.warning("reload: %s", warning)
            old = self.agent
            self.notifier.reloading()
            await old.stop(hand_over=True)  # what waits in memory goes to the new agent
            self.lost += len(old.lost)
            before = definitions(old.config)  # once: per alarm it made a reload A squared
            unchanged = {
                alarm_id
                for alarm_id, definition in definitions(config).items()
                if before.get(alarm_id) == definition
            }
            self.agent = self._agent(config, carry=(old.engine, unchanged), held=old.held)
            await self.agent.start()
            self._ready()
            log.info(
                "reload: new config running; %d alarm(s) carried over unchanged", len(unchanged)
            )
            return True
