"""What the benches share: the real processes a user runs, each on a free port.

    device    a pymodbus server (the machine simulator's) with SIZE registers, idle, or
              changing CHANGE of its registers per second to random words
    receiver  an HTTP sink that answers 202 and counts what it got (GET /count, /bytes)
    agent     `python -m agent run --config FILE`, ready when systemd's READY=1 arrives on
              a notify socket (polling runs), measured from /proc

Nothing here is timed by the harness itself: each bench says what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PYTHON = sys.executable


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn(*args: str) -> tuple[subprocess.Popen[str], int]:
    """A helper process of this file; it prints its port first."""
    proc = subprocess.Popen([PYTHON, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"helper {args[0]} did not start")
    return proc, int(line)


@contextlib.contextmanager
def device(size: int, change: int = 0, seed: int = 1) -> Iterator[int]:
    """A Modbus device on a free port; yields the port."""
    proc, port = _spawn("device", str(size), str(change), str(seed))
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def switchable_device(size: int, change: int, seed: int = 1) -> Iterator[tuple[int, Any]]:
    """A Modbus device that starts quiet and rewrites ``change`` registers a second while
    switched on; yields its port and the switch (each call flips it: SIGUSR1)."""
    proc, port = _spawn("device", str(size), str(change), str(seed), "1")
    try:
        yield port, lambda: proc.send_signal(signal.SIGUSR1)
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """An HTTP sink on a free port; yields its URL."""
    proc, port = _spawn("receiver")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def received(url: str) -> int:
    import httpx

    return int(httpx.get(f"{url}/count", timeout=10).text)


def received_bytes(url: str) -> int:
    """Bytes of every body the sink has taken."""
    import httpx

    return int(httpx.get(f"{url}/bytes", timeout=10).text)


def post_floor(url: str, count: int = 2000) -> float:
    """CPU seconds one bare aiohttp POST of the sink's last message costs, sent one after
    another on a kept-alive connection: what a send costs before the agent adds anything."""
    import aiohttp

    async def run() -> float:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/last") as reply:
                body = await reply.read()
            headers = {"Content-Type": "application/json"}
            started = 0.0
            for i in range(count + 100):  # the first 100 warm up
                if i == 100:
                    started = time.process_time()
                async with session.post(f"{url}/hook", data=body, headers=headers) as reply:
                    await reply.read()
            return (time.process_time() - started) / count

    return asyncio.run(run())


class Agent:
    """`ixon-agent run` as a user starts it, with a notify socket to know when it is ready."""

    def __init__(self, config_text: str, workdir: Path | None = None) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="ixon-bench-"))
        self.config = self.dir / "agent.toml"
        self.config.write_text(config_text)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.dir / "notify.sock"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.wrapper: list[str] = []  # a command the agent runs under (strace ...)

    def start(self, timeout: float = 300.0) -> float:
        """Start it; returns the seconds until READY=1 (config loaded, polling started)."""
        env = os.environ | {"NOTIFY_SOCKET": str(self.dir / "notify.sock")}
        self.started = time.perf_counter()
        profile = os.environ.get("BENCH_PROFILE")  # a file: the agent runs under cProfile
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        self.proc = subprocess.Popen(
            [*self.wrapper, PYTHON, *prefix, "-m", "agent", "run", "--config", str(self.config)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "agent.log", "wb"),  # noqa: SIM115
        )
        self.notify.settimeout(timeout)
        while True:
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                raise RuntimeError(f"not ready in {timeout} s: {self.log()}") from None
            if "READY=1" in message:
                return time.perf_counter() - self.started

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return memory_mb(self.pid)

    def log(self) -> str:
        return (self.dir / "agent.log").read_text(errors="replace")[-2000:]

    def children(self) -> list[int]:
        """The processes the agent's process started (under a wrapper: the agent itself)."""
        found = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for child in self.children() if self.wrapper else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGTERM)  # strace would only let go of it
            if not self.wrapper:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()


def check_seconds(config: Path) -> float:
    """Wall time of `ixon-agent check` on a config file."""
    began = time.perf_counter()
    subprocess.run(
        [PYTHON, "-m", "agent", "check", "--config", str(config)],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


# -- the helper processes -----------------------------------------------------------------


async def _device(size: int, change: int, seed: int, paused: int = 0) -> None:
    sys.path.insert(0, str(REPO))
    from simulators.modbus_device import ModbusDeviceSimulator

    sim = ModbusDeviceSimulator(scenario="idle", size=size)
    port = await sim.start()
    if sim._task is not None:
        sim._task.cancel()  # the scenario writes nothing for "idle" anyway
    running = asyncio.Event()  # the switch (SIGUSR1), set before the port says "ready"
    if not paused:
        running.set()
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR1, lambda: running.clear() if running.is_set() else running.set()
    )
    print(port, flush=True)
    assert sim.server is not None
    rng = random.Random(seed)
    if not change:
        await asyncio.Event().wait()
    tick = 0.1  # CHANGE registers a second, in ten steps
    while True:
        await running.wait()
        for address in rng.sample(range(size), max(1, round(change * tick))):
            await sim.server.async_setValues(1, 3, address, [rng.randrange(0, 65536)])
        await asyncio.sleep(tick)


async def _receiver() -> None:
    from aiohttp import web

    count = 0
    size = 0
    last = b""

    async def hook(request: web.Request) -> web.Response:
        nonlocal count, last, size
        last = await request.read()
        count += 1
        size += len(last)
        return web.Response(status=202)

    async def tally(request: web.Request) -> web.Response:
        return web.Response(text=str(count))

    async def weight(request: web.Request) -> web.Response:
        return web.Response(text=str(size))

    async def latest(request: web.Request) -> web.Response:
        return web.Response(body=last, content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    app.router.add_get("/count", tally)
    app.router.add_get("/bytes", weight)
    app.router.add_get("/last", latest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["device", "receiver"])
    parser.add_argument("args", nargs="*", type=int)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.role == "device":
            asyncio.run(_device(*args.args))
        else:
            asyncio.run(_receiver())


if __name__ == "__main__":
    main()
