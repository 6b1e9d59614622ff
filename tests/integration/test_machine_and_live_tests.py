"""The simulator of the user's own machine, read by the agent; and ``test --live`` agreeing
with simulated time on the same file."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.tools.alarmtest.report import compare
from agent.tools.alarmtest.simulate import simulate
from agent.tools.alarmtest.spec import load
from simulators.config_machine import ConfigMachine
from simulators.machines import scenario
from tests.conftest import REPO, wait_for
from workbench.live import run_test, widened

MACHINE = """
[agent]
name = "Line 7"
public_id = "Line70000007"

[[sources]]
name = "plc"
host = "127.0.0.1"
port = 5020
unit_id = 7
byte_order = "CDAB"
poll_interval = "200ms"
offline_after = "2s"
  [[sources.variables]]
  name = "oil_temp"
  register = "holding"
  address = 3000
  type = "float"
  [[sources.variables]]
  name = "abcd"
  register = "holding"
  address = 1500
  type = "float"
  byte_order = "ABCD"
  [[sources.variables]]
  name = "badc"
  register = "input"
  address = 2000
  type = "int"
  width = 32
  byte_order = "BADC"
  [[sources.variables]]
  name = "dcba"
  register = "holding"
  address = 40000
  type = "float"
  width = 64
  byte_order = "DCBA"
  [[sources.variables]]
  name = "tag"
  register = "holding"
  address = 65000
  type = "str"
  length = 10
  [[sources.variables]]
  name = "running"
  register = "coil"
  address = 1234
  type = "bool"

[[sources]]
name = "drive"
host = "127.0.0.1"
port = 5021
unit_id = 3
byte_order = "DCBA"
poll_interval = "200ms"
offline_after = "2s"
  [[sources.variables]]
  name = "speed"
  register = "input"
  address = 1200
  type = "int"
  factor = 0.1
  [[sources.variables]]
  name = "fault"
  register = "holding"
  address = 5000
  type = "bool"
  bit = 4

[[alarms]]
name = "Oil hot"
variable = "plc.oil_temp"
condition = ">"
threshold = 80.0
on_delay = "1s"
severity = "high"

[[alarms]]
name = "Drive fault"
variable = "drive.fault"
condition = "=="
threshold = true
severity = "medium"

[[webhooks]]
name = "ilert"
url = "https://api.ilert.com/api/v1/events/ixon/il1neverused"

[[webhooks]]
name = "events"
url = "https://api.ilert.com/api/events"
format = "ilert-events"
integration_key = "il1neverused2"
min_severity = "high"
"""

TESTS = """
config = "agent.toml"

[[tests]]
name = "every byte order and both units"
duration = "3s"
  [tests.values]
  "plc.oil_temp" = 71.25
  "plc.abcd" = -12.5
  "plc.badc" = -123456
  "plc.dcba" = 1234.5678
  "plc.tag" = "PKG-LINE-3"
  "plc.running" = true
  "drive.speed" = 1234.5
  "drive.fault" = true
  [[tests.expect]]
  alarm = "Drive fault"
  start = "0s"
  webhooks = ["ilert"]

[[tests]]
name = "oil overheats, the drive faults, the drive goes silent"
duration = "7s"
  [tests.values]
  "plc.oil_temp" = [["0s", 60.0], ["1s", 85.0], ["4s", 60.0]]
  "drive.fault" = [["0s", false], ["2s", true], ["3s", false]]
  [[tests.offline]]
  source = "drive"
  from = "4s"
  to = "20s"
  [[tests.expect]]
  alarm = "Oil hot"
  start = "2s"
  end = "4s"
  webhooks = ["ilert", "events"]
  [[tests.expect]]
  alarm = "Drive fault"
  start = "2s"
  end = "3s"
  [[tests.expect]]
  alarm = "Source drive offline"
  start = "5.8s"
