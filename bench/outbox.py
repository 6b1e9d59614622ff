"""Messages enqueued durably per second: SQLite outbox, WAL, synchronous=FULL.

    .venv/bin/python bench/outbox.py [--messages 2000] [--dir var/bench]

Each alarm transition is one transaction: the alarm's state row and its message(s),
committed (fsync) before anything is sent. Measured the way the agent writes: one transition
per transaction, and a burst of ten transitions (several alarms in one poll cycle) per
transaction. ``--dir`` should be on the disk the agent will use (an SD card is far slower).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from agent.store import Message, Store


def state(i: int) -> dict[str, object]:
    return {
        "alarm_id": f"Alarm{i % 1000:07d}", "name": f"alarm {i}", "severity": "high",
        "active": True, "occurrence_id": f"Occ{i:09d}", "occurred_on": "2026-11-22T10:00:00+00:00",
        "notified": True, "suppressed": 0, "values": [84.2],
    }  # fmt: skip


def message(i: int) -> Message:
    body = {"publicId": f"{i:024d}", "shortContent": {"alarmName": f"alarm {i}"}, "pad": "x" * 900}
    return Message("ilert", f"Occ{i:09d}", "start", "high", f"start of alarm {i}", body)


def measure(directory: Path, messages: int, per_transaction: int) -> float:
    shutil.rmtree(directory, ignore_errors=True)
    store = Store(directory / "agent.db")
    start = time.perf_counter()
    for first in range(0, messages, per_transaction):
        batch = range(first, min(messages, first + per_transaction))
        store.record([state(i) for i in batch], [message(i) for i in batch])
    elapsed = time.perf_counter() - start
    assert store.pending_count() == messages
    store.close()
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path("var/bench-outbox"))
    args = parser.parse_args()
    print(f"{args.messages} messages (~1 KB each) into {args.dir}/agent.db, fsync per commit")
    for per in (1, 10):
        rate = measure(args.dir, args.messages, per)
        print(f"  {per:>2} transition(s) per transaction: {rate:>9,.0f} messages/s")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
