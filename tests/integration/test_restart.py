"""The agent as a process, stopped with SIGTERM or SIGKILL and started again: what it sends."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.outbox.store import Store
from simulators.ilert import IlertSimulator
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config
from tests.receiver import Receiver

PROBE = """
[[alarms]]
name = "Probe"
variable = "plc.pressure"
condition = "<"
threshold = 2.0
severity = "low"

[[webhooks]]"""


class AgentProcess:
    """``python -m agent run`` with its log in a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / "agent.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent", "run", "--config", str(self.config),
                stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    async def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        self.proc = None
        return code

    async def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            await self.proc.wait()


def alarms(sim: Any, name: str) -> list[tuple[str, str]]:
    """(state, occurrence id) of every message the stand-in got for alarm ``name``."""
    bodies = sim.received if isinstance(sim, IlertSimulator) else sim.bodies
    return [
        (b["alarm"]["state"], b["alarm"]["occurrenceId"])
        for b in bodies
        if b["alarm"]["name"] == name
    ]


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"]
)
async def test_restart_sends_exactly_what_changed_while_down(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator, stop_signal: int
) -> None:
    text = CONFIG.replace("[[webhooks]]", PROBE, 1)
    agent = AgentProcess(write_config(tmp_path, text, port=machine.port, ilert=ilert.url))
    oil = "Oil temperature high"
    expected_code = 0 if stop_signal == signal.SIGTERM else -signal.SIGKILL
    outbox = Store(tmp_path / "state" / "agent.db")

    async def stop() -> None:
        # stop once what was sent is also recorded as sent: this test is about alarm state;
        # a kill between the receiver's answer and that record is the next test's business
        await wait_for(lambda: outbox.pending_count() == 0, what="an empty outbox")
        assert await agent.stop(stop_signal) == expected_code

    try:
        await machine.hold(oil_temp=90.0, pressure=4.5)
        await agent.start()
        await wait_for(lambda: alarms(ilert, oil), timeout=30, what="the oil alarm's start")
        [(_, first)] = alarms(ilert, oil)

        # 1. still active across a restart: not sent again
        await stop()
        await agent.start()
        await machine.hold(pressure=1.0)  # the probe proves the agent evaluated fresh values
        await wait_for(lambda: alarms(ilert, "Probe"), timeout=30, what="the probe's start")
        assert alarms(ilert, oil) == [("active", first)]

        # 2. ended while the agent was down: sent as ended, same occurrence
        await stop()
        await machine.hold(oil_temp=70.0)
        await agent.start()
        await wait_for(lambda: len(alarms(ilert, oil)) == 2, timeout=30, what="the oil end")
        assert alarms(ilert, oil) == [("active", first), ("ended", first)]

        # 3. started while the agent was down: sent as started, a new occurrence
        await stop()
        await machine.hold(oil_temp=95.0)
        await agent.start()
        await wait_for(lambda: len(alarms(ilert, oil)) == 3, timeout=30, what="the new start")
        state, second = alarms(ilert, oil)[2]
        assert state == "active" and second != first
        assert alarms(ilert, "Probe") == [("active", alarms(ilert, "Probe")[0][1])]  # once
    except BaseException:
        print(agent.log.read_text())  # shown by pytest with the failure
        raise
    finally:
        await agent.kill()
        outbox.close()
    assert "il1ixon0demo" not in agent.log.read_text()


async def test_sigkill_with_messages_pending_then_restart_delivers_all_in_order(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    receiver = Receiver(default=503)
    await receiver.start()
    agent = AgentProcess(write_config(tmp_path, port=machine.port, ilert=receiver.url))
    try:
        await agent.start()
        await machine.hold(oil_temp=90.0)
        await wait_for(lambda: receiver.attempts, timeout=30, what="a first failed attempt")
        await machine.hold(oil_temp=70.0)  # the end queues behind the failing start
        await wait_for(
            lambda: "alarm 'Oil temperature high' ended" in agent.log.read_text(),
            timeout=30, what="the end in the outbox",
        )  # fmt: skip
        await agent.stop(signal.SIGKILL)
        assert {b["alarm"]["state"] for _, b in receiver.attempts} == {"active"}  # end held back
        receiver.default = 200
        await agent.start()
        await wait_for(lambda: len(receiver.bodies) == 2, timeout=60, what="start and end")
        outbox = Store(tmp_path / "state" / "agent.db")
        await wait_for(lambda: outbox.pending_count() == 0, what="an empty outbox")
        outbox.close()
    finally:
        await agent.kill()
        await receiver.stop()
    start, end = receiver.bodies  # each once, in order
    assert (start["alarm"]["state"], end["alarm"]["state"]) == ("active", "ended")
    assert start["alarm"]["occurrenceId"] == end["alarm"]["occurrenceId"]