"""


def write(tmp_path: Path) -> Path:
    (tmp_path / "agent.toml").write_text(MACHINE)
    path = tmp_path / "machine.test.toml"
    path.write_text(TESTS)
    return path


async def test_the_agent_reads_the_series_from_the_users_own_register_map(tmp_path: Path) -> None:
    file = load(write(tmp_path))
    test = file.tests[0]
    machine = ConfigMachine(file.config, free_ports=True)
    machine.values = scenario(test)
    ports = await machine.start()
    try:
        assert ports["plc"][1] != ports["drive"][1]  # each (host, port) its own server
        env = dict(os.environ)
        env["AGENT_SOURCES__0__PORT"] = str(ports["plc"][1])
        env["AGENT_SOURCES__1__PORT"] = str(ports["drive"][1])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "read", "--json", "--config",
            str(tmp_path / "agent.toml"), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await machine.stop()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {
        "plc.oil_temp": 71.25, "plc.abcd": -12.5, "plc.badc": -123456, "plc.dcba": 1234.5678,
        "plc.tag": "PKG-LINE-3", "plc.running": True, "drive.speed": 1234.5,
        "drive.fault": True,
    }  # fmt: skip


async def test_live_and_simulated_time_agree_on_the_same_file(tmp_path: Path) -> None:
    simulated = load(write(tmp_path))
    live = widened(simulated)
    for plain, wide in zip(simulated.tests, live.tests, strict=True):
        fast = compare(plain.name, plain.expect, simulate(simulated.config, plain)[0])
        real = compare(wide.name, wide.expect, await run_test(live, wide))
        assert fast.passed, (fast.missing, fast.unexpected)
        assert real.passed, (real.missing, real.unexpected)
        assert [o.alarm for _, o in fast.matched] == [o.alarm for _, o in real.matched]


async def test_demo_of_a_users_own_config_with_a_formula_on_its_own_register_map(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Every webhook goes to the stand-in (the config's point at api.ilert.com), the formula
    alarm is shown with its inputs, and nothing is written outside the demo's state."""
    import io

    from workbench.demo import demo

    path = write(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text(
        MACHINE
        + '\n[[alarms]]\nname = "Hot or faulty"\nformula = "$plc.oil_temp 80 > $drive.fault true == ||"\nseverity = "low"\n'
    )
    series = load(path).tests[1]
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    out = io.StringIO()
    view = await demo(4.5, 30.0, config, out=out, own_machine=True, series=series)
    text = out.getvalue()
    assert "plc on 127.0.0.1:" in text and "drive on 127.0.0.1:" in text, text
    assert "ALARM START [low] Hot or faulty: oil_temp = 85.0, fault = false" in text, text
    assert view.counts["messages delivered"] >= 4 and view.counts["messages retry"] == 0, text
    assert sorted(os.listdir(tmp_path)) == before


async def test_record_then_replay_round_trips_against_the_simulator(tmp_path: Path) -> None:
    from agent.tools.backtest.data import Reading, rows
    from agent.tools.backtest.record import record
    from agent.tools.backtest.replay import replay

    file = load(write(tmp_path))
    test = file.tests[1]  # oil over 80 from 1 s to 4 s; the drive faults from 2 s to 3 s
    machine = ConfigMachine(file.config, free_ports=True, bind="127.0.0.1")
    machine.values = scenario(test)
    ports = await machine.start()
    try:
        sources = [
            s.model_copy(update={"host": "127.0.0.1", "port": ports[s.name][1]})
            for s in file.config.sources
        ]
        config = file.config.model_copy(update={"sources": sources})
        out = tmp_path / "recorded.csv"
        progress = io.StringIO()
        written = await record(config, 4.6, out, progress=progress)
    finally:
        await machine.stop()
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["time", *(key for key, _, _ in config.variables())]
    assert written >= 30  # two sources, 200 ms, 4.6 s
    reading = Reading()
    found = replay(file.config, rows(out, file.config, reading))
    assert reading.unknown == [] and reading.skipped == 0
    assert found.alarms["Oil hot"].sent[("ilert", "start")] == 1
    assert found.alarms["Oil hot"].sent[("ilert", "end")] == 1
    assert found.alarms["Drive fault"].pages == 1
    assert found.alarms["Oil hot"].longest == pytest.approx(2.0, abs=0.6)  # 1 s + on_delay 1 s


async def test_the_packaging_machine_runs_as_a_process_and_record_reads_it(tmp_path: Path) -> None:
    """``python -m simulators.modbus_device`` as the README runs it, then ``ixon-agent
    record`` against it, interrupted: what was recorded is kept and replays."""
    import signal

    device = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.modbus_device", "--port", "0", "--period", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert device.stdout is not None
        line = (await asyncio.wait_for(device.stdout.readline(), 30)).decode()
        port = int(line.split(":")[1].split()[0])
        config = tmp_path / "agent.toml"
        config.write_text(
            (REPO / "agent.toml").read_text().replace("port = 5020", f"port = {port}")
        )
        out = tmp_path / "rec.csv"
        record = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "record", "--config", str(config), "--duration",
            "1h", "--out", str(out), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await wait_for(
            lambda: out.exists() and len(out.read_text().splitlines()) >= 6,
            timeout=30, what="five recorded rows",
        )  # fmt: skip
        record.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(record.communicate(), 30)
    finally:
        device.terminate()
        await device.wait()
    assert record.returncode == 0 and b"what was recorded is in" in err
    from agent.cli import main as cli_main

    code = cli_main(["replay", "--config", str(config), str(out), "--json"])
    assert code == 0
