"""The state directory's worst case for a given ``max_pending``: ``agent.db`` holding as much
as the agent ever keeps, written with the agent's own store and messages.

    .venv/bin/python bench/state_size.py [--max-pending 10000]

``max_pending`` waiting messages (the IXON message of the default config's first alarm,
about 1.2 KB), as many dead letters (each with a 500-character answer kept), and a full
history. Prints the file's size (and its journal's, if any is left), per ``max_pending``.
Not a timing: a size, the same on any machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import load_config
from agent.formats import messages_for, sample_transition
from agent.outbox import journal
from agent.outbox.store import Message, Store

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-pending", type=int, default=10_000)
    args = parser.parse_args()
    n = args.max_pending
    config = load_config(REPO / "agent.toml", environ={})
    [sample] = messages_for(config, sample_transition(config), datetime.now(UTC))
    work = Path(tempfile.mkdtemp(prefix="ixon-size-"))
    store = Store(work / "agent.db", max_held=n, max_dead=n)
    ids: list[int] = []
    for first in range(0, 2 * n, 500):  # as the agent writes: a transaction per cycle
        batch = range(first, min(first + 500, 2 * n))
        messages = [
            Message(sample.webhook, f"O{i:011d}", "start", "low", sample.label, sample.body)
            for i in batch
        ]
        ids += store.record([], messages)
    store.bury(ids[:n], "rejected", 400, "x" * 500, "HTTP 400", attempted=True)
    at = "2026-11-22T10:00:03.000Z"
    keep = journal.HISTORY_KEEP + journal.TRIM_BATCH - 1
    store.record([], [], history=[
        journal.event("start", f"H{i:011d}", "AlarmId00001", sample.label, "low", at, [84.2],
                      [sample.webhook])
        for i in range(keep)
    ])  # fmt: skip
    pending, dead = store.pending_count(), store.dead_count()
    store.close()
    sizes = {f.name: f.stat().st_size for f in work.iterdir()}
    total = sum(sizes.values())
    body = len(json.dumps(sample.body).encode())
    print(f"state size: {pending} waiting and {dead} dead messages (bodies of ~{body} bytes),"
          f" {keep} history rows")  # fmt: skip
    print(f"  {', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in sizes.items())}: {total / 1e6:.1f}"
          f" MB, {total / n / 1e3:.1f} KB per max_pending; floor: the bodies themselves,"
          f" {2 * n * body / 1e6:.1f} MB")  # fmt: skip
    for file in work.iterdir():
        file.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
