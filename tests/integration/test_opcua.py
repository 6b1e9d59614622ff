"""The OPC UA source against asyncua's own server on 127.0.0.1 (``simulators.opcua_server``):
values of every type, chunked reads counted server-side, bad nodes, restarts, namespaces
that move, security with pinned certificates, and servers that refuse or never answer."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("asyncua")  # the opcua extra; make test installs it

from asyncua import ua

from agent.config import Config, load_config
from agent.runtime.service import Agent
from agent.sources.opcua.certificate import ensure_identity, thumbprint
from agent.sources.opcua.config import OpcUaSource
from agent.sources.opcua.poller import OpcUaPoller
from simulators.ilert import IlertSimulator
from simulators.opcua_server import OpcUaMachine
from tests.conftest import ilert_webhook, wait_for

HEAD = """
[agent]
name = "OPC UA line"
state_dir = "state"

[[sources]]
name = "line1"
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:{port}/sim"
poll_interval = "100ms"
timeout = "1s"
offline_after = "1s"
{extra}
"""

VARIABLES = """
  [[sources.variables]]
  name = "oven_temp"
  node = "nsu=urn:acme:line1;s=Oven.Temp"
  type = "float"
  unit = "degC"

  [[sources.variables]]
  name = "count"
  node = "ns=2;i=1042"
  type = "int"

  [[sources.variables]]
  name = "pressure"
  node = "ns=2;s=Pressure"
  type = "float"
  factor = 0.01

  [[sources.variables]]
  name = "running"
  node = "ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63"
  type = "bool"

  [[sources.variables]]
  name = "recipe"
  node = "ns=2;b=UmVjaXBl"
  type = "str"
"""


def write(
    tmp_path: Path, port: int, body: str = VARIABLES, extra: str = "", tail: str = ""
) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(HEAD.format(port=port, extra=extra) + body + tail)
    return path


def source_of(config: Config) -> OpcUaSource:
    source = config.sources[0]
    assert isinstance(source, OpcUaSource)
    return source


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[OpcUaMachine]:
    machine = OpcUaMachine(load_config(write(tmp_path, 0), environ={}))
    await machine.start()
    yield machine
    await machine.stop()


def agent_config(tmp_path: Path, machine: OpcUaMachine, **kw: Any) -> Config:
    return load_config(write(tmp_path, machine.served["line1"].port, **kw), environ={})


async def test_a_value_of_every_type_and_a_scaled_one(tmp_path: Path, served: OpcUaMachine) -> None:
    served.constants = {
        "line1.oven_temp": 81.25,
        "line1.count": -70000,
        "line1.pressure": 2.5,
        "line1.running": True,
        "line1.recipe": "PET-0.5l",
    }
    await served.update()
    poller = OpcUaPoller(source_of(agent_config(tmp_path, served)))
    try:
        result = await poller.poll()
    finally:
        poller.close()
    assert result.ok, result.errors
    assert result.values == {
        "line1.oven_temp": 81.25,
        "line1.count": -70000,
        "line1.pressure": pytest.approx(2.5),
        "line1.running": True,
        "line1.recipe": "PET-0.5l",
    }
    assert isinstance(result.values["line1.count"], int)


async def test_25_nodes_with_max_nodes_per_read_10_are_3_reads_counted_by_the_server(
    tmp_path: Path,
) -> None:
    body = "".join(
        f'\n  [[sources.variables]]\n  name = "v{n}"\n  node = "ns=2;i={100 + n}"\n  type = "int"\n'
        for n in range(25)
    )
    machine = OpcUaMachine(load_config(write(tmp_path, 0, body), environ={}))
    await machine.start()
    try:
        served = machine.served["line1"]
        limit = served.server.get_node("i=11705")  # OperationLimits.MaxNodesPerRead
        await limit.write_value(ua.Variant(10, await limit.read_data_type_as_variant_type()))
        poller = OpcUaPoller(source_of(load_config(write(tmp_path, served.port, body), environ={})))
        try:
            await poller.poll()  # connects: reads the limit and the namespaces
            served.reads.clear()
            result = await poller.poll()
        finally:
            poller.close()
    finally:
        await machine.stop()
    assert result.ok and len(result.values) == 25
    assert served.reads == [10, 10, 5]  # what asyncua would send as one Read of 25
    assert result.requests == 3


async def test_a_bad_node_has_no_value_never_pages_and_the_others_go_on(
    tmp_path: Path, served: OpcUaMachine, ilert: IlertSimulator
) -> None:
    alarm = """
