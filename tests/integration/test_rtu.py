"""Modbus RTU over a virtual serial pair: two ptys bridged in a thread, like a null-modem cable."""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.config import load_config
from agent.runtime.service import Agent
from tests.conftest import wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs POSIX ptys")


#: unit ids with no device on the bus: the "cable" drops requests to them, so they stay
#: silent as on a real RS-485 line (pymodbus's simulator would answer for them)
ABSENT_UNITS = {3}


@pytest.fixture
def serial_pair() -> Iterator[tuple[str, str]]:
    """Two tty paths (device side, agent side); bytes written to one come out of the other."""
    masters, paths = [], []
    for _ in range(2):
        master, slave = os.openpty()
        tty.setraw(slave)
        masters.append(master)
        paths.append((os.ttyname(slave), slave))
    stop = threading.Event()

    def bridge() -> None:
        while not stop.is_set():
            ready, _, _ = select.select(masters, [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if fd == masters[1] and data[:1] and data[0] in ABSENT_UNITS:
                    continue  # a request to a unit that is not on the bus
                os.write(masters[1] if fd == masters[0] else masters[0], data)

    thread = threading.Thread(target=bridge, daemon=True, name="pty-bridge")
    thread.start()
    yield paths[0][0], paths[1][0]
    stop.set()
    thread.join(timeout=2)
    for fd in masters + [slave for _, slave in paths]:
        os.close(fd)


def unit(unit_id: int) -> SimDevice:
    registers = [SimData(0, count=10, values=unit_id * 100, datatype=DataType.REGISTERS)]
    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    return SimDevice(id=unit_id, simdata=(bits, list(bits), registers, list(registers)))


@pytest.fixture
async def bus(serial_pair: tuple[str, str]) -> AsyncIterator[str]:
    """Units 1 and 2 answer on one side of the pair; the agent gets the other side's path."""
    device_side, agent_side = serial_pair
    server = ModbusSerialServer([unit(1), unit(2)], port=device_side, baudrate=115200)
    await server.serve_forever(background=True)
    yield agent_side
    await server.shutdown()


def rtu_config(tmp_path: Path, port: str) -> Path:
    sources = "".join(
        f"""
[[sources]]
name = "unit{n}"
protocol = "modbus-rtu"
serial_port = "{port}"
baudrate = 115200
unit_id = {n}
poll_interval = "100ms"
timeout = "300ms"
offline_after = 0
  [[sources.variables]]
  name = "speed"
  register = "holding"
  address = 0
  type = "int"
"""
        for n in (1, 2, 3)
    )
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\nname = "RTU line"\nstate_dir = "state"\n[status]\nenabled = false\n{sources}'
    )
    return path


async def test_units_on_one_port_share_a_link_and_a_dead_unit_is_isolated(
    tmp_path: Path, bus: str, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent(load_config(rtu_config(tmp_path, bus), environ={}))
    links = {id(p.link) for p in agent.pollers.values()}
    assert len(links) == 1  # one serial port, one client, one lock
    await agent.start()
    try:
        await wait_for(lambda: agent.values.get("unit1.speed") == 100, what="unit 1")
        await wait_for(lambda: agent.values.get("unit2.speed") == 200, what="unit 2")
        dead = agent.pollers["unit3"].stats
        await wait_for(lambda: dead.errors["no reply"] >= 2, what="unit 3 timing out twice")
        healthy = agent.pollers["unit1"].stats
        replies = healthy.replies
        await wait_for(lambda: healthy.replies >= replies + 5, what="unit 1 still answering")
        assert "unit3.speed" not in agent.values
    finally:
        await agent.stop(grace=0)
    assert "poll cycle failed" not in caplog.text  # every fault was handled where it happened


async def test_rtu_over_tcp_reads_the_units_behind_a_device_server_on_one_connection(
    tmp_path: Path,
) -> None:
    """A serial device server in transparent mode: RTU frames (CRC, no transaction id) on a
    TCP connection, the units behind it taking turns on its line (pymodbus's server with
    the RTU framer on TCP stands in for it)."""
    server = ModbusTcpServer([unit(1), unit(2)], framer=FramerType.RTU, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    sources = "".join(
        f"""
[[sources]]
name = "unit{n}"
protocol = "modbus-rtu-over-tcp"
host = "127.0.0.1"
port = {port}
unit_id = {n}
poll_interval = "100ms"
timeout = "1s"
  [[sources.variables]]
  name = "speed"
  register = "holding"
  address = 0
  type = "int"
"""
        for n in (1, 2)
    )
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nname = "Gateway"\nstate_dir = "state"\n{sources}')
    agent = Agent(load_config(path, environ={}))
    assert len({id(p.link) for p in agent.pollers.values()}) == 1  # one connection, one lock
    await agent.start()
    try:
        await wait_for(lambda: agent.values.get("unit1.speed") == 100, what="unit 1")
        await wait_for(lambda: agent.values.get("unit2.speed") == 200, what="unit 2")
        first = agent.pollers["unit1"].stats
        await wait_for(lambda: first.replies >= 5, what="five replies from unit 1")
        assert sum(first.errors.values()) == 0  # every RTU reply matched its request
    finally:
        await agent.stop(grace=0)
        await server.shutdown()  # type: ignore[no-untyped-call]
