"""An alarm storm against ilert's limits: the real ``ixon-agent run``, ilert's stand-in
counting as ilert counts (50 events a minute per alert-source key, fixed one-minute
windows, 429 past it), and the machine as the config declares it.

    .venv/bin/python bench/storm.py [--alarms 60] [--hold 20]

1. The storm: ``--alarms`` alarms start together and end ``--hold`` seconds later: twice as
   many IXON messages to one key. Printed: the time until the last one arrived, beside the
   floor (50 at once, then 50 a minute: ``(ceil(n / 50) - 1)`` minutes), and the 429s
   among the attempts.
2. A high alarm behind a storm of low ones: once the key's window has passed, 59 low alarms
   start together and a high one 5 s later. Printed: the time from its start to its alert
   (the goal: within one window, 60 s).

Both stand-ins run in this process (they are measured, not measuring); the agent is its own
process, as a user runs it. About 4 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import load_config
from bench.harness import Agent
from simulators.config_machine import ConfigMachine
from simulators.ilert import IlertSimulator, recommended

LIMIT, WINDOW = 50, 60.0
LOWS = 59


def config_text(port: int, ilert: str, alarms: int) -> str:
    text = f"""
[agent]
name = "Storm line"
state_dir = "state"

[[sources]]
name = "plc"
host = "127.0.0.1"
port = {port}
poll_interval = "200ms"
timeout = "2s"
offline_after = "0s"
  [[sources.variables]]
  name = "storm"
  register = "holding"
  address = 0
  type = "int"
  [[sources.variables]]
  name = "wave"
  register = "holding"
  address = 1
  type = "int"
  [[sources.variables]]
  name = "hot"
  register = "holding"
  address = 2
  type = "int"

[[webhooks]]
name = "ilert"
url = "{ilert}/api/v1/events/ixon/il1ixon0demo"
user_id = "UsrWebhook01"

[status]
port = 0
"""
    for i in range(alarms):
        text += f'\n[[alarms]]\nname = "Storm {i:02d}"\nvariable = "plc.storm"\n'
        text += 'condition = ">"\nthreshold = 0\nseverity = "low"\n'
    for i in range(LOWS):
        text += f'\n[[alarms]]\nname = "Wave {i:02d}"\nvariable = "plc.wave"\n'
        text += 'condition = ">"\nthreshold = 0\nseverity = "low"\n'
    text += '\n[[alarms]]\nname = "Hot"\nvariable = "plc.hot"\ncondition = ">"\n'
    text += 'threshold = 0\nseverity = "high"\n'
    return text


async def until(predicate: object, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def run(alarms: int, hold: float) -> None:
    ilert = IlertSimulator(recommended())
    url = await ilert.start()
    work = Path(tempfile.mkdtemp(prefix="ixon-storm-"))
    draft = work / "draft.toml"
    draft.write_text(config_text(5020, url, alarms))
    machine = ConfigMachine(load_config(draft, environ={}), free_ports=True)
    ports = await machine.start()
    agent = Agent(config_text(ports["plc"][1], url, alarms), work)
    try:
        await asyncio.to_thread(agent.start)
        await asyncio.sleep(2.0)  # a few polls: every alarm evaluated, all quiet

        def received(prefix: str) -> list[tuple[float, dict[str, object]]]:
            return [(m.wall, m.body) for m in ilert.inbound
                    if str(m.body["alarm"]["name"]).startswith(prefix)]  # fmt: skip

        # 1. the storm
        requests, refused = ilert.requests, ilert.events.refused
        began = time.time()
        machine.constants["plc.storm"] = 1
        await asyncio.sleep(hold)
        machine.constants["plc.storm"] = 0
        messages = 2 * alarms
        done = await until(lambda: len(received("Storm")) >= messages, 900)
        drained = max(t for t, _ in received("Storm")) - began
        attempts = ilert.requests - requests
        limited = ilert.events.refused - refused
        floor = (math.ceil(messages / LIMIT) - 1) * WINDOW
        print(f"storm: {alarms} alarms start together, end {hold:g} s later: {messages} IXON"
              f" messages to one key ({LIMIT} a minute)")  # fmt: skip
        print(f"  drained in {drained:.0f} s{'' if done else ' (not all arrived)'}; floor"
              f" {floor:.0f} s: {drained / floor:.2f}x the floor (goal <= 1.1x)")  # fmt: skip
        print(f"  {limited} of {attempts} attempts answered 429: {limited / attempts:.1%}"
              " (goal <= 5%)")  # fmt: skip

        # 2. a high alarm behind a storm of low ones, once the key's window has passed
        await asyncio.sleep(WINDOW + 5)
        machine.constants["plc.wave"] = 1
        await asyncio.sleep(5.0)
        high = time.time()
        machine.constants["plc.hot"] = 1
        arrived = await until(lambda: received("Hot"), 900)
        latency = received("Hot")[0][0] - high if arrived else math.inf
        ahead = len([t for t, _ in received("Wave") if t < high + latency])
        print(f"high behind lows: {LOWS} low alarms start, a high one 5 s later: its alert"
              f" {latency:.0f} s after it started, {ahead} low message(s) before it"
              f" (goal <= {WINDOW:.0f} s)")  # fmt: skip
        print(f"  agent CPU {agent.cpu():.1f} s, RSS {agent.rss_mb():.0f} MB")
    finally:
        agent.stop()
        await machine.stop()
        await ilert.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=60)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds the storm lasts")
    args = parser.parse_args()
    asyncio.run(run(args.alarms, args.hold))


if __name__ == "__main__":
    main()
