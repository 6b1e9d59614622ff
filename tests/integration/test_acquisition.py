"""Acquisition against a real pymodbus server on 127.0.0.1: plans, faults, isolation, offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config, load_config
from agent.runtime.service import Agent
from agent.sources.modbus.config import ModbusSource as Source
from agent.sources.modbus.poller import SourcePoller
from simulators.ilert import IlertSimulator
from simulators.modbus_device import FUNCTION_CODE, MACHINE, ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config


def source(port: int, variables: list[dict[str, Any]], **kw: Any) -> Source:
    fields = {"name": "dev", "host": "127.0.0.1", "port": port, "timeout": 1.0} | kw
    return Source.model_validate(fields | {"variables": variables})


def holding(name: str, address: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "register": "holding", "address": address, "type": "int"} | kw


@pytest.fixture
async def device() -> AsyncIterator[ModbusDeviceSimulator]:
    sim = ModbusDeviceSimulator(scenario="idle", holes=[("holding", 300, 5)])
    await sim.start()
    yield sim
    await sim.stop()


async def poll_once(poller: SourcePoller) -> Any:
    try:
        return await poller.poll()
    finally:
        poller.close()


async def test_one_request_per_planned_block(device: ModbusDeviceSimulator) -> None:
    variables = [
        holding("a", 100, width=32),
        holding("b", 110),  # hole of 8 <= max_gap: same request
        holding("c", 200),  # far away: a request of its own
        {"name": "d", "register": "input", "address": 0, "type": "int"},
        {"name": "e", "register": "coil", "address": 0, "type": "bool"},
        {"name": "f", "register": "coil", "address": 40, "type": "bool"},
    ]
    poller = SourcePoller(source(device.port, variables))
    result = await poll_once(poller)
    assert result.ok, result.errors
    assert set(result.values) == {f"dev.{n}" for n in "abcdef"}
    reads = [(code, address) for code, address, _ in device.requests]
    assert reads == [(1, 0), (3, 100), (3, 200), (4, 0)]
    assert result.requests == len(poller.blocks) == 4


async def test_gap_bridging_follows_max_gap(device: ModbusDeviceSimulator) -> None:
    variables = [holding("a", 100), holding("b", 105), holding("c", 120)]
    for max_gap, expected in ((0, 3), (4, 2), (20, 1)):
        device.requests.clear()
        result = await poll_once(SourcePoller(source(device.port, variables, max_gap=max_gap)))
        assert result.ok and len(result.values) == 3
        assert len(device.requests) == expected, (max_gap, device.requests)


async def test_refused_block_is_split_once_and_remembered(device: ModbusDeviceSimulator) -> None:
    # the device has no registers 300..304; the planner bridges that hole between b and c
    await device.server.async_setValues(1, 3, 298, [7, 8])  # type: ignore[union-attr]
    await device.server.async_setValues(1, 3, 307, [9])  # type: ignore[union-attr]
    variables = [holding("a", 298), holding("b", 299), holding("c", 307)]
    poller = SourcePoller(source(device.port, variables))
    assert len(poller.blocks) == 1
    first = await poller.poll()
    assert first.ok and first.values == {"dev.a": 7, "dev.b": 8, "dev.c": 9}  # nothing lost
    assert [(b.address, b.count) for b in poller.blocks] == [(298, 2), (307, 1)]
    assert poller.stats.splits == 1
    device.requests.clear()
    second = await poll_once(poller)
    assert second.ok and len(second.values) == 3
    assert [(a, n) for _, a, n in device.requests] == [(298, 2), (307, 1)]  # no refused read


async def test_exception_replies_are_counted_not_fatal(device: ModbusDeviceSimulator) -> None:
    poller = SourcePoller(source(device.port, [holding("a", 10), holding("b", 200)]))
    try:
        device.fault = 6  # device busy
        busy = await poller.poll()
        assert busy.answered and not busy.ok and busy.values == {}
        assert busy.errors[0] == "holding 10+1 (a): device answered device busy"
        assert poller.stats.errors["device busy"] == 2
        refused = await poller.poll()  # a single-variable block is not split, just reported
        assert len(refused.errors) == 2 and poller.stats.splits == 0
        device.fault = None
        assert (await poller.poll()).ok
    finally:
        poller.close()


async def test_illegal_address_on_a_lone_variable(device: ModbusDeviceSimulator) -> None:
    result = await poll_once(
        SourcePoller(source(device.port, [holding("ok", 10), holding("gone", 302)]))
    )
    assert result.values == {"dev.ok": 0}
    assert result.errors == ["holding 302+1 (gone): device answered illegal data address"]


def two_sources(first_port: int, second_port: int, tmp_path: Path, **first: Any) -> Config:
    text = CONFIG.replace("[[alarms]]", f"""
[[sources]]
name = "line2"
host = "127.0.0.1"
port = {second_port}
poll_interval = "100ms"
  [[sources.variables]]
  name = "oil_temp"
  register = "holding"
  address = 100
  type = "float"

