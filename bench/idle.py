"""What `ixon-agent run` costs when nothing happens: CPU and memory with the default config.

    .venv/bin/python bench/idle.py [--seconds 60]

Starts the machine simulator (scenario "idle": values never change) and the ilert stand-in
on the default config's ports, then `ixon-agent run` with the repository's agent.toml
(7 variables in 4 requests every 500 ms, 4 alarms, status listener on), and reads the agent
process's CPU time and resident memory from /proc over ``--seconds`` after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def memory_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    python = sys.executable
    helpers = [
        subprocess.Popen(
            [python, "-m", "simulators.modbus_device", "--scenario", "idle"],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen([python, "-m", "simulators.ilert"], stdout=subprocess.DEVNULL),
    ]
    workdir = Path(tempfile.mkdtemp(prefix="ixon-idle-"))
    shutil.copy(REPO / "agent.toml", workdir / "agent.toml")
    time.sleep(2.0)
    agent = subprocess.Popen(
        [python, "-m", "agent", "run", "--config", str(workdir / "agent.toml")],
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(args.warmup)
        start_cpu, start = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(args.seconds)
        used, elapsed = cpu_seconds(agent.pid) - start_cpu, time.monotonic() - start
        rss, peak = memory_mb(agent.pid, "VmRSS"), memory_mb(agent.pid, "VmHWM")
        assert agent.poll() is None, "the agent stopped"
    finally:
        for proc in [agent, *helpers]:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"ixon-agent run, default agent.toml, idle machine:"
        f" {elapsed:.0f} s measured after {args.warmup:g} s warm-up"
    )
    print(f"  CPU: {used:.2f} s = {100 * used / elapsed:.2f}% of one core")
    print(f"  memory: {rss:.1f} MB resident, {peak:.1f} MB peak")


if __name__ == "__main__":
    main()
