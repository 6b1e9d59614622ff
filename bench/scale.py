"""How the agent scales with its config: `check` time, startup time, CPU per poll cycle and
memory of the real `ixon-agent run`, for a grid of (variables, alarms).

    .venv/bin/python bench/scale.py [--grid 10/10,1k/10,...] [--seconds 5]

Per point: a config file with VARIABLES int16 holding registers (at most 10k per source,
all sources served by one pymodbus device on a free port) and ALARMS alarms spread over
them (thresholds never crossed: this measures size, not transitions), a webhook to a local
sink, the status listener on. Startup is from the process start to systemd's READY=1 (the
config loaded and checked, the state database open, polling started). CPU per cycle is the
process's CPU over ``--seconds`` of steady polling at 1 s, per cycle; RSS is read then.
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import Agent, check_seconds, device, free_port, receiver

PER_SOURCE = 10_000
DEFAULT_GRID = "10/10,1k/10,10k/10,50k/10,10k/1k,10k/10k,50k/10k"


def count(text: str) -> int:
    text = text.strip().lower()
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)


def config_text(variables: int, alarms: int, port: int, sink: str, status: int) -> str:
    sources = max(1, -(-variables // PER_SOURCE))
    lines = ['[agent]\nname = "Scale"\nstate_dir = "var"\n']
    for s in range(sources):
        n = min(PER_SOURCE, variables - s * PER_SOURCE)
        lines.append(
            f'[[sources]]\nname = "s{s}"\nhost = "127.0.0.1"\nport = {port}\n'
            'poll_interval = "1s"\ntimeout = "5s"\n'
        )
        lines += [
            f'  [[sources.variables]]\n  name = "v{i}"\n  register = "holding"\n'
            f'  address = {i}\n  type = "int"\n'
            for i in range(n)
        ]
    step = max(1, variables // max(1, alarms))
    for a in range(alarms):
        index = (a * step) % variables
        key = f"s{index // PER_SOURCE}.v{index % PER_SOURCE}"
        lines.append(
            f'[[alarms]]\nname = "Alarm {a}"\nvariable = "{key}"\n'
            'condition = ">"\nthreshold = 60000\nseverity = "low"\n'
        )
    lines.append(f'[[webhooks]]\nname = "sink"\nurl = "{sink}/hook"\n')
    lines.append(f"[status]\nport = {status}\n")
    return "\n".join(lines)


def measure(variables: int, alarms: int, seconds: float, port: int, sink: str) -> dict[str, float]:
    agent = Agent(config_text(variables, alarms, port, sink, free_port()))
    try:
        checked = check_seconds(agent.config)
        ready = agent.start()
        time.sleep(2.0)  # the first cycles: connect, first evaluation of everything
        cpu0, t0 = agent.cpu(), time.perf_counter()
        time.sleep(seconds)
        cpu1, t1 = agent.cpu(), time.perf_counter()
        rss = agent.rss_mb()
    finally:
        agent.stop()
    return {"check": checked, "ready": ready, "cycle_ms": (cpu1 - cpu0) / (t1 - t0) * 1000,
            "rss": rss}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", default=DEFAULT_GRID, help="VARIABLES/ALARMS,...")
    parser.add_argument("--seconds", type=float, default=5.0, help="steady polling measured")
    args = parser.parse_args()
    grid = [tuple(count(x) for x in point.split("/")) for point in args.grid.split(",")]
    print("the real `ixon-agent run` per config size; CPU per 1 s poll cycle of every source")
    print(f"{'variables':>10}{'alarms':>8}{'check s':>10}{'startup s':>11}{'CPU ms/cycle':>14}"
          f"{'us/var':>8}{'RSS MB':>8}")  # fmt: skip
    with device(PER_SOURCE + 10) as port, receiver() as sink:
        for variables, alarms in grid:
            m = measure(variables, alarms, args.seconds, port, sink)
            print(
                f"{variables:>10}{alarms:>8}{m['check']:>10.2f}{m['ready']:>11.2f}"
                f"{m['cycle_ms']:>14.1f}{m['cycle_ms'] * 1000 / variables:>8.2f}{m['rss']:>8.1f}",
                flush=True,
            )
    print(
        f"floor: `python -c pass` starts in {floor():.2f} s; the process imports its"
        " libraries before it reads the config"
    )


def floor() -> float:
    import subprocess
    import sys

    runs = []
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


if __name__ == "__main__":
    main()
