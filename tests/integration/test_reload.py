"""SIGHUP: a valid new config replaces the running one, an invalid one changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from agent.config import load_config
from agent.runtime.reload import Runner
from simulators.ilert import IlertSimulator
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config

PRESSURE = """
[[alarms]]
name = "Pressure low"
variable = "plc.pressure"
condition = "<"
threshold = 2.0
severity = "medium"

[[webhooks]]"""


def states(ilert: IlertSimulator) -> list[tuple[str, str]]:
    return [(b["alarm"]["name"], b["alarm"]["state"]) for b in ilert.received]


async def test_reload_carries_unchanged_alarms_and_applies_changed_ones(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    text = CONFIG.replace("[[webhooks]]", PRESSURE, 1)
    path = write_config(tmp_path, text, port=machine.port, ilert=ilert.url, on_delay="1s")
    runner = Runner(path, load_config(path, environ={}))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await machine.hold(oil_temp=90.0, pressure=1.5)
        await wait_for(lambda: len(ilert.received) == 2, what="both alarms")
        await wait_for(lambda: runner.agent.store.pending_count() == 0, what="both delivered")
        first = runner.agent
        oil = next(s for s in first.engine.states if s.rule.name == "Oil temperature high")

        path.write_text(path.read_text().replace("threshold = 2.0", "threshold = 1.0"))
        assert await runner.reload()
        assert runner.agent is not first
        carried = next(
            s for s in runner.agent.engine.states if s.rule.name == "Oil temperature high"
        )
        assert carried is oil  # the same state object: occurrence, delays, window and all
        await wait_for(lambda: len(ilert.received) == 3, what="the changed alarm's end")
        assert sorted(states(ilert)[:2]) == [
            ("Oil temperature high", "active"),
            ("Pressure low", "active"),
        ]
        assert states(ilert)[2] == ("Pressure low", "ended")  # and no second oil start
        await machine.hold(oil_temp=70.0)
        await wait_for(lambda: len(ilert.received) == 4, what="the carried alarm's end")
        oil = [
            b["alarm"]["occurrenceId"]
            for b in ilert.received
            if b["alarm"]["name"] == "Oil temperature high"
        ]
        assert (
            len(oil) == 2
            and oil[0] == oil[1]
            and states(ilert)[3] == ("Oil temperature high", "ended")
        )
    finally:
        stop.set()
        await task


async def test_an_invalid_config_keeps_the_running_one(
    tmp_path: Path,
    machine: ModbusDeviceSimulator,
    ilert: IlertSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write_config(tmp_path, port=machine.port, ilert=ilert.url)
    runner = Runner(path, load_config(path, environ={}))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        first = runner.agent
        await wait_for(lambda: first.scheduler is not None, what="the agent running")
        path.write_text(path.read_text().replace('condition = ">"', 'condition = "hot"'))
        assert not await runner.reload()
        assert runner.agent is first and first.scheduler is not None and first.scheduler.running
        assert "reload: alarms[0] (Oil temperature high).condition: Input should be" in caplog.text
        assert "the running config stays" in caplog.text
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: ilert.received, what="the old config still at work")
    finally:
        stop.set()
        await task


async def test_sighup_reloads_a_running_process_and_json_logs_name_their_subject(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    path = write_config(tmp_path, port=machine.port, ilert=ilert.url)
    path.chmod(0o644)  # readable by everyone, with a webhook key inside: a warning
    log = tmp_path / "agent.log"
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(path), "--log-format", "json",
            stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        await machine.hold(oil_temp=92.0)
        await wait_for(lambda: ilert.received, timeout=30, what="an alarm")
        path.write_text(path.read_text().replace('name = "Test line"', 'name = "Test line 2"'))
        proc.send_signal(signal.SIGHUP)
        await wait_for(
            lambda: "reload: new config running" in log.read_text(), timeout=30, what="reload"
        )
        assert proc.returncode is None  # still running
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    started = next(line for line in lines if "started" in line["message"] and "alarm" in line)
    assert started["alarm"] == "Oil temperature high" and started["source"] == "plc"
    assert started["variable"] == "plc.oil_temp" and len(started["occurrence"]) == 12
    delivered = next(line for line in lines if "delivered" in line["message"])
    assert delivered["webhook"] == "ilert"
    assert any(
        "every user on this machine can read it: chmod 600" in line["message"] for line in lines
    )
    assert "il1ixon0demo" not in log.read_text()


async def test_a_reload_is_linear_in_the_number_of_alarms(
    tmp_path: Path, machine: ModbusDeviceSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each alarm is compiled a bounded number of times (it was once per alarm per alarm:
    a config of 10k alarms froze the event loop for minutes on SIGHUP)."""
    from agent.alarms.rules import AlarmRule

    many = "".join(
        f'[[alarms]]\nname = "Hot {i}"\nvariable = "plc.oil_temp"\ncondition = ">"\n'
        f"threshold = {100 + i}\n"
        for i in range(60)
    )
    text = CONFIG.replace("[[webhooks]]", many + "[[webhooks]]", 1)
    path = write_config(tmp_path, text, port=machine.port)
    runner = Runner(path, load_config(path, environ={}))
    compiled = 0
    original = AlarmRule.compile.__func__  # type: ignore[attr-defined]

    def counting(cls: type[AlarmRule], *args: object) -> AlarmRule:
        nonlocal compiled
        compiled += 1
        return original(cls, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(AlarmRule, "compile", classmethod(counting))
    try:
        assert await runner.reload()
    finally:
        await runner.agent.stop()
    assert compiled <= 4 * 61, compiled  # engine, and the definitions of old and new
