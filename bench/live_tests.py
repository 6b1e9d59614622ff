"""``ixon-agent test --live`` against simulated time: how late the real chain is.

    .venv/bin/python bench/live_tests.py [--poll 0.2] [--rounds 3]

A config with two sources (one at a non-zero unit id, variables above address 1000, four
byte orders) and a test file of alarm starts and ends. Each round runs every test in
simulated time and live (simulator of the config's register map -> the agent as ``run``
runs it -> the ilert stand-in), then prints, per notification, how much later it arrived
live. The bound beside it is the goal: one poll interval plus 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from agent.tools.alarmtest.report import occurrences
from agent.tools.alarmtest.simulate import simulate
from agent.tools.alarmtest.spec import load
from workbench.live import run_test

CONFIG = """
[agent]
name = "Bench line"
public_id = "BenchLine001"
[[sources]]
name = "plc"
host = "127.0.0.1"
unit_id = 7
byte_order = "CDAB"
poll_interval = "{poll}s"
  [[sources.variables]]
  name = "temp"
  register = "holding"
  address = 3000
  type = "float"
  [[sources.variables]]
  name = "level"
  register = "input"
  address = 1500
  type = "int"
  width = 32
  byte_order = "BADC"
[[sources]]
name = "drive"
host = "127.0.0.1"
port = 5021
unit_id = 3
byte_order = "DCBA"
poll_interval = "{poll}s"
  [[sources.variables]]
  name = "fault"
  register = "holding"
  address = 5000
  type = "bool"
  bit = 4
[[alarms]]
name = "Hot"
variable = "plc.temp"
condition = ">"
threshold = 80.0
on_delay = "1s"
[[alarms]]
name = "Level high"
variable = "plc.level"
condition = ">"
threshold = 100
[[alarms]]
name = "Drive fault"
variable = "drive.fault"
condition = "=="
threshold = true
[[webhooks]]
name = "ilert"
url = "http://127.0.0.1:9/api/v1/events/ixon/k"
"""

TESTS = """
config = "agent.toml"
[[tests]]
name = "starts and ends"
duration = "8s"
  [tests.values]
  "plc.temp" = [["0s", 60.0], ["1s", 85.0], ["4s", 60.0]]
  "plc.level" = [["0s", 0], ["2s", 500], ["5s", 0]]
  "drive.fault" = [["0s", false], ["3s", true], ["6s", false]]
  [[tests.expect]]
  alarm = "Hot"
  start = "2s"
  end = "4s"
  [[tests.expect]]
  alarm = "Level high"
  start = "2s"
  end = "5s"
  [[tests.expect]]
  alarm = "Drive fault"
  start = "3s"
  end = "6s"
"""


async def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--poll", type=float, default=0.2)
    options.add_argument("--rounds", type=int, default=3)
    args = options.parse_args()
    late: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "agent.toml").write_text(CONFIG.format(poll=args.poll))
        path = Path(folder) / "t.test.toml"
        path.write_text(TESTS)
        file = load(path)
        for _ in range(args.rounds):
            for test in file.tests:
                expected = occurrences(simulate(file.config, test)[0])
                live = occurrences(await run_test(file, test))
                pairs = [
                    (e, o)
                    for name in {e.alarm for e in expected}
                    for e, o in zip(
                        [x for x in expected if x.alarm == name],
                        [x for x in live if x.alarm == name],
                        strict=True,
                    )
                ]
                for e, o in pairs:
                    for a, b in ((e.start, o.start), (e.end, o.end)):
                        if a is not None and b is not None:
                            late.append(b - a)
    bound = args.poll + 0.2
    print(f"live minus simulated, {len(late)} notifications, poll {args.poll * 1000:.0f} ms:")
    print(
        f"  median {statistics.median(late) * 1000:.0f} ms, max {max(late) * 1000:.0f} ms,"
        f" min {min(late) * 1000:.0f} ms; bound (poll + 200 ms) {bound * 1000:.0f} ms:"
        f" {sum(x <= bound for x in late)} of {len(late)} within"
    )


if __name__ == "__main__":
    asyncio.run(main())
