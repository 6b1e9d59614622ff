"""``ixon-agent test`` in simulated time: a day of 100 alarms on 100 variables at 100 ms.

    .venv/bin/python bench/alarm_tests.py [--hours 24] [--variables 100]

Writes a config (one source, ``--variables`` float variables polled every 100 ms, one alarm
each: > 80 with on_delay 5 s, off_delay 2 s, deadband 1) and a test file whose series move
every variable every 15 minutes (staggered) and take it over the threshold for 10 minutes
every 2 hours, with an expectation for every occurrence. Then it runs the real command,
``ixon-agent test FILE``, as a user does, and times the process. The floor beside it: the
same day polled at every interval (``dense``), timed for one simulated hour in-process and
scaled to the whole, which is what a simulation without skipping would cost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.tools.alarmtest.simulate import simulate
from agent.tools.alarmtest.spec import load

POLL = 0.1


def write(folder: Path, hours: float, count: int) -> Path:
    lines = [
        '[agent]\nname = "Bench"\npublic_id = "Bench0000001"\nstate_dir = "state"\n',
        '[[sources]]\nname = "plc"\nhost = "127.0.0.1"\npoll_interval = "100ms"\n',
    ]
    for i in range(count):
        lines.append(
            f'  [[sources.variables]]\n  name = "t{i}"\n  register = "holding"\n'
            f'  address = {2 * i}\n  type = "float"\n'
        )
    for i in range(count):
        lines.append(
            f'[[alarms]]\nname = "Hot {i}"\nvariable = "plc.t{i}"\ncondition = ">"\n'
            'threshold = 80.0\non_delay = "5s"\noff_delay = "2s"\ndeadband = 1.0\n'
        )
    lines.append('[[webhooks]]\nname = "ilert"\nurl = "http://127.0.0.1:9/api/v1/events/ixon/k"\n')
    (folder / "agent.toml").write_text("\n".join(lines))
    duration = hours * 3600
    test = [f'config = "agent.toml"\n[[tests]]\nname = "a day"\nduration = "{duration:g}s"\n']
    test.append("  [tests.values]")
    expects: list[tuple[int, float, float | None]] = []
    for i in range(count):
        offset = 9.0 * i  # staggered across the source
        points, t, n = [], offset, 0
        while t < duration:
            hot = (n % 8) == 7  # every 2 h (8 steps of 15 min) a 15 min excursion
            points.append(f'["{t:g}s", {90.0 if hot else 50.0 + (n % 5)}]')
            if hot and t + 900 + 2 <= duration:
                expects.append((i, t + 5.0, t + 900 + 2.0))
            elif hot and t + 5 <= duration:
                expects.append((i, t + 5.0, None))
            t += 900.0
            n += 1
        first = ['["0s", 50.0]'] if offset > 0 else []
        test.append(f'  "plc.t{i}" = [{", ".join(first + points)}]')
    for i, start, end in expects:
        ends = f'\n  end = "{end:g}s"' if end is not None else ""
        test.append(f'  [[tests.expect]]\n  alarm = "Hot {i}"\n  start = "{start:g}s"{ends}')
    path = folder / "day.test.toml"
    path.write_text("\n".join(test) + "\n")
    return path


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--hours", type=float, default=24.0)
    options.add_argument("--variables", type=int, default=100)
    options.add_argument("--keep", type=Path, help="also write the config and test file here")
    args = options.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        write(args.keep, args.hours, args.variables)
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), args.hours, args.variables)
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "agent", "test", str(path)], capture_output=True, text=True
        )
        wall = time.perf_counter() - began
        file = load(path)
        [test] = file.tests
        sent, polls = simulate(file.config, test)
        hour = test.__class__(test.name, 3600.0, test.series, test.offline, ())
        dense_began = time.perf_counter()
        _, dense_polls = simulate(file.config, hour, dense=True)
        dense_hour = time.perf_counter() - dense_began
    simulated = args.hours * 3600
    cycles = int(simulated / POLL)
    print(
        f"{args.variables} alarms on {args.variables} variables, poll {POLL * 1000:.0f} ms,"
        f" {args.hours:g} h simulated = {cycles:,} poll cycles"
    )
    print(
        f"  ixon-agent test: {wall:.2f} s wall (process, start-up included), exit"
        f" {done.returncode}: {done.stdout.strip().splitlines()[-1]}"
    )
    print(
        f"  {simulated / wall:,.0f} simulated seconds per wall second;"
        f" {polls:,} cycles evaluated ({polls / cycles:.1%}), the rest skipped as settled;"
        f" {len(sent):,} messages"
    )
    print(
        f"  floor, every cycle polled: {dense_hour:.2f} s per simulated hour ({dense_polls:,}"
        f" cycles) -> {dense_hour * args.hours:.1f} s for the whole"
    )


if __name__ == "__main__":
    main()
