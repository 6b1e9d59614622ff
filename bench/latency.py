"""Register change -> webhook arrival, at a 100 ms poll, on loopback.

    .venv/bin/python bench/latency.py [--trials 40] [--poll 0.1]

A pymodbus server (the machine simulator), the agent and an HTTP receiver run in one process.
Each trial writes a value past an alarm threshold (t0), and the receiver stamps the start
message's arrival (t1); then the value returns and the end message is timed the same way.
The expected floor is a uniform wait for the next poll (0..poll) plus the chain's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web

from agent.config import load_config
from agent.runtime.service import Agent
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
enabled = false
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


async def main(trials: int, poll: float) -> None:
    machine = ModbusDeviceSimulator(scenario="idle")
    port = await machine.start()
    sink = Stamper()
    url = await sink.start()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.toml"
        path.write_text(CONFIG.format(port=port, poll=poll, url=url))
        agent = Agent(load_config(path, environ={}))
        await agent.start()
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
            await agent.stop()
            await sink.stop()
            await machine.stop()
    print(f"register change -> webhook arrival, poll {poll * 1000:.0f} ms, {trials} trials each")
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
    args = parser.parse_args()
    asyncio.run(main(args.trials, args.poll))