[[alarms]]
name = "Oven hot"
variable = "line1.oven_temp"
condition = ">"
threshold = 80.0
severity = "high"

[[alarms]]
name = "Oven cold"
variable = "line1.oven_temp"
condition = "<"
threshold = 10.0
"""
    alarm += ilert_webhook(ilert.url)

    served.constants = {"line1.oven_temp": 50.0, "line1.count": 7}
    served.bad = {"line1.oven_temp"}  # a broken sensor: BadSensorFailure
    await served.update()
    agent = Agent(agent_config(tmp_path, served, tail=alarm))
    await agent.start()
    try:
        poller = agent.pollers["line1"]
        await wait_for(lambda: poller.stats.errors["bad_status"] >= 3, what="bad reads")
        assert agent.values.get("line1.count") == 7  # the others go on
        assert "line1.oven_temp" not in agent.values  # no value, not zero
        served.bad = set()
        await wait_for(lambda: agent.values.get("line1.oven_temp") == 50.0, what="good again")
    finally:
        await agent.stop()
    assert ilert.received == []  # neither "cold" (a zero) nor the offline alarm


async def test_a_restart_on_the_same_port_raises_the_offline_alarm_then_recovers(
    tmp_path: Path, served: OpcUaMachine, ilert: IlertSimulator
) -> None:
    webhook = ilert_webhook(ilert.url)
    served.constants = {"line1.count": 1}
    await served.update()
    agent = Agent(agent_config(tmp_path, served, tail=webhook))
    await agent.start()
    try:
        await wait_for(lambda: agent.values.get("line1.count") == 1, what="the first value")
        await served.down("line1")  # the PLC is switched off
        await wait_for(lambda: len(ilert.received) == 1, timeout=15, what="the offline alarm")
        assert ilert.received[0]["shortContent"]["name"] == "Source line1 offline"
        served.constants = {"line1.count": 2}
        await served.up("line1")  # and on again, on the same port
        await wait_for(lambda: agent.values.get("line1.count") == 2, timeout=40, what="again")
        await wait_for(lambda: len(ilert.received) == 2, what="the offline alarm's end")
    finally:
        await agent.stop()
    assert ilert.received[1]["alarm"]["state"] == "ended"


async def test_nsu_follows_its_namespace_to_another_index_across_a_restart(
    tmp_path: Path, served: OpcUaMachine
) -> None:
    served.constants = {"line1.oven_temp": 20.0}
    await served.update()
    poller = OpcUaPoller(source_of(agent_config(tmp_path, served)))
    try:
        assert (await poller.poll()).values["line1.oven_temp"] == 20.0
        before = poller.node_ids[0]
        served.constants = {"line1.oven_temp": 21.0}
        await served.restart("line1", shift=3)  # three namespaces now come first
        for _ in range(100):  # the old session fails once, then a new one resolves nsu=
            result = await poller.poll()
            if result.values.get("line1.oven_temp") == 21.0:
                break
            await asyncio.sleep(0.05)  # (the backoff after the failure is under a second)
        assert result.values.get("line1.oven_temp") == 21.0, result.errors
        assert poller.node_ids[0] is not None and before is not None
        assert poller.node_ids[0].NamespaceIndex != before.NamespaceIndex  # it moved
    finally:
        poller.close()


@pytest.fixture
def server_identity(tmp_path: Path) -> tuple[Path, Path]:
    identity = ensure_identity(tmp_path / "server" / "cert.der", tmp_path / "server" / "key.pem")
    return identity.certificate, identity.private_key


SECURE = """security = "SignAndEncrypt"
policy = "{policy}"
server_certificate = "{pinned}"
"""


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes256Sha256RsaPss"])
async def test_sign_and_encrypt_with_a_pinned_server_certificate_and_a_kept_client_one(
    tmp_path: Path,
    server_identity: tuple[Path, Path],
    policy: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert, key = server_identity
    base = load_config(write(tmp_path, 0), environ={})
    machine = OpcUaMachine(base, certificate=cert, private_key=key)
    await machine.start()
    try:
        extra = SECURE.format(policy=policy, pinned=cert)
        config = load_config(write(tmp_path, machine.served["line1"].port, extra=extra), environ={})
        source = source_of(config)
        poller = OpcUaPoller(source)
        try:
            result = await poller.poll()
        finally:
            poller.close()
        assert result.ok, result.errors
        assert source.certificate.is_file()  # made at first start, under state_dir
        assert stat.S_IMODE(source.private_key.stat().st_mode) == 0o600
        made = source.certificate.read_bytes()
        again = OpcUaPoller(source)
        try:
            assert (await again.poll()).ok
        finally:
            again.close()
        assert source.certificate.read_bytes() == made  # reused, not made again
    finally:
        await machine.stop()
    from agent.cli import main

    path = tmp_path / "agent.toml"
    assert await asyncio.to_thread(main, ["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out  # what to enter in the PLC's trust list
    assert f"client certificate {source.certificate} (SHA-1 {thumbprint(made)})" in out


async def test_a_rejected_client_certificate_is_one_line_naming_the_server_and_the_fix(
    tmp_path: Path, server_identity: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = server_identity
    base = load_config(write(tmp_path, 0), environ={})
    machine = OpcUaMachine(base, certificate=cert, private_key=key, trusted=[])
    await machine.start()
    try:
        extra = SECURE.format(policy="Basic256Sha256", pinned=cert)
        source = source_of(
            load_config(write(tmp_path, machine.served["line1"].port, extra=extra), environ={})
        )
        poller = OpcUaPoller(source)
        with caplog.at_level(logging.WARNING, logger="agent.opcua"):
            try:
                result = await poller.poll()
            finally:
                poller.close()
    finally:
        await machine.stop()
    [error] = result.errors
    assert error.startswith("the server refused: it does not trust this agent's certificate")
    assert thumbprint(source.certificate.read_bytes()) in error
    assert not result.answered and result.values == {}
    [line] = [r.getMessage() for r in caplog.records if r.name == "agent.opcua"]
    assert "source line1" in line and "the server refused" in line


async def test_a_wrong_pinned_certificate_is_this_agents_refusal(
    tmp_path: Path, server_identity: tuple[Path, Path]
) -> None:
    cert, key = server_identity
    other = ensure_identity(tmp_path / "other" / "cert.der", tmp_path / "other" / "key.pem")
    base = load_config(write(tmp_path, 0), environ={})
    machine = OpcUaMachine(base, certificate=cert, private_key=key)
    await machine.start()
    try:
        extra = SECURE.format(policy="Basic256Sha256", pinned=other.certificate)
        source = source_of(
            load_config(write(tmp_path, machine.served["line1"].port, extra=extra), environ={})
        )
        poller = OpcUaPoller(source)
        try:
            result = await poller.poll()
        finally:
            poller.close()
    finally:
        await machine.stop()
    [error] = result.errors
    assert error.startswith("this agent refused the server: its certificate (SHA-1 ")
    assert other.thumbprint in error and result.values == {}


async def test_a_server_that_accepts_and_never_answers_times_out_and_backs_off(
    tmp_path: Path,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never a byte back

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poller = OpcUaPoller(source_of(load_config(write(tmp_path, port), environ={})))
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await poller.poll()
        took = loop.time() - started
        assert not result.answered and result.errors[0].startswith("cannot connect: no answer")
        assert took < 10  # bounded by the source's timeout, not hung
        again = await poller.poll()  # within the backoff: no new try
        assert again.errors == ["not connected; waiting to retry"]
    finally:
        poller.close()
        for writer in held:
            writer.close()
        server.close()


async def test_reads_that_are_never_answered_end_in_the_timeout(
    tmp_path: Path, served: OpcUaMachine
) -> None:
    poller = OpcUaPoller(source_of(agent_config(tmp_path, served)))
    try:
        assert (await poller.poll()).ok
        served.silent = {"line1"}  # the PLC hangs mid-session
        result = await poller.poll()
        assert result.errors and "no answer (timeout)" in result.errors[0]
        assert poller.client is None  # dropped whole: the next try is a new session
    finally:
        poller.close()


def test_the_opcua_example_passes_its_alarm_tests_in_simulated_time_and_live(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """examples/opcua.toml mixes an OPC UA source and a Modbus one in one formula; live,
    asyncua's server and pymodbus's serve them, each variable at its node or register."""
    from agent.cli import main
    from tests.conftest import REPO

    tests = str(REPO / "examples" / "opcua.test.toml")
    assert main(["test", tests]) == 0
    assert main(["test", tests, "--live"]) == 0, capsys.readouterr().out


async def test_check_read_json_and_browse_on_an_opcua_source(
    tmp_path: Path, served: OpcUaMachine, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from agent.cli import main

    served.constants = {"line1.oven_temp": 81.5, "line1.recipe": "PET"}
    await served.update()
    path = write(tmp_path, served.served["line1"].port, extra="max_nodes_per_read = 2\n")
    assert await asyncio.to_thread(main, ["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "source line1 (opcua opc.tcp://127.0.0.1:" in out
    assert "5 variable(s) in 3 request(s) per cycle" in out
    assert await asyncio.to_thread(main, ["read", "--config", str(path), "--json"]) == 0
    read = json.loads(capsys.readouterr().out)
    assert read["line1.oven_temp"] == 81.5 and read["line1.recipe"] == "PET"
    argv = ["browse", "--config", str(path), "--source", "line1"]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    [oven] = [line for line in out.splitlines() if "oven_temp" in line]
    assert oven.split()[1:] == ["oven_temp", "Double", "81.5"]
    assert oven.split()[0].endswith(";s=Oven.Temp")
    assert "is urn:acme:line1: nsu=urn:acme:line1;" in out
    assert "Server" not in out  # the server's own nodes are not the machine
    bad = await asyncio.to_thread(main, [*argv[:-1], "nope"])
    assert bad == 2 and "no opcua source 'nope'" in capsys.readouterr().err


async def test_a_hung_opcua_server_never_delays_a_modbus_source_beside_it(
    tmp_path: Path, served: OpcUaMachine
) -> None:
    from simulators.modbus_device import ModbusDeviceSimulator

    modbus = ModbusDeviceSimulator(scenario="idle")
    port = await modbus.start()
    meter = f"""
[[sources]]
name = "plc"
host = "127.0.0.1"
port = {port}
poll_interval = "100ms"
timeout = "1s"
  [[sources.variables]]
  name = "oil_temp"
  register = "holding"
  address = 100
  type = "float"

[status]
port = 0
"""
    served.silent = {"line1"}  # every Read held: the session is made, nothing comes back
    agent = Agent(agent_config(tmp_path, served, tail=meter))
    await agent.start()
    try:
        reads = served.served["line1"].reads
        await wait_for(lambda: reads, what="a Read held by the hung server")
        for value in (61.0, 62.0, 63.0):  # all within the OPC UA read's 1 s timeout
            await modbus.hold(oil_temp=value)
            await wait_for(lambda v=value: agent.values.get("plc.oil_temp") == v, what=f"{value}")  # type: ignore[misc]
        stats = agent.pollers["line1"].stats
        # (the namespace array is read at connect: that Read is held, so the connect fails)
        await wait_for(lambda: stats.failed >= 1, what="the held Read timing out")
        assert not any(key.startswith("line1.") for key in agent.values)
    finally:
        await agent.stop()
        await modbus.stop()
