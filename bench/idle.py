"""What `ixon-agent run` costs when nothing happens: CPU and memory with the default config.

    .venv/bin/python bench/idle.py [--seconds 60]

The repository's agent.toml (7 variables in 4 requests every 500 ms, 4 alarms, status
listener on), pointed at an idle Modbus device and an HTTP sink on free ports; the agent
process's CPU time and resident memory are read from /proc over ``--seconds`` after a
warm-up. The floor beside it: an idle Python process that imported the same libraries.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from harness import REPO, Agent, device, free_port, memory_mb, receiver


def floor_mb() -> float:
    """RSS of a process that imports what `run` needs and does nothing."""
    code = (
        "import agent.runtime.service, agent.cli, resource;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    text = (REPO / "agent.toml").read_text()
    with device(200) as port, receiver() as sink:
        text = text.replace("port = 5020", f"port = {port}")
        text = re.sub(r'url = "http://127\.0\.0\.1:8025[^"]*"', f'url = "{sink}/hook"', text)
        text = text.replace("port = 9108", f"port = {free_port()}")
        agent = Agent(text)
        try:
            agent.start()
            time.sleep(args.warmup)
            start_cpu, start = agent.cpu(), time.monotonic()
            time.sleep(args.seconds)
            used, elapsed = agent.cpu() - start_cpu, time.monotonic() - start
            rss, peak = agent.rss_mb(), memory_mb(agent.pid, "VmHWM")
        finally:
            agent.stop()
    print(
        f"ixon-agent run, default agent.toml, idle machine:"
        f" {elapsed:.0f} s measured after {args.warmup:g} s warm-up"
    )
    print(f"  CPU: {used:.2f} s = {100 * used / elapsed:.2f}% of one core")
    print(f"  memory: {rss:.1f} MB resident, {peak:.1f} MB peak;"
          f" floor (the libraries imported, nothing running): {floor_mb():.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
