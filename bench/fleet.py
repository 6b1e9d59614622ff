"""A fleet fans in at ilert: N real ``ixon-agent run`` processes, each with its own ilert
key, 10 alarms and a heartbeat, against one ilert stand-in that enforces ilert's limits per
key in fixed one-minute windows (alert source 50 events, heartbeat 5 pings).

    .venv/bin/python bench/fleet.py [--agents 100] [--minutes 10] [--storm-at 5]

Each agent's machine (all served by one helper process) starts and ends each alarm about
once a minute, at a phase of its own, and in minute ``--storm-at`` every alarm of every
agent starts at the same second (and ends 30 s later). Printed: messages sent, received,
lost and dead-lettered; the share of 429 answers; the stand-in's peak and mean requests a
second (the stagger); p50/p99 from an alarm's start on the machine to its alert in ilert,
for high alarms in the storm and outside it; CPU and RSS per agent. About 14 minutes on 2
cores for 100 agents; every process it starts is stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.common.values import Value
from bench.harness import PYTHON, REPO, Agent, free_port

ALARMS = 10
SEVERITY = ["high", "high", "medium", "medium", "medium"] + ["low"] * 5
PERIOD, ACTIVE = 60, 30  # each alarm: active 30 s of every minute
STORM_QUIET, STORM_HOLD = 5, 30  # all quiet 5 s before the storm; it lasts 30 s


def phase(agent: int, alarm: int) -> float:
    """Seconds into the minute each alarm's cycle is shifted: spread over the minute, and
    off the whole second (an agent's polls, a second apart, then meet every phase)."""
    return (agent * 37 + alarm * 6) % PERIOD + (agent * 0.618 + alarm * 0.382) % 1.0


def value(agent: int, alarm: int, s: float, storm: float, end: float) -> int:
    """The machine's schedule: 1 while alarm ``alarm`` of ``agent`` should be active, ``s``
    seconds after the start (``storm``: when the storm begins; ``end``: all quiet after)."""
    if s < 0 or s >= end:
        return 0
    if storm - STORM_QUIET <= s < storm:
        return 0
    if storm <= s < storm + STORM_HOLD:
        return 1
    return 1 if (s + phase(agent, alarm)) % PERIOD < ACTIVE else 0


def rises(agent: int, alarm: int, storm: float, end: float) -> list[float]:
    """Seconds after the start at which the alarm's value goes from 0 to 1."""
    shift = phase(agent, alarm)
    found = [0.0] if value(agent, alarm, 0.0, storm, end) else []
    k = 1
    while (s := PERIOD * k - shift) < end:
        if s > 0 and not storm - STORM_QUIET <= s < storm + STORM_HOLD:
            found.append(s)
        k += 1
    return sorted([*found, storm])


def agent_config(i: int, ilert: str, status_port: int, modbus_port: int) -> str:
    text = f"""
[agent]
name = "Fleet {i:03d}"
state_dir = "state"

[[sources]]
name = "plc"
host = "127.0.0.1"
port = {modbus_port}
poll_interval = "1s"
timeout = "2s"
offline_after = "0s"
"""
    for j in range(ALARMS):
        text += (f'  [[sources.variables]]\n  name = "a{j}"\n  register = "holding"\n'
                 f'  address = {j}\n  type = "int"\n')  # fmt: skip
    for j in range(ALARMS):
        text += f'\n[[alarms]]\nname = "Alarm {j}"\nvariable = "plc.a{j}"\ncondition = ">"\n'
        text += f'threshold = 0\nseverity = "{SEVERITY[j]}"\nmax_notifications = 1000\n'
    return (
        text
        + f"""
[[webhooks]]
name = "ilert"
url = "{ilert}/api/v1/events/ixon/il1fleet{i:03d}"
user_id = "UsrWebhook01"

[heartbeat]
url = "{ilert}/api/heartbeats/il1hbt{i:03d}"
interval = "60s"

[status]
port = {status_port}
"""
    )


def ilert_config(agents: int) -> str:
    text = ""
    for i in range(agents):
        text += (f'[[sources]]\nname = "Fleet {i:03d}"\nkey = "il1fleet{i:03d}"\n'
                 'integration = "ixon"\nalert_key_template = "{{alarm.occurrenceId}}"\n'
                 f'[[heartbeats]]\nname = "Fleet {i:03d} heartbeat"\nkey = "il1hbt{i:03d}"\n'
                 "interval = 300\n")  # fmt: skip
    return text


@contextlib.contextmanager
def process(*args: str, log: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [PYTHON, *args], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=log.open("w"), text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def p50(values: list[float]) -> float:
    return median(values) if values else math.nan


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)]


