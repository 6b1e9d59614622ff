"""systemd's service protocol against the real process: READY=1 once polling runs, watchdog
pings only while the poll loop is healthy, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from agent.config import load_config
from agent.runtime.service import Agent
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import wait_for, write_config


async def receive(sock: socket.socket, wanted: str, timeout: float = 30.0) -> list[str]:
    """Datagrams until one contains ``wanted``."""
    loop = asyncio.get_running_loop()
    got: list[str] = []
    async with asyncio.timeout(timeout):
        while not any(wanted in g for g in got):
            got.append((await loop.sock_recv(sock, 4096)).decode())
    return got


async def test_ready_watchdog_and_stopping_from_the_real_process(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    path = write_config(tmp_path, port=machine.port)
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    env = os.environ | {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "3000000"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(path), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first = await receive(sock, "READY=1")
        assert "STATUS=polling 1 source(s), 1 alarm(s)" in first[-1]
        await receive(sock, "WATCHDOG=1")
        await receive(sock, "WATCHDOG=1")  # again: every interval / 3
        proc.send_signal(signal.SIGTERM)
        await receive(sock, "STOPPING=1")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sock.close()


async def test_the_watchdog_is_not_told_once_polling_stops(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    """Cycles that stop starting (here: a paused scheduler) stop the pings, so systemd
    restarts an agent that no longer polls."""
    ticks: list[float] = []
    loop = asyncio.get_running_loop()
    path = write_config(tmp_path, port=machine.port, poll="100ms")
    agent = Agent(load_config(path, environ={}), on_healthy=lambda: ticks.append(loop.time()))
    await agent.start()
    try:
        await wait_for(lambda: len(ticks) >= 3, what="healthy ticks")
        assert agent.scheduler is not None
        agent.scheduler.pause()
        paused = loop.time()
        source = agent.config.sources[0]
        allowed = 3 * source.poll_interval + source.timeout * 2 + 1  # the watch's allowance
        await wait_for(
            lambda: loop.time() > paused + allowed + 2.5, timeout=allowed + 10, what="time"
        )
        assert max(ticks) < paused + allowed + 1.5  # the last ping came before it was overdue
    finally:
        await agent.stop()
