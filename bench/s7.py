"""The S7 source, measured on the real `ixon-agent run` (issue 26's goals).

    .venv/bin/python bench/s7.py [--variables 300] [--seconds 20] [--rounds 2]

python-snap7's server (``simulators.s7_server``, a process of its own) holds ``--variables``
variables scattered over three DBs (ints, REALs, bits, a few STRINGs; holes of 0 to 120
bytes), 10 % of them changing a second. Printed:

- requests per cycle: the plan's, beside the coalescing minimum for its ranges (the items
  packed as tightly as the PDU allows: max(ranges / 20, reply bytes / PDU)) and beside one
  request per variable; and what the server counted in a cycle;
- CPU per variable per cycle of `ixon-agent run` (poll 1 s, 5 % of the variables in alarms,
  delivered to a local sink), beside the floor: a bare python-snap7 client process reading
  the same byte ranges with its public ``read_area`` once a second, decoding nothing.
  Goal: at most 1.5x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import PYTHON, REPO, Agent, cpu_seconds, free_port, received, receiver

KINDS = (
    ('type = "int"', "W", 2, 40),
    ('type = "float"', "D", 4, 30),
    ('type = "int"\n  signed = false', "D", 4, 10),
    ('type = "bool"', "X", 1, 15),
    ('type = "str"\n  length = 16', "B", 18, 5),
)


def config(n: int, port: int, sink: str, status: int, alarms: int = 0) -> str:
    rng = random.Random(11)
    weights = [k for k in KINDS for _ in range(k[3])]
    byte = {1: 0, 2: 0, 3: 0}
    lines = []
    floats = []
    for i in range(n):
        fields, size, width, _ = rng.choice(weights)
        db = 1 + i % 3
        byte[db] += rng.choice([0, 0, 0, 2, 6, 12, 40, 120])
        address = (
            f"DB{db}.DBX{byte[db]}.{rng.randint(0, 7)}"
            if size == "X"
            else f"DB{db}.DB{size}{byte[db]}"
        )
        byte[db] += width
        lines.append(
            f'\n  [[sources.variables]]\n  name = "v{i}"\n  address = "{address}"\n  {fields}\n'
        )
        if "float" in fields:
            floats.append(f"v{i}")
    text = f"""
