"""A device is untrusted input: malformed replies never become values, answers or pages.

The device here is ``tests.rogue_device``: a hand-written Modbus TCP server on 127.0.0.1
that answers with exactly the malformed frame a test asks for.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.common.retry import Throttle
from agent.config import load_config
from agent.runtime.service import Agent
from agent.sources.modbus.config import ModbusSource as Source
from agent.sources.modbus.poller import SourcePoller
from simulators.ilert import IlertSimulator
from tests.conftest import wait_for, write_config
from tests.rogue_device import RogueDevice

MALFORMED = [
    "wrong_function",  # an FC4 reply to FC3: decoded as values by pymodbus alone
    "short_count",
    "long_count",
    "extra",  # more registers than asked, consistently framed
    "tid_zero",  # pymodbus accepts transaction id 0 for any request
    "bad_exception",  # exception code 136: no such Modbus exception
    "wrong_exception",  # an exception reply for another function code
]
IGNORED = ["wrong_tid", "wrong_unit", "garbage"]  # pymodbus itself drops these: a timeout


@pytest.fixture
async def rogue() -> AsyncIterator[RogueDevice]:
    device = RogueDevice("ok")
    await device.start()
    yield device
    await device.stop()


def source(port: int, register: str = "holding") -> Source:
    variable = {"name": "level", "register": register, "address": 0}
    variable["type"] = "bool" if register in ("coil", "discrete_input") else "int"
    return Source.model_validate(
        {"name": "dev", "host": "127.0.0.1", "port": port, "timeout": 0.3, "variables": [variable]}
    )


async def poll_once(port: int, register: str) -> tuple[Any, SourcePoller]:
    poller = SourcePoller(source(port, register))
    try:
        return await poller.poll(), poller
    finally:
        poller.close()


async def test_a_well_formed_reply_is_read(rogue: RogueDevice) -> None:
    result, poller = await poll_once(rogue.port, "holding")
    assert result.answered and result.ok and result.values == {"dev.level": 0}
    assert poller.stats.replies == 1 and not poller.stats.errors


@pytest.mark.parametrize("register", ["holding", "input", "coil", "discrete_input"])
@pytest.mark.parametrize("mode", MALFORMED)
async def test_a_malformed_reply_is_a_protocol_error_never_a_value(
    rogue: RogueDevice, mode: str, register: str
) -> None:
    rogue.mode = mode
    result, poller = await poll_once(rogue.port, register)
    assert result.values == {}, f"{mode}: a malformed reply was decoded"
    assert not result.answered, f"{mode}: a malformed reply counted as an answer"
    assert poller.stats.errors == {"protocol error": 1}, poller.stats.errors
    assert poller.stats.replies == 0
    assert "protocol error" in result.errors[0]


@pytest.mark.parametrize("mode", IGNORED)
async def test_a_reply_to_another_request_or_unit_is_no_answer(
    rogue: RogueDevice, mode: str
) -> None:
    rogue.mode = mode
    result, poller = await poll_once(rogue.port, "holding")
    assert result.values == {} and not result.answered
    assert poller.stats.errors == {"no reply": 1}


async def test_failures_keep_counting_across_reconnects(
    rogue: RogueDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device accepts every connection, then answers nonsense: the backoff must grow
    as for a dead device, not restart at its shortest after each successful connect."""
    monkeypatch.setattr("agent.sources.modbus.poller.BACKOFF_BASE", 0.001)
    rogue.mode = "wrong_function"
    poller = SourcePoller(source(rogue.port))
    try:
        for _ in range(6):
            poller.link.retry_at = 0.0  # do not wait out the backoff: count attempts
            await poller.poll()
    finally:
        poller.close()
    assert rogue.connections == 6  # each bad frame dropped the connection, then reconnected
    assert poller.link.failures == 6
    assert poller.stats.errors["protocol error"] == 6


@pytest.fixture
def agent_config(tmp_path: Path, rogue: RogueDevice, ilert: IlertSimulator) -> Path:
    text = f"""
[agent]
name = "Rogue line"
state_dir = "state"

[[sources]]
name = "plc"
host = "127.0.0.1"
port = {rogue.port}
poll_interval = "50ms"
timeout = "200ms"
offline_after = "1s"

  [[sources.variables]]
  name = "level"
  register = "holding"
  address = 0
  type = "int"

[[alarms]]
name = "Level high"
variable = "plc.level"
condition = ">"
threshold = 100
severity = "high"

[[webhooks]]
name = "ilert"
url = "{ilert.url}/api/v1/events/ixon/il1ixon0demo"

[status]
enabled = false
"""
    return write_config(tmp_path, text)


@pytest.mark.parametrize("mode", ["wrong_function", "extra", "garbage", "bad_exception"])
async def test_a_device_that_only_talks_nonsense_goes_offline_and_stays_offline(
    agent_config: Path,
    rogue: RogueDevice,
    ilert: IlertSimulator,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("agent.sources.modbus.poller.BACKOFF_BASE", 0.02)
    monkeypatch.setattr(
        "agent.sources.modbus.poller.BACKOFF_CAP", 0.1
    )  # many failures in a short test
    caplog.set_level(logging.DEBUG)
    rogue.mode = mode
    agent = Agent(load_config(agent_config, environ={}))
    await agent.start()
    try:
        stats = agent.pollers["plc"].stats
        await wait_for(lambda: ilert.received, what="the offline alarm")
        failures = sum(stats.errors.values())
        await wait_for(
            lambda: sum(stats.errors.values()) >= failures + 20, what="20 more bad replies"
        )
        assert [m["shortContent"]["name"] for m in ilert.received] == ["Source plc offline"]
        assert ilert.received[0]["alarm"]["state"] == "active"  # and no end: no flapping
        assert "plc.level" not in agent.values and not agent.online("plc")

        rogue.mode = "ok"  # the device is repaired: valid replies bring it back
        await wait_for(lambda: len(ilert.received) == 2, what="the offline alarm's end")
        assert ilert.received[1]["alarm"]["state"] == "ended"
        assert agent.values["plc.level"] == 0 and agent.online("plc")
    finally:
        await agent.stop()
    assert all(m["shortContent"]["name"] != "Level high" for m in ilert.received)
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("agent")
    ]  # (pymodbus's own logger is silenced by the agent's logging set-up)
    # failure 1 and 10 of the link, the offline alarm; never a line per bad reply
    assert len(warnings) <= 4, [r.getMessage() for r in warnings]
    assert not [r for r in caplog.records if r.name == "asyncio"], "pymodbus choked on a frame"


def test_throttle_logs_the_first_tenth_hundredth_and_once_an_interval() -> None:
    now = [0.0]
    throttle = Throttle(interval=60.0, clock=lambda: now[0])
    logged = []
    for n in range(1, 1001):
        now[0] = n * 0.1  # an occurrence every 100 ms, for 100 s
        if throttle.hit():
            logged.append(n)
    assert logged == [1, 10, 100, 700, 1000]  # 700: 60 s after the 100th
    assert throttle.clear() == 1000 and throttle.hit()
