"""What alarms cost: a transition end to end in the real process, then the engine alone.

    .venv/bin/python bench/alarms.py [--alarms 1000] [--cycles 400] [--rate 200] [--seconds 10]

End to end: `ixon-agent run` with ``--alarms`` alarms, one per uint16 register of a device
that rewrites ``--rate`` random registers a second with random words (threshold 32768, so
about half of the rewrites cross it: a start or an end each), polled every 100 ms, each
transition delivered to a local HTTP sink. Its CPU (from /proc) over ``--seconds`` with
the device quiet, then changing, three rounds: the difference, per message the sink
received, is what one transition costs: evaluation, message, outbox commit, claim, HTTP
send, delivery record. The median of the rounds is printed, and each round.
The floor beside it: a bare aiohttp POST of the same message to the same sink.

The engine alone (no IO):
1,000 alarms, each on its own variable, stepped by ``AlarmEngine.evaluate`` once per cycle
with every value changed (the worst case: nothing is skipped). Values swing across the
thresholds so starts and ends happen too. Three kinds of alarm: a plain comparison, one with
on/off delays and a deadband, and a two-input IXON formula. Then the common case: values
that did not change, which the engine skips.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from agent.alarms.engine import AlarmEngine
from agent.config import Config


def config(alarms: int, kind: str) -> Config:
    variables = [
        {"name": f"v{i}", "register": "holding", "address": i, "type": "float"}
        for i in range(alarms)
    ]
    variables.append({"name": "run", "register": "coil", "address": 0, "type": "bool"})

    def alarm(i: int) -> dict[str, Any]:
        base = {"name": f"a{i}", "severity": "low", "max_notifications": 1_000_000}
        if kind == "formula":
            return base | {"formula": f"$plc.v{i} 50 > $plc.run true == &&"}
        extra = {"on_delay": 0.5, "off_delay": 0.5, "deadband": 2.0} if kind == "delays" else {}
        return base | {"variable": f"plc.v{i}", "condition": ">", "threshold": 50.0} | extra

    return Config.model_validate(
        {
            "agent": {"name": "Bench", "public_id": "BenchAgent01"},
            "sources": [{"name": "plc", "host": "127.0.0.1", "variables": variables}],
            "alarms": [alarm(i) for i in range(alarms)],
        }
    )


def run(alarms: int, cycles: int, kind: str, changing: bool) -> tuple[float, int]:
    engine = AlarmEngine.from_config(config(alarms, kind))
    keys = [f"plc.v{i}" for i in range(alarms)]
    # precomputed inputs: cycle c puts value 40 + (c % 4) * 10 (40, 50, 60, 70) everywhere
    frames = [{k: 40.0 + (c % 4) * 10 + (i % 7) for i, k in enumerate(keys)} for c in range(4)]
    for frame in frames:
        frame["plc.run"] = True
    wall = datetime.now(UTC)
    transitions = 0
    start = time.process_time()
    for cycle in range(cycles):
        frame = frames[cycle % 4] if changing else frames[0]
        transitions += len(engine.evaluate("plc", frame, cycle * 0.25, wall))
        engine.take_dirty()
    return time.process_time() - start, transitions


def end_to_end(alarms: int, rate: int, seconds: float, rounds: int = 3) -> None:
    from harness import Agent, free_port, post_floor, received, receiver, switchable_device

    variables = "".join(
        f'  [[sources.variables]]\n  name = "v{i}"\n  register = "holding"\n  address = {i}\n'
        '  type = "int"\n  signed = false\n'
        for i in range(alarms)
    )
    rules = "".join(
        f'[[alarms]]\nname = "a{i}"\nvariable = "plc.v{i}"\ncondition = ">"\n'
        'threshold = 32768\nseverity = "low"\nmax_notifications = 1000000\n'
        for i in range(alarms)
    )
    costs, loads = [], []
    with switchable_device(alarms, rate) as (port, switch), receiver() as sink:
        text = (
            f'[agent]\nname = "Bench"\n[[sources]]\nname = "plc"\nhost = "127.0.0.1"\n'
            f'port = {port}\npoll_interval = "100ms"\ntimeout = "5s"\n{variables}{rules}'
            f'[[webhooks]]\nname = "sink"\nurl = "{sink}/hook"\n'
            f"[status]\nport = {free_port()}\n"
        )
        agent = Agent(text)
        try:
            agent.start()
            time.sleep(3.0)  # connected, first evaluation of everything, first sends

            def phase() -> tuple[float, float]:
                cpu0, got0, t0 = agent.cpu(), received(sink), time.perf_counter()
                time.sleep(seconds)
                cpu1, got1, t1 = agent.cpu(), received(sink), time.perf_counter()
                return (cpu1 - cpu0) / (t1 - t0), (got1 - got0) / (t1 - t0)

            for _ in range(rounds):  # quiet and changing side by side, so drift cancels
                quiet, _ = phase()
                switch()
                busy, per_s = phase()
                switch()
                costs.append((busy - quiet) / per_s)
                loads.append((quiet, busy, per_s))
        finally:
            agent.stop()
        floor = post_floor(sink)
    quiet, busy, per_s = (statistics.median(x) for x in zip(*loads, strict=True))
    print(
        f"end to end, `ixon-agent run`, {alarms} alarms at a 100 ms poll, {rate} register"
        f" rewrites/s: {per_s:.0f} transitions/s delivered"
    )
    print(f"  CPU quiet {quiet * 100:.1f}% of a core, changing {busy * 100:.1f}% (medians)")
    each = ", ".join(f"{c * 1000:.2f}" for c in costs)
    print(
        f"  one transition, end to end: {statistics.median(costs) * 1000:.3f} ms of CPU"
        f" (median of {rounds} rounds: {each})"
    )
    print(f"  floor: one bare aiohttp POST of such a message: {floor * 1000:.3f} ms of CPU")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alarms", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=400)
    parser.add_argument("--rate", type=int, default=200, help="register rewrites a second")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase; 3 rounds")
    args = parser.parse_args()
    end_to_end(args.alarms, args.rate, args.seconds)
    print(f"the engine alone: {args.alarms} alarms, {args.cycles} cycles, one core (CPU time)")
    for kind, changing in (("plain", True), ("delays", True), ("formula", True), ("plain", False)):
        used, transitions = run(args.alarms, args.cycles, kind, changing)
        evaluations = args.alarms * args.cycles
        what = f"{kind}, {'every value changed' if changing else 'values unchanged'}"
        print(
            f"  {what:<34} {evaluations / used:>12,.0f} evaluations/s"
            f"  ({used / args.cycles * 1000:6.2f} ms per cycle, {transitions} transitions)"
        )


if __name__ == "__main__":
    main()
