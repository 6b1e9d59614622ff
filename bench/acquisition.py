"""Acquisition cost: the agent's CPU per polled tag beside a bare pymodbus client.

    .venv/bin/python bench/acquisition.py [--tags 10000] [--alarms 1000] [--cycles 40]

Three processes on loopback: a pymodbus server holding ``--tags`` contiguous int16 registers
(10% of them change between cycles), then, one after the other,
  - bare:  a pymodbus client doing the same block reads the agent plans (125 registers each),
  - agent: the agent's real cycle (plan, read, decode, change detection, alarm evaluation,
           message building) with one int16 variable per register and ``--alarms`` alarms.
Each client process reports its CPU time (user + system) per polled tag and its peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from simulators.modbus_device import ModbusDeviceSimulator

UNIT = 1


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def serve(tags: int) -> None:
    """The device: prints its port, then changes 10% of the registers every 50 ms."""
    device = ModbusDeviceSimulator(scenario="idle", size=tags + 10)
    port = await device.start()
    print(port, flush=True)
    assert device.server is not None
    rng = random.Random(1)
    while True:
        for address in rng.sample(range(tags), tags // 10):
            await device.server.async_setValues(UNIT, 3, address, [rng.randrange(0, 1000)])
        await asyncio.sleep(0.05)


def config(port: int, tags: int, alarms: int) -> Any:
    from agent.config import Config

    variables = [
        {"name": f"t{i}", "register": "holding", "address": i, "type": "int"} for i in range(tags)
    ]
    step = max(1, tags // max(1, alarms))
    return Config.model_validate(
        {
            "agent": {"name": "Bench", "state_dir": tempfile.mkdtemp(prefix="ixon-bench-")},
            "sources": [
                {"name": "bench", "host": "127.0.0.1", "port": port, "variables": variables}
            ],
            "alarms": [
                {
                    "name": f"a{i}",
                    "variable": f"bench.t{i * step}",
                    "condition": ">",
                    "threshold": 900,
                    "severity": "low",
                }
                for i in range(alarms)
            ],
            "webhooks": [{"name": "sink", "url": "http://127.0.0.1:9/never"}],
            "status": {"enabled": False},
        }
    )


async def run_bare(port: int, tags: int, cycles: int) -> dict[str, Any]:
    from agent.sources.modbus.plan import plan_reads

    blocks = plan_reads(config(port, tags, 0).sources[0].variables)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    assert await client.connect()
    await client.read_holding_registers(0, count=1, device_id=UNIT)  # warm up
    start, wall = cpu(), time.perf_counter()
    for _ in range(cycles):
        for block in blocks:
            reply = await client.read_holding_registers(
                block.address, count=block.count, device_id=UNIT
            )
            assert not reply.isError()
    used, elapsed = cpu() - start, time.perf_counter() - wall
    client.close()
    return {"cpu_s": used, "wall_s": elapsed, "requests": len(blocks), "rss_mb": peak_rss_mb()}


async def run_agent(port: int, tags: int, alarms: int, cycles: int) -> dict[str, Any]:
    from agent.runtime.service import Agent

    agent = Agent(config(port, tags, alarms))
    await agent._cycle("bench")  # warm up: connect, first evaluation of everything
    poller = agent.pollers["bench"]
    requests = poller.stats.requests
    start, wall = cpu(), time.perf_counter()
    for _ in range(cycles):
        await agent._cycle("bench")
    used, elapsed = cpu() - start, time.perf_counter() - wall
    per_cycle = (poller.stats.requests - requests) / cycles
    assert len(agent.values) == tags and not poller.stats.errors, poller.stats.errors
    queued = agent.store.pending_count()
    await agent.stop(grace=0)
    return {
        "cpu_s": used,
        "wall_s": elapsed,
        "requests": per_cycle,
        "rss_mb": peak_rss_mb(),
        "messages": queued,
    }


def child(mode: str, *args: object) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, f"--{mode}", *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--alarms", type=int, default=1_000)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--agent", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.tags))
        return
    if args.bare:
        print(json.dumps(asyncio.run(run_bare(args.bare, args.tags, args.cycles))))
        return
    if args.agent:
        result = asyncio.run(run_agent(args.agent, args.tags, args.alarms, args.cycles))
        print(json.dumps(result))
        return

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--tags", str(args.tags)],
        stdout=subprocess.PIPE,
        text=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "agent": []}
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        common = ("--tags", args.tags, "--cycles", args.cycles)
        for _ in range(args.rounds):  # interleaved, so drift on the machine hits both alike
            runs["bare"].append(child("bare", port, *common))
            runs["agent"].append(child("agent", port, *common, "--alarms", args.alarms))
    finally:
        server.terminate()
        server.wait()
    polled = args.tags * args.cycles
    print(
        f"{args.tags} int16 tags, contiguous; {args.alarms} alarms;"
        f" {args.rounds} rounds of {args.cycles} cycles (median of rounds)"
    )
    print(f"{'':8}{'requests/cycle':>15}{'CPU us/tag':>12}{'ms/cycle':>10}{'peak RSS':>11}")
    median: dict[str, dict[str, float]] = {}
    for name, results in runs.items():
        median[name] = {k: statistics.median(r[k] for r in results) for k in results[0]}
        m = median[name]
        print(
            f"{name:<8}{m['requests']:>15.0f}{m['cpu_s'] / polled * 1e6:>12.2f}"
            f"{m['wall_s'] / args.cycles * 1000:>10.1f}{m['rss_mb']:>8.1f} MB"
        )
    ratios = sorted(
        a["cpu_s"] / b["cpu_s"] for a, b in zip(runs["agent"], runs["bare"], strict=True)
    )
    print(
        f"agent / bare CPU per tag: {median['agent']['cpu_s'] / median['bare']['cpu_s']:.2f}x"
        f" (per round: {', '.join(f'{r:.2f}' for r in ratios)});"
        f" requests per cycle {median['agent']['requests']:.0f},"
        f" planner minimum {median['bare']['requests']:.0f}"
    )


if __name__ == "__main__":
    main()
