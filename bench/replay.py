"""``ixon-agent replay`` speed: a day at 1 s of 50 variables with 50 alarms.

    .venv/bin/python bench/replay.py [--rows 86400] [--variables 50]

Writes a wide CSV (every cell filled, every value changing every second: noise around 60,
and three excursions a day to about 85 per variable) and a config with one alarm per
variable (> 80, on_delay 5 s, deadband 1), then times
the real command, ``ixon-agent replay --config ... DATA.csv``, as a process, and reads its
peak RSS. The floor beside it: the same process reading the CSV with the csv module alone.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = """
import csv, sys
with open(sys.argv[1], newline="") as f:
    n = sum(len(row) - 1 for row in csv.reader(f)) - 0
print(n)
"""


def run(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, done.stdout


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--rows", type=int, default=86_400)
    options.add_argument("--variables", type=int, default=50)
    args = options.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "agent.toml"
        parts = [
            '[agent]\nname = "Bench"\npublic_id = "Bench0000001"\n',
            '[[sources]]\nname = "plc"\nhost = "127.0.0.1"\npoll_interval = "1s"\n',
        ]
        for i in range(args.variables):
            parts.append(
                f'  [[sources.variables]]\n  name = "v{i}"\n  register = "holding"\n'
                f'  address = {2 * i}\n  type = "float"\n'
            )
        for i in range(args.variables):
            parts.append(
                f'[[alarms]]\nname = "High {i}"\nvariable = "plc.v{i}"\ncondition = ">"\n'
                'threshold = 80.0\non_delay = "5s"\ndeadband = 1.0\n'
            )
        parts.append('[[webhooks]]\nname = "ilert"\nurl = "http://127.0.0.1:9/x/k"\n')
        config.write_text("\n".join(parts))
        data = Path(folder) / "day.csv"
        with data.open("w") as out:
            out.write("time," + ",".join(f"plc.v{i}" for i in range(args.variables)) + "\n")
            # each variable: noise around 60 every second, and three excursions a day to
            # about 85 for 5 to 20 minutes (noise near the threshold then: some flapping)
            hot = [
                [(s, s + rng.randint(300, 1200)) for s in rng.sample(range(args.rows), 3)]
                for _ in range(args.variables)
            ]
            for t in range(args.rows):
                cells = []
                for i in range(args.variables):
                    base = 85.0 if any(a <= t < b for a, b in hot[i]) else 60.0
                    cells.append(f"{base + rng.gauss(0, 2.0):.1f}")
                out.write(f"{1_795_000_000 + t}," + ",".join(cells) + "\n")
        values = args.rows * args.variables
        size = data.stat().st_size / 1e6
        wall, rss, report = run(
            [sys.executable, "-m", "agent", "replay", "--config", str(config), str(data)]
        )
        floor, floor_rss, _ = run([sys.executable, "-c", FLOOR, str(data)])
    pages = [line for line in report.splitlines() if line.startswith("total pages")]
    print(
        f"{args.rows:,} rows x {args.variables} variables = {values:,} values ({size:.0f} MB CSV),"
        f" {args.variables} alarms; {pages[0] if pages else ''}"
    )
    print(
        f"  ixon-agent replay: {wall:.2f} s, {values / wall:,.0f} values/s, peak RSS {rss:.0f} MB"
    )
    print(
        f"  floor, csv.reader alone: {floor:.2f} s, {values / floor:,.0f} values/s,"
        f" peak RSS {floor_rss:.0f} MB"
    )


if __name__ == "__main__":
    main()
