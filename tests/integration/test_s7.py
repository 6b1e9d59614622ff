"""The S7 source against python-snap7's server on 127.0.0.1 (``simulators.s7_server``): every
type and area, coalesced reads counted server-side, a missing DB, a CPU in STOP, a PDU
granted smaller, restarts, and a PLC that accepts and never answers."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import Config, load_config
from agent.runtime.service import Agent
from agent.sources.s7.config import S7Source
from agent.sources.s7.poller import S7Poller
from simulators.ilert import IlertSimulator
from simulators.s7_server import ModeServer, S7Machine
from tests.conftest import ilert_webhook, wait_for

HEAD = """
[agent]
name = "Press line"
state_dir = "state"

[[sources]]
name = "press"
protocol = "s7"
host = "127.0.0.1"
port = {port}
poll_interval = "100ms"
timeout = "1s"
offline_after = "1s"
{extra}
"""

#: (name, address, TOML fields, a value)
EVERY = [
    ("running", "DB10.DBX0.0", 'type = "bool"', True),
    ("door", "DB10.DBX0.5", 'type = "bool"', True),  # a bit in the middle of a byte
    ("stopped", "DB10.DBX0.6", 'type = "bool"', False),
    ("small", "DB10.DBB1", 'type = "int"', -100),
    ("level", "DB10.DBB2", 'type = "int"\n  signed = false', 200),
    ("speed", "DB10.DBW4", 'type = "int"', -12345),
    ("count", "DB10.DBW6", 'type = "int"\n  signed = false', 60000),
    ("total", "DB10.DBD8", 'type = "int"', -2_000_000_000),
    ("hours", "DB10.DBD12", 'type = "int"\n  signed = false', 4_000_000_000),
    ("temp", "DB10.DBD16", 'type = "float"', 81.5),
    ("energy", "DB10.DBB20", 'type = "int"\n  width = 64', -(2**40)),
    ("precise", "DB10.DBB28", 'type = "float"\n  width = 64', 1234.5678),
    ("pressure", "DB10.DBW36", 'type = "int"\n  factor = 0.01', 2.5),
    ("recipe", "DB11.DBB0", 'type = "str"\n  length = 20', "PET-0.5l"),  # shorter than 20
    ("flag", "M0.1", 'type = "bool"', True),
    ("merker", "MW10", 'type = "int"', 321),
    ("sensor", "E0.3", 'type = "bool"', True),  # German: E is I
    ("analog", "IW2", 'type = "int"', 27648),
    ("valve", "A1.7", 'type = "bool"', True),  # German: A is Q
    ("setpoint", "QD4", 'type = "float"', 12.25),
]


def variables(rows: list[tuple[str, str, str, Any]]) -> str:
    return "".join(
        f'\n  [[sources.variables]]\n  name = "{name}"\n  address = "{address}"\n  {fields}\n'
        for name, address, fields, _ in rows
    )


def write(tmp_path: Path, port: int, body: str, extra: str = "", tail: str = "") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(HEAD.format(port=port, extra=extra) + body + tail)
    return path


def source_of(config: Config, port: int | None = None) -> S7Source:
    source = config.sources[0]
    assert isinstance(source, S7Source)
    return source if port is None else source.on_loopback(port)


@pytest.fixture
async def plc(tmp_path: Path) -> AsyncIterator[S7Machine]:
    machine = S7Machine(
        load_config(write(tmp_path, 102, variables(EVERY)), environ={}), free_ports=True
    )
    machine.constants = {f"press.{name}": value for name, _, _, value in EVERY}
    await machine.start()
    yield machine
    await machine.stop()


def port_of(machine: S7Machine) -> int:
    return machine.served["press"].port


async def test_every_type_and_area_in_one_read(plc: S7Machine) -> None:
    poller = S7Poller(source_of(plc.config, port_of(plc)))
    try:
        result = await poller.poll()
    finally:
        poller.close()
    assert result.ok, result.errors
    expected = {f"press.{name}": value for name, _, _, value in EVERY}
    assert result.values == pytest.approx(expected)
    assert result.values["press.recipe"] == "PET-0.5l"
    assert isinstance(result.values["press.total"], int)
    server = plc.served["press"].server
    assert isinstance(server, ModeServer)
    assert server.requests == 1  # DB10, DB11, M, I and Q: five items in one read


async def test_100_scattered_db_variables_take_the_fewest_requests_counted_by_the_server(
    tmp_path: Path,
) -> None:
    rng = random.Random(5)
    rows, byte = [], 0
    for n in range(100):
        byte += rng.choice([0, 0, 2, 4, 30, 120])  # holes, some bridged and some not
        rows.append((f"v{n}", f"DB{1 + n % 3}.DBW{byte}", 'type = "int"', n))
        byte += 2
    machine = S7Machine(
        load_config(write(tmp_path, 102, variables(rows)), environ={}), free_ports=True
    )
    machine.constants = {f"press.{name}": value for name, _, _, value in rows}
    await machine.start()
    try:
        poller = S7Poller(source_of(machine.config, port_of(machine)))
        try:
            await poller.poll()  # connects, asks the CPU's mode
            server = machine.served["press"].server
            assert isinstance(server, ModeServer)
            before, items = server.requests, len(machine.served["press"].reads)
            result = await poller.poll()
        finally:
            poller.close()
        requests = server.requests - before
        ranges = len(machine.served["press"].reads) - items
    finally:
        await machine.stop()
    assert result.ok and len(result.values) == 100
    assert result.values["press.v99"] == 99
    assert requests == len(poller.reads) == result.requests
    assert requests <= 5 and ranges < 100  # beside 100 reads of one tag each
    assert sum(len(read) for read in poller.reads) == ranges  # every range read once


async def test_a_missing_db_neither_pages_nor_stops_the_others(
    tmp_path: Path, ilert: IlertSimulator
) -> None:
    rows = [EVERY[9], EVERY[13]]  # temp in DB10, recipe in DB11
    alarm = """