[[alarms]]""", 1)  # fmt: skip
    fields: dict[str, Any] = {"port": first_port, "poll": "100ms", **first}
    return load_config(write_config(tmp_path, text, **fields), environ={})


async def test_a_hung_device_does_not_delay_another_source(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    hung = ModbusDeviceSimulator(scenario="idle", hang=True)
    await hung.start()
    config = two_sources(hung.port, machine.port, tmp_path)
    config = config.model_copy(
        update={
            "sources": [config.sources[0].model_copy(update={"timeout": 5.0}), config.sources[1]]
        }
    )
    agent = Agent(config)
    await agent.start()
    try:
        await wait_for(lambda: hung.requests, what="a request to the hung device")
        line2 = agent.pollers["line2"].stats
        cycles = line2.cycles
        await wait_for(lambda: line2.cycles >= cycles + 5, what="five polls of the healthy source")
        assert agent.pollers["plc"].stats.errors["no reply"] == 0  # still waiting on its reply
        assert agent.pollers["plc"].stats.skipped >= 1  # its overrun cycles are counted
        assert agent.values["line2.oil_temp"] == 65.0
    finally:
        await agent.stop(grace=0)
        await hung.stop()


async def test_stopped_and_restarted_device_raises_and_ends_offline_alarm(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    text = CONFIG.replace(
        'timeout = "1s"', 'timeout = "1s"\noffline_after = "300ms"\noffline_severity = "medium"'
    )
    config = load_config(
        write_config(tmp_path, text, port=machine.port, ilert=ilert.url), environ={}
    )
    agent = Agent(config)
    await agent.start()
    codes = lambda: [(m["alarm"]["name"], m["alarm"]["state"]) for m in ilert.received]  # noqa: E731
    try:
        await machine.hold(oil_temp=90.0)
        await wait_for(lambda: codes() == [("Oil temperature high", "active")], what="oil alarm")
        port = machine.port
        await machine.stop()
        await wait_for(lambda: len(ilert.received) == 2, what="offline alarm")
        offline = ilert.received[1]
        assert codes()[1] == ("Source plc offline", "active")
        assert offline["systemLabel"] == "alarm-medium"
        info = {i["type"]: i["value"] for i in offline["longContent"]["extraInformation"]}
        assert info["source"] == "plc" and info["value"] == "offline"
        assert "no answer for 0.3 s" in info["threshold"]

        machine.held["oil_temp"] = 70.0  # the machine cooled down while it was unreachable
        await machine.start(port=port)
        await wait_for(lambda: len(ilert.received) == 4, timeout=20, what="offline end and oil end")
        # both end in one cycle and are sent at once
        assert sorted(codes()[2:]) == [
            ("Oil temperature high", "ended"),
            ("Source plc offline", "ended"),
        ]
        [back] = [m for m in ilert.received[2:] if m["alarm"]["name"] == "Source plc offline"]
        assert back["alarm"]["occurrenceId"] == offline["alarm"]["occurrenceId"]
        assert agent.values["plc.oil_temp"] == 70.0
    finally:
        await agent.stop()


async def test_no_alarm_starts_or_ends_on_stale_values(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    config = load_config(write_config(tmp_path, port=machine.port, ilert=ilert.url), environ={})
    agent = Agent(config)
    await agent.start()
    try:
        await machine.hold(oil_temp=90.0)
        await wait_for(lambda: ilert.received, what="oil alarm")
        poller = agent.pollers["plc"]
        await machine.stop()
        failed = poller.stats.errors["not connected"] + poller.stats.errors["no reply"]
        await wait_for(
            lambda: (
                poller.stats.errors["not connected"] + poller.stats.errors["no reply"] >= failed + 3
            ),
            what="failed polls",
        )
        assert [s.rule.name for s in agent.engine.active()] == ["Oil temperature high"]
        assert len(ilert.received) == 1  # no end while the value is unknown
    finally:
        await agent.stop()


def test_machine_register_map_matches_the_default_config() -> None:
    from tests.conftest import REPO

    config = load_config(REPO / "agent.toml", environ={})
    for key, _, variable in config.variables():
        name = key.partition(".")[2]
        simulated = MACHINE.get(name) or MACHINE["fault_word"]
        assert variable.table == simulated.table and variable.address == simulated.address, key
        assert variable.table in FUNCTION_CODE


async def test_read_raw_shows_each_byte_order_with_the_agents_decoder(
    device: ModbusDeviceSimulator,
) -> None:
    """A float written CDAB reads right only in CDAB: the line a user looks for."""
    from agent.sources.modbus.decode import encode
    from agent.sources.modbus.raw import describe_range, describe_variable, parse_range, read_raw

    assert device.server is not None
    temp = Source.model_validate(
        {
            "name": "t",
            "host": "x",
            "variables": [holding("temp", 200, type="float", byte_order="CDAB")],
        }
    ).variables[0]
    await device.server.async_setValues(1, FUNCTION_CODE["holding"], 200, encode(temp, 84.25))
    src = source(device.port, [holding("temp", 200, type="float")])  # configured ABCD: wrong
    registers, result = await read_raw(src, parse_range("holding:200:2"))
    assert result.ok
    line = describe_variable(src.variables[0], registers, src.byte_order)
    assert line.startswith("temp  holding 200+2  8000 42A8  ABCD* ")
    assert "CDAB 84.25 |" in line
    [first, _] = describe_range(parse_range("holding:200:2"), registers)
    assert first.startswith("holding 200: 8000  u16 32768  i16 -32768") and "CDAB 84.25" in first
    with pytest.raises(ValueError, match="TABLE:ADDRESS"):
        parse_range("holding-200")
    with pytest.raises(ValueError, match="COUNT"):
        parse_range("holding:65535:2")


async def test_read_raw_command(
    machine: ModbusDeviceSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from agent import cli

    await machine.hold(oil_temp=65.0)
    path = str(write_config(tmp_path, port=machine.port))
    code = await asyncio.to_thread(
        cli.main, ["read", "--raw", "--range", "holding:100", "--config", path]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "  oil_temp  holding 100+2  4282 0000  ABCD* 65.0 degC | CDAB " in out
    assert "  motor_running  coil 0  " in out
    assert "  holding 100: 4282  u16 17026" in out
    code = await asyncio.to_thread(cli.main, ["read", "--range", "flags:1", "--config", path])
    assert code == cli.EXIT_CONFIG and "TABLE:ADDRESS" in capsys.readouterr().err
