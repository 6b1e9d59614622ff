"""Acquisition cost of the real `ixon-agent run`, beside a bare pymodbus client (the floor).

    .venv/bin/python bench/acquisition.py [--variables 10000] [--alarms 1000] [--seconds 20]

One pymodbus device on a free port holds a scattered, mixed register map: int16, uint32,
float32 in each of the four byte orders, float64, bits of registers, coils; mostly packed,
with holes of 1-30 registers, so the planner bridges some gaps and not others. 10 % of its
registers change a second (random words). Then, for ``--seconds`` each, measured from /proc:

- floor: a bare pymodbus client process reading the same blocks the agent plans, once a
  second, decoding nothing;
- agent: `ixon-agent run` on that config (poll 1 s, ``--alarms`` alarms on int16 variables,
  each transition delivered to a local HTTP sink, status listener on), with its scheduler,
  outbox and delivery.

Printed: CPU per variable per cycle for each, their ratio, requests per cycle, RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
from harness import REPO, Agent, device, free_port, received, receiver

KINDS = (  # (weight, TOML fields, registers)
    (40, 'register = "holding"\n  type = "int"', 1),
    (15, 'register = "holding"\n  type = "int"\n  width = 32\n  signed = false', 2),
    (6, 'register = "holding"\n  type = "float"', 2),
    (6, 'register = "holding"\n  type = "float"\n  byte_order = "CDAB"', 2),
    (6, 'register = "input"\n  type = "float"\n  byte_order = "BADC"', 2),
    (7, 'register = "input"\n  type = "float"\n  byte_order = "DCBA"', 2),
    (5, 'register = "holding"\n  type = "float"\n  width = 64', 4),
    (10, 'register = "holding"\n  type = "bool"\n  bit = 5', 1),
    (5, 'register = "coil"\n  type = "bool"', 1),
)


#: registers per table a source may use: pymodbus's simulated device is slow to build
#: beyond about 10k (quadratic), so the map spreads over several sources on one device
SPAN = 9_900


def gap(rng: random.Random) -> int:
    """Registers left free before a variable: mostly none, some short holes the planner
    bridges (up to max_gap, 10), some longer ones it does not."""
    roll = rng.random()
    return 0 if roll < 0.7 else rng.randint(1, 5) if roll < 0.9 else rng.randint(6, 30)


def config_text(variables: int, alarms: int, port: int, sink: str) -> str:
    rng = random.Random(7)
    weights = [k[0] for k in KINDS]
    sources: list[list[str]] = []
    at: dict[str, int] = {}
    int16: list[str] = []
    for i in range(variables):
        _, fields, size = rng.choices(KINDS, weights)[0]
        table = re.search(r'register = "(\w+)"', fields).group(1)  # type: ignore[union-attr]
        address = at.get(table, 0) + gap(rng)
        if not sources or address + size > SPAN:  # a new source, from address 0 again
            sources.append([])
            at, address = {}, gap(rng)
        at[table] = address + size
        name = f"s{len(sources) - 1}.v{i}"
        sources[-1].append(
            f'  [[sources.variables]]\n  name = "v{i}"\n  {fields}\n  address = {address}\n'
        )
        if fields.endswith('type = "int"'):
            int16.append(name)
    text = '[agent]\nname = "Bench"\n'
    for n, lines in enumerate(sources):
        text += (
            f'[[sources]]\nname = "s{n}"\nhost = "127.0.0.1"\nport = {port}\n'
            'poll_interval = "1s"\ntimeout = "5s"\n' + "".join(lines)
        )
    text += "".join(
        f'[[alarms]]\nname = "a{n}"\nvariable = "{key}"\ncondition = ">"\nthreshold = 0\n'
        'severity = "low"\nmax_notifications = 1000000\n'
        for n, key in enumerate(int16[:alarms])
    )
    return (
        text + f'[[webhooks]]\nname = "sink"\nurl = "{sink}/hook"\n[status]\nport = {free_port()}\n'
    )


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def bare(port: int, config_path: str, seconds: float) -> dict[str, Any]:
    """The floor: the agent's planned reads with a plain pymodbus client, once a second."""
    from pymodbus.client import AsyncModbusTcpClient

    sys.path.insert(0, str(REPO))
    from agent.config import load_config
    from agent.sources.modbus.plan import plan_reads

    blocks = [
        block
        for source in load_config(config_path, environ={}).sources
        for block in plan_reads(source.variables, source.max_gap)
    ]
    readers = {
        "holding": "read_holding_registers",
        "input": "read_input_registers",
        "coil": "read_coils",
        "discrete_input": "read_discrete_inputs",
    }
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    assert await client.connect()

    async def cycle() -> None:
        for b in blocks:
            reply = await getattr(client, readers[b.table])(b.address, count=b.count, device_id=1)
            assert not reply.isError()

    await cycle()
    cycles, start, began = 0, cpu(), time.monotonic()
    while time.monotonic() - began < seconds:
        await cycle()
        cycles += 1
        await asyncio.sleep(max(0.0, began + cycles - time.monotonic()))
    used = cpu() - start
    client.close()
    return {"cpu": used, "cycles": cycles, "requests": len(blocks),
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def metric(status: str, name: str) -> float:
    """A counter summed over its labels (every source)."""
    text = httpx.get(f"{status}/metrics", timeout=10).text
    return sum(float(x) for x in re.findall(rf"^ixon_agent_{name}(?:\{{.*\}})? (\S+)$", text, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variables", type=int, default=10_000)
    parser.add_argument("--alarms", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        print(json.dumps(asyncio.run(bare(int(args.bare[0]), args.bare[1], args.seconds))))
        return
    n = args.variables
    floors: list[float] = []
    agents: list[dict[str, float]] = []
    with receiver() as sink, device(SPAN + 16, change=(SPAN + 16) // 10) as port:
        text = config_text(n, args.alarms, port, sink)
        sources = text.count("[[sources]]")
        for _ in range(args.rounds):  # interleaved: drift on the machine hits both alike
            agent = Agent(text)
            out = subprocess.run(
                [sys.executable, __file__, "--bare", str(port), str(agent.config),
                 "--seconds", str(args.seconds)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            floor = json.loads(out.stdout)
            floors.append(floor["cpu"] / floor["cycles"] / n * 1e6)
            agents.append(measure(agent, text, sink, sources, args.seconds))
    floor_us = statistics.median(floors)
    agent_us = statistics.median(a["us"] for a in agents)
    print(
        f"{n} variables, scattered and mixed (int16, uint32, float32 x 4 byte orders, float64,"
        f" bits, coils) in {sources} sources on one device, 10 %/s changing, poll 1 s;"
        f" {args.alarms} alarms; {args.rounds} rounds of {args.seconds:.0f} s each, interleaved"
        " (medians)"
    )
    print(f"{'':24}{'CPU us/var/cycle':>18}{'requests/cycle':>16}{'RSS MB':>8}")
    print(
        f"{'floor: bare pymodbus':<24}{floor_us:>18.2f}{floor['requests']:>16}{floor['rss']:>8.1f}"
    )
    last = agents[-1]
    requests, rss = last["requests"], last["rss"]
    print(f"{'agent: ixon-agent run':<24}{agent_us:>18.2f}{requests:>16.0f}{rss:>8.1f}")
    ratios = ", ".join(f"{a['us'] / f:.2f}" for a, f in zip(agents, floors, strict=True))
    print(
        f"agent / floor: {agent_us / floor_us:.2f}x (per round: {ratios});"
        f" {last['messages']:.0f} messages delivered per cycle"
    )


def measure(agent: Agent, text: str, sink: str, sources: int, seconds: float) -> dict[str, float]:
    """The running agent's CPU per variable per cycle, and what it did, over ``seconds``."""
    status = "http://127.0.0.1:" + re.findall(r"\[status\]\nport = (\d+)", text)[0]
    n = text.count("[[sources.variables]]")
    try:
        agent.start()
        time.sleep(3.0)  # connected, first evaluation of everything
        c0, m0 = agent.cpu(), received(sink)
        p0, r0 = metric(status, "polls_total"), metric(status, "requests_total")
        time.sleep(seconds)
        c1, m1 = agent.cpu(), received(sink)
        p1, r1 = metric(status, "polls_total"), metric(status, "requests_total")
        rss = agent.rss_mb()
    finally:
        agent.stop()
    cycles = (p1 - p0) / sources  # polls count per source; a cycle polls every source
    return {"us": (c1 - c0) / cycles / n * 1e6, "requests": (r1 - r0) / cycles, "rss": rss,
            "messages": (m1 - m0) / cycles}  # fmt: skip


if __name__ == "__main__":
    main()