[[alarms]]
name = "Recipe unset"
variable = "press.recipe"
condition = "=="
threshold = ""
"""
    alarm += ilert_webhook(ilert.url)

    base = load_config(write(tmp_path, 102, variables(rows)), environ={})
    machine = S7Machine(base, free_ports=True, missing={"press": {11}})
    machine.constants = {"press.temp": 81.5}
    await machine.start()
    try:
        config = load_config(
            write(tmp_path, port_of(machine), variables(rows), tail=alarm), environ={}
        )
        agent = Agent(config)
        await agent.start()
        try:
            poller = agent.pollers["press"]
            await wait_for(
                lambda: poller.stats.errors["object does not exist"] >= 3, what="refusals"
            )
            assert agent.values.get("press.temp") == 81.5  # the other DB goes on
            assert "press.recipe" not in agent.values  # no value: not "" (which would page)
        finally:
            await agent.stop()
    finally:
        await machine.stop()
    assert ilert.received == []  # neither the recipe alarm nor the offline one


async def test_a_cpu_in_stop_gives_no_values_and_is_not_offline(plc: S7Machine) -> None:
    poller = S7Poller(source_of(plc.config, port_of(plc)))
    try:
        assert (await poller.poll()).ok
        plc.stop_cpu("press")
        poller.mode_at = -float("inf")  # (it asks every 5 s; the test does not wait)
        stopped = await poller.poll()
        assert stopped.answered and stopped.values == {}
        assert stopped.errors == ["the CPU is in STOP: its values are not taken"]
        assert poller.stats.errors["cpu_stop"] == 1
        plc.stop_cpu("press", stop=False)
        poller.mode_at = -float("inf")
        assert (await poller.poll()).values["press.temp"] == 81.5
    finally:
        poller.close()


async def test_a_pdu_granted_smaller_than_asked_is_planned_again(
    tmp_path: Path, plc: S7Machine
) -> None:
    config = load_config(
        write(tmp_path, port_of(plc), variables(EVERY), extra="pdu = 960"), environ={}
    )
    poller = S7Poller(source_of(config))
    assert poller.pdu == 960
    try:
        result = await poller.poll()
    finally:
        poller.close()
    assert result.ok and poller.pdu == 480  # python-snap7's server grants at most 480


async def test_a_plc_switched_off_raises_the_offline_alarm_then_recovers(
    tmp_path: Path, plc: S7Machine, ilert: IlertSimulator
) -> None:
    webhook = ilert_webhook(ilert.url)
    config = load_config(write(tmp_path, port_of(plc), variables(EVERY), tail=webhook), environ={})
    agent = Agent(config)
    await agent.start()
    try:
        await wait_for(lambda: agent.values.get("press.merker") == 321, what="the first value")
        plc.down("press")
        await wait_for(lambda: len(ilert.received) == 1, timeout=15, what="the offline alarm")
        assert ilert.received[0]["shortContent"]["name"] == "Source press offline"
        plc.constants["press.merker"] = 322
        await plc.up("press")
        await wait_for(lambda: agent.values.get("press.merker") == 322, timeout=40, what="again")
        await wait_for(lambda: len(ilert.received) == 2, what="the offline alarm's end")
    finally:
        await agent.stop()
    assert ilert.received[1]["alarm"]["state"] == "ended"


async def test_a_plc_that_accepts_and_never_answers_times_out_and_backs_off(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    accept = asyncio.get_running_loop().run_in_executor(
        None, lambda: held.append(listener.accept()[0])
    )
    port = listener.getsockname()[1]
    poller = S7Poller(
        source_of(load_config(write(tmp_path, port, variables(EVERY[:2])), environ={}))
    )
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await poller.poll()
        assert loop.time() - started < 10  # bounded by the timeout, not hung
        assert not result.answered and result.errors[0].startswith("cannot connect: no answer")
        assert (await poller.poll()).errors == ["not connected; waiting to retry"]
    finally:
        poller.close()
        await accept
        for conn in held:
            conn.close()
        listener.close()


async def test_check_and_read_raw_on_an_s7_source(
    tmp_path: Path, plc: S7Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    path = write(tmp_path, port_of(plc), variables(EVERY))
    assert await asyncio.to_thread(main, ["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "20 variable(s) in 1 request(s) per cycle (PDU 480; a request per variable would be 20)"
        in out
    )
    assert "DB10 0+38" in out
    assert await asyncio.to_thread(main, ["read", "--config", str(path), "--raw"]) == 0
    out = capsys.readouterr().out
    assert "recipe (DB11.DBB0, str) = PET-0.5l" in out
    assert "door (DB10.DBX0.5, bool) = true" in out
    assert "DB11 0+22" in out and "14 08 50 45 54" in out  # max 20, actual 8, "PET"
    assert await asyncio.to_thread(main, ["read", "--config", str(path), "--json"]) == 0
    read = json.loads(capsys.readouterr().out)
    assert read["press.setpoint"] == 12.25 and read["press.sensor"] is True


def test_the_s7_example_passes_its_alarm_tests_in_simulated_time_and_live(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agent.cli import main
    from tests.conftest import REPO

    tests = str(REPO / "examples" / "s7.test.toml")
    assert main(["test", tests]) == 0
    assert main(["test", tests, "--live"]) == 0, capsys.readouterr().out


async def test_a_plc_that_does_not_report_its_mode_is_read_all_the_same(
    plc: S7Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """python-snap7's own server has no SZL 0x0424, as a LOGO! or some CPs have none."""
    from snap7.server import Server

    monkeypatch.setattr(ModeServer, "_get_szl_data", Server._get_szl_data)
    poller = S7Poller(source_of(plc.config, port_of(plc)))
    try:
        first, second = await poller.poll(), await poller.poll()
    finally:
        poller.close()
    assert first.ok and second.ok and poller.mode_unknown and poller.failures == 0
    assert second.values["press.temp"] == 81.5