[agent]
name = "S7 bench"
[[sources]]
name = "press"
protocol = "s7"
host = "127.0.0.1"
port = {port}
poll_interval = "1s"
{"".join(lines)}
[[webhooks]]
name = "sink"
url = "{sink}/hook"
[status]
port = {status}
"""
    for name in floats[:alarms]:
        text += (
            f'\n[[alarms]]\nname = "{name} high"\nvariable = "press.{name}"\ncondition = ">"\n'
            "threshold = 0.5\nmax_notifications = 1000000\n"
        )
    return text


async def _serve(path: Path, change: float) -> None:
    from agent.config import load_config
    from simulators.s7_server import S7Machine

    config = load_config(path, environ={})
    machine = S7Machine(config, free_ports=True, tick=1.0)
    variables = config.sources[0].variables
    rng = random.Random(3)
    values: dict[str, object] = {}

    def now(_t: float) -> dict[str, object]:
        for v in rng.sample(list(variables), int(len(variables) * change)):
            values[f"press.{v.name}"] = (
                rng.random() if v.type == "float" else rng.randint(0, 1000) if v.type == "int"
                else rng.random() < 0.5 if v.type == "bool" else f"s{rng.randint(0, 99)}"
            )  # fmt: skip
        return values

    machine.values = now  # type: ignore[assignment]
    await machine.start()
    print(machine.served["press"].port, flush=True)
    await asyncio.Event().wait()


def serve(path: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([PYTHON, __file__, "--serve", str(path)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the S7 server did not start")
    return proc, int(line)


def bare(port: int, path: Path, seconds: float) -> dict[str, float]:
    """The floor: python-snap7's client reading the plan's byte ranges, a read_area each."""
    from snap7.client import Client
    from snap7.type import Area

    from agent.config import load_config
    from agent.sources.s7.plan import plan_ranges

    source = load_config(path, environ={}).sources[0]
    ranges = plan_ranges(source.variables, 480, source.max_gap)  # type: ignore[attr-defined]
    areas = {"DB": Area.DB, "M": Area.MK, "I": Area.PE, "Q": Area.PA}
    client = Client()
    client.connect("127.0.0.1", 0, 1, port)
    cycles, started, cpu0 = 0, time.monotonic(), time.process_time()
    while time.monotonic() - started < seconds:
        for r in ranges:
            client.read_area(areas[r.area], r.db, r.start, r.size)
        cycles += 1
        time.sleep(max(0.0, started + cycles - time.monotonic()))
    used = time.process_time() - cpu0
    client.disconnect()
    return {"cpu": used, "cycles": cycles, "requests": len(ranges)}


def metric(status: str, name: str) -> float:
    import httpx

    text = httpx.get(f"{status}/metrics", timeout=10).text
    return sum(float(x) for x in re.findall(rf"^ixon_agent_{name}(?:\{{.*\}})? (\S+)$", text, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variables", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(Path(args.serve), 0.1))
        return
    if args.bare:
        print(json.dumps(bare(int(args.bare[0]), Path(args.bare[1]), float(args.bare[2]))))
        return
    from agent.config import load_config
    from agent.sources.s7.plan import ITEM_REPLY, MAX_ITEMS, plan_ranges, plan_reads

    n = args.variables
    with tempfile.TemporaryDirectory() as tmp, receiver() as sink:
        plain = Path(tmp) / "serve.toml"
        plain.write_text(config(n, 102, sink, 0))
        source = load_config(plain, environ={}).sources[0]
        ranges = plan_ranges(source.variables, 480, 16)  # type: ignore[attr-defined]
        reads = plan_reads(source.variables, 480, 16)  # type: ignore[attr-defined]
        reply = sum(ITEM_REPLY + r.size + r.size % 2 for r in ranges)
        floor = max(math.ceil(len(ranges) / MAX_ITEMS), math.ceil(reply / (480 - 14)))
        server, port = serve(plain)
        try:
            floors, agents, serving = [], [], []
            for _ in range(args.rounds):
                s0 = cpu_seconds(server.pid)
                argv = [PYTHON, __file__, "--bare", str(port), str(plain), str(args.seconds)]
                out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO)
                b = json.loads(out.stdout)
                floors.append(b["cpu"] / b["cycles"] / n * 1e6)
                status = free_port()
                agent = Agent(config(n, port, sink, status, alarms=n // 20))
                try:
                    agent.start()
                    time.sleep(3.0)
                    url = f"http://127.0.0.1:{status}"
                    c0, p0, r0 = (
                        agent.cpu(),
                        metric(url, "polls_total"),
                        metric(url, "requests_total"),
                    )
                    m0 = received(sink)
                    time.sleep(args.seconds)
                    c1, p1, r1 = (
                        agent.cpu(),
                        metric(url, "polls_total"),
                        metric(url, "requests_total"),
                    )
                    m1 = received(sink)
                    rss = agent.rss_mb()
                finally:
                    agent.stop()
                agents.append((c1 - c0) / (p1 - p0) / n * 1e6)
                per_cycle = (r1 - r0) / (p1 - p0)
                serving.append((cpu_seconds(server.pid) - s0) / (2 * args.seconds))
        finally:
            server.terminate()
            server.wait()
    floor_us, agent_us = statistics.median(floors), statistics.median(agents)
    ratios = ", ".join(f"{a / f:.2f}" for a, f in zip(agents, floors, strict=True))
    print(f"{n} S7 variables over 3 DBs (int, REAL, UDINT, bits, STRING[16]; holes 0 to 120 bytes),"
          f" PDU 480, 10 %/s changing, poll 1 s, {n // 20} alarms; {args.rounds} rounds of"
          f" {args.seconds:.0f} s (medians)")  # fmt: skip
    print(f"  requests per cycle: plan {len(reads)} ({len(ranges)} ranges); coalescing minimum"
          f" {floor}; one per variable {n}; the agent sent {per_cycle:.2f} a cycle"
          " (besides the CPU's mode, asked every 5 s)")  # fmt: skip
    print(
        f"  floor: bare python-snap7 read_area of the {len(ranges)} ranges"
        f"  {floor_us:7.2f} us/var/cycle"
    )
    print(f"  agent: ixon-agent run                              {agent_us:7.2f} us/var/cycle,"
          f" RSS {rss:.0f} MB, {(m1 - m0) / args.seconds:.1f} messages/s")  # fmt: skip
    print(f"  agent / floor: {agent_us / floor_us:.2f}x (goal <= 1.5x; per round: {ratios});"
          f" the server used {statistics.median(serving) * 100:.0f} % of a core")  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
