"""``ixon-agent test --live``: the same alarm tests in real time, through the real chain.

Per test: the config's own register map served by ``simulators.config_machine`` with the
test's series (a source in an offline window stops answering), the agent as ``run`` runs it
(scheduler, outbox, delivery), and an ilert stand-in with one alert source per webhook.
Every webhook of the config is pointed at the stand-in, whatever its URL: nothing leaves the
machine. What the stand-in received, and when, is compared with the same expectations as
in simulated time; each tolerance grows by the poll interval plus ``DELIVERY``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from agent.config import Config, Webhook
from agent.runtime.service import Agent
from agent.tools.alarmtest import run_files
from agent.tools.alarmtest.simulate import Sent
from agent.tools.alarmtest.spec import AlarmTest, Expectation, TestFile, rules
from simulators.ilert import IlertConf, IlertSimulator, SourceConf
from simulators.machines import Machine, scenario
from workbench.wiring import to_stand_ins

#: seconds live mode allows, beyond a poll interval, for a message to reach the stand-in
DELIVERY = 0.5


def _windows(test: AlarmTest, t: float) -> set[str]:
    return {s for s, ws in test.offline.items() if any(a <= t < b for a, b in ws)}


def _live_key(index: int, webhook: Webhook) -> str:
    return f"il1live{index}"  # one alert source per webhook: what came from which


def stand_in(config: Config) -> IlertSimulator:
    """An ilert with one alert source per webhook (key ``il1live<n>``), grouping by
    occurrence as the README recommends, and no rate limit worth meeting in a test."""
    sources = [
        SourceConf(
            name=w.name,
            key=_live_key(n, w),
            integration="ixon" if w.format == "ixon" else "api",
            alert_key_template="{{alarm.occurrenceId}}" if w.format == "ixon" else None,
        )
        for n, w in enumerate(config.webhooks)
    ]
    return IlertSimulator(IlertConf(sources=sources, heartbeats=[]))


def _sent(config: Config, at: float, key: str, body: dict[str, Any]) -> Sent | None:
    """A received body as the message the agent sent."""
    webhook = config.webhooks[int(key.removeprefix("il1live"))].name
    if "alarm" in body:  # IXON Cloud Notify
        alarm = body["alarm"]
        kind = "start" if alarm.get("state") == "active" else "end"
        values = [
            i["value"] for i in body["longContent"]["extraInformation"] if i["type"] == "value"
        ]
        value = values[0] if values else None
        return Sent(at, webhook, kind, alarm["name"], alarm["occurrenceId"], value)
    if body.get("eventType") in ("ALERT", "RESOLVE"):  # ilert Events API
        name = str(body.get("summary", "")).rsplit(" (", 1)[0]
        kind = "start" if body["eventType"] == "ALERT" else "end"
        value = (body.get("customDetails") or {}).get("value")
        return Sent(at, webhook, kind, name, str(body.get("alertKey")), value)
    return None


async def run_test(file: TestFile, test: AlarmTest) -> list[Sent]:
    machine = Machine(file.config, free_ports=True, bind="127.0.0.1")
    machine.values = scenario(test)
    machine.offline = lambda t: _windows(test, t)
    ilert = stand_in(file.config)
    where = await machine.start()
    ilert_url = await ilert.start()
    started = machine.started
    try:
        with tempfile.TemporaryDirectory(prefix="ixon-agent-live-") as state:
            ports = {name: port for name, (_, port) in where.items()}
            config = to_stand_ins(
                file.config, ports, ilert_url, Path(state), key=_live_key, status=False
            )
            agent = Agent(config)
            await agent.start()
            try:
                await asyncio.sleep(test.duration - (time.monotonic() - started))
            finally:
                await agent.deliverer.drain(2.0)
                await agent.stop(grace=2.0)
    finally:
        await ilert.stop()
        await machine.stop()
    found = [_sent(file.config, m.at - started, m.key, m.body) for m in ilert.inbound]
    return [s for s in found if s is not None and s.at <= test.duration + DELIVERY]


def widened(file: TestFile) -> TestFile:
    """Each expectation's tolerance plus its source's poll interval and ``DELIVERY``; an
    offline alarm's also plus the source's ``timeout`` (live, a silent device is noticed
    when a request times out)."""
    poll = max((s.poll_interval for s in file.config.sources), default=1.0)
    timeout = max((s.timeout for s in file.config.sources), default=1.0)
    offline = {name for name, rule in rules(file.config).items() if rule.kind == "offline"}

    def wider(e: Expectation) -> Expectation:
        extra = poll + DELIVERY + (timeout if e.alarm in offline else 0.0)
        return dataclasses.replace(e, tolerance=e.tolerance + extra)

    tests = tuple(
        dataclasses.replace(t, expect=tuple(wider(e) for e in t.expect)) for t in file.tests
    )
    return dataclasses.replace(file, tests=tests)


def run_live(
    paths: Sequence[Path],
    junit: Path | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    return run_files(
        paths,
        junit,
        runner=lambda f, t: asyncio.run(run_test(f, t)),
        out=out,
        err=err,
        detail=", live",
        prepare=widened,
    )
