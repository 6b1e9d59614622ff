"""Register change -> webhook arrival, at a 100 ms poll, on loopback.

    .venv/bin/python bench/latency.py [--trials 40] [--poll 0.1] [--hog]

The real `ixon-agent run` process between a pymodbus server (the machine simulator) and an
HTTP receiver, both in this process, on free ports. Each trial writes a value past an alarm
threshold (t0), and the receiver stamps the start message's arrival (t1); then the value
returns and the end message is timed the same way. The floor is a uniform wait for the next
poll (0..poll) plus the chain's own cost. ``--hog`` runs a busy loop per core beside it, as
on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web
from harness import Agent, free_port

from simulators._http import HttpServer
from simulators.modbus_device import ModbusDeviceSimulator

CONFIG = """
[agent]
name = "Bench"
[[sources]]
name = "plc"
host = "127.0.0.1"
port = {port}
poll_interval = {poll}
  [[sources.variables]]
  name = "oil_temp"
  register = "holding"
  address = 100
  type = "float"
[[alarms]]
name = "Oil hot"
variable = "plc.oil_temp"
condition = ">"
threshold = 80.0
severity = "high"
max_notifications = 100000  # the bench flaps on purpose
[[webhooks]]
name = "sink"
url = "{url}/hook"
[status]
port = {status}
"""


class Stamper(HttpServer):
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.event = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        super().__init__(app)

    async def handle(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        body = await request.json()
        self.arrivals.append((now, body["shortContent"]["code"]))
        self.event.set()
        return web.Response(status=202)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def busy_loops(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


async def main(trials: int, poll: float, hog: bool) -> None:
    machine = ModbusDeviceSimulator(scenario="idle")
    port = await machine.start()
    sink = Stamper()
    url = await sink.start()
    hogs = busy_loops(os.cpu_count() or 1) if hog else []
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent(CONFIG.format(port=port, poll=poll, url=url, status=free_port()), Path(tmp))
        await asyncio.to_thread(agent.start)
        await asyncio.sleep(1.0)  # connected, first cycles
        latencies: dict[str, list[float]] = {"alarm-active": [], "alarm-ended": []}
        try:
            for _ in range(trials):
                for value, code in ((90.0, "alarm-active"), (60.0, "alarm-ended")):
                    await asyncio.sleep(random.uniform(0.05, 0.05 + poll))  # random poll phase
                    sink.event.clear()
                    t0 = time.perf_counter()
                    await machine.hold(oil_temp=value)
                    await asyncio.wait_for(sink.event.wait(), timeout=10)
                    t1, got = sink.arrivals[-1]
                    assert got == code, (got, code)
                    latencies[code].append((t1 - t0) * 1000)
        finally:
            agent.stop()
            for busy in hogs:
                busy.kill()
            await sink.stop()
            await machine.stop()
    beside = f", beside {len(hogs)} busy loops" if hogs else ""
    print(
        f"register change -> webhook arrival, `ixon-agent run`, poll {poll * 1000:.0f} ms,"
        f" {trials} trials each{beside}; floor: 0 to {poll * 1000:.0f} ms waiting for the poll"
    )
    for code, samples in latencies.items():
        figures = [("p50", percentile(samples, 0.5)), ("p90", percentile(samples, 0.9))]
        figures += [("p99", percentile(samples, 0.99)), ("max", max(samples))]
        figures += [("mean", statistics.fmean(samples))]
        print(f"  {code:<13}" + "".join(f"  {name} {ms:6.1f} ms" for name, ms in figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--hog", action="store_true", help="a busy loop per core beside it")
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.poll, args.hog))
