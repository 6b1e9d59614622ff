"""Metrics, health, readiness and the status page, against a running agent."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent.config import load_config
from agent.runtime.service import Agent
from simulators.ilert import IlertSimulator
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config


async def start_agent(path: Path) -> Agent:
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    return agent


@pytest.fixture
async def running(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> AsyncIterator[Agent]:
    """An agent with timeouts a loaded CI machine cannot trip: what it sends is known."""
    text = CONFIG.replace('timeout = "1s"', 'timeout = "5s"')
    agent = await start_agent(write_config(tmp_path, text, port=machine.port, ilert=ilert.url))
    yield agent
    await agent.stop()


@pytest.fixture
async def quick_offline(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> AsyncIterator[Agent]:
    text = CONFIG.replace('timeout = "1s"', 'timeout = "1s"\noffline_after = "500ms"')
    agent = await start_agent(write_config(tmp_path, text, port=machine.port, ilert=ilert.url))
    yield agent
    await agent.stop()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    assert match, f"no sample {name}{{{wanted}}}"
    return float(match.group(1))


async def test_metrics_after_a_known_sequence(
    running: Agent, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    assert running.status is not None
    url = f"http://127.0.0.1:{running.status.port}"
    await machine.hold(oil_temp=90.0)
    await wait_for(lambda: len(ilert.received) == 1, what="the start")
    await machine.hold(oil_temp=70.0)
    await wait_for(lambda: len(ilert.received) == 2, what="the end")
    await wait_for(lambda: running.store.pending_count() == 0, what="an empty outbox")
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    oil = "Oil temperature high"
    assert sample(text, "ixon_agent_alarm_transitions_total", alarm=oil, kind="start") == 1
    assert sample(text, "ixon_agent_alarm_transitions_total", alarm=oil, kind="end") == 1
    assert sample(text, "ixon_agent_alarm_state", alarm=oil, state="normal") == 1
    assert sample(text, "ixon_agent_alarm_state", alarm=oil, state="active") == 0
    assert (
        sample(text, "ixon_agent_delivery_attempts_total", webhook="ilert", outcome="delivered")
        == 2
    )
    assert sample(text, "ixon_agent_delivery_duration_seconds_count", webhook="ilert") == 2
    assert (
        sample(text, "ixon_agent_outbox_pending") == 0
        and sample(text, "ixon_agent_outbox_dead") == 0
    )
    assert sample(text, "ixon_agent_source_up", source="plc") == 1
    ok = sample(text, "ixon_agent_polls_total", source="plc", result="ok")
    assert ok >= 2 and sample(text, "ixon_agent_polls_total", source="plc", result="failed") == 0
    assert sample(text, "ixon_agent_requests_total", source="plc") == pytest.approx(
        2 * ok, abs=2
    )  # 2 blocks a cycle
    assert sample(text, "ixon_agent_values_decoded_total", source="plc") == pytest.approx(
        3 * ok, abs=6
    )
    # a cycle may be under way while the page is scraped: counted in polls, not yet timed
    assert sample(text, "ixon_agent_poll_duration_seconds_count", source="plc") >= ok - 1
    assert "il1ixon0demo" not in text


async def test_health_and_readiness(quick_offline: Agent, machine: ModbusDeviceSimulator) -> None:
    running = quick_offline
    assert running.status is not None
    url = f"http://127.0.0.1:{running.status.port}"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/healthz")).json()["status"] == "ok"
        await wait_for(lambda: running.online("plc"), what="a first read")
        ready = await http.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "problems": []}
        await machine.stop()
        await wait_for(lambda: running.readiness(), what="not ready")
        not_ready = await http.get(f"{url}/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["problems"][0].startswith("source plc has not answered for")
        assert (await http.get(f"{url}/healthz")).status_code == 200  # alive all the same


async def test_a_busy_status_port_does_not_stop_the_agent(
    tmp_path: Path,
    machine: ModbusDeviceSimulator,
    ilert: IlertSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = CONFIG.replace("port = 0\n", f"port = {ilert.port}\n")  # taken by the ilert stand-in
    agent = Agent(
        load_config(write_config(tmp_path, text, port=machine.port, ilert=ilert.url), environ={})
    )
    await agent.start()
    try:
        await wait_for(lambda: "plc.oil_temp" in agent.values, what="polling anyway")
    finally:
        await agent.stop()
    assert f"status page: cannot listen on 127.0.0.1:{ilert.port}" in caplog.text


async def test_malformed_requests_are_one_log_line_now_and_then(
    running: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    assert running.status is not None
    caplog.set_level(logging.DEBUG)
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", running.status.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        await writer.drain()
        assert (await reader.read(100)).startswith(b"HTTP/1.0 400")
        writer.close()
    records = [r for r in caplog.records if r.name.startswith("agent.status.http")]
    assert not [r for r in records if r.exc_info or r.exc_text], "a traceback per request"
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert 1 <= len(warnings) <= 2  # the 1st and the 10th
    assert "Content-Length" in warnings[0].getMessage()


def _few_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


async def test_idle_connections_to_the_status_port_starve_nothing(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    """More idle connections than the process may open files: polling and delivery go on,
    the status page still answers, and the log stays small."""
    config = write_config(tmp_path, port=machine.port, ilert=ilert.url)
    log = tmp_path / "agent.log"
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(config),
            stdout=out, stderr=out, preexec_fn=_few_files,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    held: list[asyncio.StreamWriter] = []
    try:
        found = await wait_for(
            lambda: re.search(r"health on http://127\.0\.0\.1:(\d+)/", log.read_text()),
            timeout=30, what="the status port",
        )  # fmt: skip
        port = int(found.group(1))
        for _ in range(300):  # more than the 256 files the agent may have open
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append(writer)
        await machine.hold(oil_temp=93.0)
        await wait_for(lambda: ilert.received, timeout=30, what="an alarm delivered meanwhile")
        async with httpx.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert ready.status_code == 200

        # the listener keeps at most 64: the ones it dropped may still be closing (on a busy
        # machine, for a moment), so the count is taken once those have closed
        def files() -> int:
            return len(os.listdir(f"/proc/{proc.pid}/fd"))

        await wait_for(lambda: files() < 64 + 40, what=f"at most 64 kept ({files()} files open)")
    finally:
        for writer in held:
            writer.close()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    text = log.read_text()
    assert "out of system resource" not in text and "failed unexpectedly" not in text, text
    assert len(text.splitlines()) < 30, text


async def test_the_health_command_asks_the_configured_port(
    tmp_path: Path,
    machine: ModbusDeviceSimulator,
    ilert: IlertSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What the container's health check runs: ready, not ready and why, or not running."""
    import socket

    from agent import cli

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = CONFIG.replace('timeout = "1s"', 'timeout = "1s"\noffline_after = "500ms"')
    text = text.replace("[status]\nport = 0", f"[status]\nport = {port}")
    path = write_config(tmp_path, text, port=machine.port, ilert=ilert.url)
    args = ["health", "--config", str(path)]
    agent = await start_agent(path)
    try:
        await wait_for(lambda: agent.online("plc"), what="the first answer")
        assert await asyncio.to_thread(cli.main, args) == 0
        assert capsys.readouterr().out == f"http://127.0.0.1:{port}/readyz: ok\n"
        await machine.stop()
        await wait_for(lambda: agent.readiness(), what="not ready")
        assert await asyncio.to_thread(cli.main, args) == 1
        assert "/readyz: not ready: source plc has not answered for" in capsys.readouterr().out
        assert await asyncio.to_thread(cli.main, [*args, "--live"]) == 0
    finally:
        await agent.stop()
    assert await asyncio.to_thread(cli.main, args) == 1
    assert "no answer (ConnectError): is the agent running?" in capsys.readouterr().out