def run(agents: int, minutes: float, storm_at: float) -> None:
    import httpx

    work = Path(tempfile.mkdtemp(prefix="ixon-fleet-"))
    (work / "ilert.toml").write_text(ilert_config(agents))
    end, storm = minutes * 60.0, storm_at * 60.0
    fleet: list[Agent] = []
    began = time.perf_counter()
    with (
        process(
            "-m",
            "simulators.ilert",
            "--port",
            "0",
            "--config",
            str(work / "ilert.toml"),
            log=work / "ilert.log",
        ) as ilert_proc,  # fmt: skip
        process(__file__, "machines", str(work), str(agents), log=work / "machines.log") as m,
    ):
        assert ilert_proc.stdout is not None and m.stdout is not None
        ilert = re.search(r"(http://\S+)", ilert_proc.stdout.readline()).group(1)  # type: ignore[union-attr]
        ports = json.loads(m.stdout.readline())
        status = [free_port() for _ in range(agents)]
        try:
            for i in range(agents):
                (work / f"a{i:03d}").mkdir()
                fleet.append(Agent(agent_config(i, ilert, status[i], ports[i]), work / f"a{i:03d}"))
            starting = [threading.Thread(target=a.start, kwargs={"timeout": 600}) for a in fleet]
            for thread in starting:
                thread.start()
            for thread in starting:
                thread.join()
            ready = time.perf_counter() - began
            t0 = time.time() + 3.0
            assert m.stdin is not None
            m.stdin.write(json.dumps({"t0": t0, "storm": storm, "end": end}) + "\n")
            m.stdin.flush()
            print(f"fleet: {agents} agents ready in {ready:.0f} s; {minutes:g} minutes of alarms"
                  f" from now, the storm in minute {storm_at:g}", flush=True)  # fmt: skip
            time.sleep(max(0.0, t0 + end - time.time()))
            # quiet from now: the last ends go out; then every outbox drains
            deadline = time.time() + 180
            texts: list[str] = []
            while time.time() < deadline:
                time.sleep(5)
                texts = [httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=10).text
                         for p in status]  # fmt: skip
                if sum(metric(t, "ixon_agent_outbox_pending") for t in texts) == 0:
                    break
            cpu = [a.cpu() for a in fleet]
            rss = [a.rss_mb() for a in fleet]
            stats = httpx.get(f"{ilert}/admin/stats", params={"since": t0 - 1}, timeout=60).json()
            (work / "stats.json").write_text(json.dumps(stats))  # to look at again
        finally:
            for a in fleet:
                a.stop()
    report(agents, t0, storm, end, texts, stats, cpu, rss)
    print(f"  whole bench: {time.perf_counter() - began:.0f} s")


def report(
    agents: int,
    t0: float,
    storm: float,
    end: float,
    texts: list[str],
    stats: dict[str, object],
    cpu: list[float],
    rss: list[float],
) -> None:
    sent = sum(metric(t, "ixon_agent_alarm_transitions_total") for t in texts)
    pending = sum(metric(t, "ixon_agent_outbox_pending") for t in texts)
    dead = sum(metric(t, "ixon_agent_outbox_dead") for t in texts)
    messages: list[dict[str, object]] = stats["messages"]  # type: ignore[assignment]
    unique = {(m["key"], m["occurrenceId"], m["state"]) for m in messages}
    lost = sent - len(unique) - pending
    throttled: dict[str, int] = stats["throttled"]  # type: ignore[assignment]
    refused = throttled["events"] + throttled["heartbeats"]
    arrivals: list[float] = stats["arrivals"]  # type: ignore[assignment]
    per_second = Counter(int(t - t0) for t in arrivals if t0 <= t < t0 + end)
    seconds = max(1, int(end))
    mean = sum(per_second.values()) / seconds
    peak = max(per_second.values(), default=0)
    # outside the storm, and away from the schedule's first and last seconds (every alarm
    # that is due active starts at once at the first, and all end at the last)
    calm = [
        per_second.get(s, 0)
        for s in range(10, seconds - 10)
        if not storm - STORM_QUIET - 2 <= s < storm + STORM_HOLD + 5
    ]
    print(f"  messages: {sent:.0f} sent, {len(unique)} received ({len(messages)} with"
          f" resends), {lost:.0f} lost, {dead:.0f} dead-lettered, {pending:.0f} still pending"
          "  (goal: 0 lost, 0 dead)")  # fmt: skip
    requests = int(stats["requests"])  # type: ignore[call-overload]
    print(f"  429: {refused} of {requests} requests ({refused / max(1, requests):.2%}; goal <= 1%)")
    calm_peak = max(calm, default=0)
    print(
        f"  stand-in requests a second: mean {mean:.1f}, peak {peak} in the storm"
        f" ({peak / max(mean, 1e-9):.0f}x the mean); outside it, peak {calm_peak}"
        f" ({calm_peak / max(mean, 1e-9):.1f}x)"
    )
    in_storm: list[float] = []
    outside: list[float] = []
    starts: dict[tuple[int, int], list[float]] = {}
    for m in messages:
        if m["state"] != "active" or m["severity"] != "high":
            continue
        i = int(str(m["key"]).removeprefix("il1fleet"))
        j = int(str(m["name"]).removeprefix("Alarm "))
        starts.setdefault((i, j), []).append(float(m["at"]))  # type: ignore[arg-type]
    for (i, j), received in starts.items():
        edges = rises(i, j, storm, end)
        for at in sorted(received):
            s = at - t0
            before = [e for e in edges if e <= s]
            if not before:
                continue
            latency = s - before[-1]
            (in_storm if before[-1] == storm else outside).append(latency)
    print(
        f"  high alarm start -> ilert alert: in the storm p50 {p50(in_storm):.2f} s,"
        f" p99 {percentile(in_storm, 0.99):.2f} s ({len(in_storm)} alerts); outside it"
        f" p50 {p50(outside):.2f} s, p99 {percentile(outside, 0.99):.2f} s ({len(outside)})"
    )
    print(f"  per agent: CPU {sum(cpu) / len(cpu):.1f} s mean, {max(cpu):.1f} s max over the run;"
          f" RSS {sum(rss) / len(rss):.0f} MB mean, {max(rss):.0f} MB max")  # fmt: skip


# -- the machines helper process ----------------------------------------------------------


async def machines(work: Path, agents: int) -> None:
    """Every agent's machine in this one process, on free ports: quiet until a line on
    stdin says when the schedule starts."""
    from agent.config import load_config
    from simulators.config_machine import ConfigMachine

    schedule: dict[str, float] = {}

    def values_of(i: int) -> Callable[[float], dict[str, Value]]:
        def values(_: float) -> dict[str, Value]:
            if not schedule:
                return {}
            s = time.time() - schedule["t0"]
            return {f"plc.a{j}": value(i, j, s, schedule["storm"], schedule["end"])
                    for j in range(ALARMS)}  # fmt: skip

        return values

    running = []
    draft = work / "draft.toml"
    for i in range(agents):
        draft.write_text(agent_config(i, "http://127.0.0.1:1", 1, 5020))
        machine = ConfigMachine(
            load_config(draft, environ={}), free_ports=True, tick=0.1,
            values=values_of(i),
        )  # fmt: skip
        await machine.start()
        running.append(machine)
    print(json.dumps([m.ports["plc"][1] for m in running]), flush=True)
    go = await asyncio.to_thread(sys.stdin.readline)  # when the schedule starts
    schedule.update(json.loads(go))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for machine in running:
        await machine.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "machines":
        asyncio.run(machines(Path(sys.argv[2]), int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--storm-at", type=float, default=5.0, help="the storm's minute")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(args.agents, args.minutes, args.storm_at)


if __name__ == "__main__":
    main()
