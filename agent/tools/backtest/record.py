"""``ixon-agent record``: poll the config's sources at their intervals into a wide CSV.

Written row by row (flushed), so Ctrl-C or a crash keeps what was recorded; a line of
progress every few seconds on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import sys
import time
from pathlib import Path
from typing import TextIO

from agent.common.values import Value
from agent.config import Config
from agent.sources.base import Poller
from agent.sources.drivers import open_pollers

PROGRESS_EVERY = 5.0


def _cell(value: Value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


async def record(config: Config, duration: float, out: Path, progress: TextIO = sys.stderr) -> int:
    """Rows written; returns when ``duration`` has passed or the task is cancelled."""
    keys = [key for key, _, _ in config.variables()]
    pollers = open_pollers(config.sources)
    written = 0
    started = time.monotonic()
    with out.open("w", newline="", encoding="utf-8") as handle:
        table = csv.writer(handle)
        table.writerow(["time", *keys])
        handle.flush()
        lock = asyncio.Lock()

        async def poll(poller: Poller) -> None:
            nonlocal written
            period = poller.source.poll_interval
            due = time.monotonic()
            while True:
                result = await poller.poll()
                if result.values:
                    row = [f"{time.time():.3f}"]
                    row += [_cell(result.values[k]) if k in result.values else "" for k in keys]
                    async with lock:
                        table.writerow(row)
                        handle.flush()
                        written += 1
                due += period
                await asyncio.sleep(max(0.0, due - time.monotonic()))

        async def report() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                elapsed = time.monotonic() - started
                print(
                    f"record: {written:,} rows in {elapsed:.0f} of {duration:g} s -> {out}",
                    file=progress,
                    flush=True,
                )

        tasks = [asyncio.create_task(poll(p)) for p in pollers.values()]
        tasks.append(asyncio.create_task(report()))
        try:
            # a task ends only by failing (a write to a full disk): then the recording does
            done, _ = await asyncio.wait(
                tasks, timeout=duration, return_when=asyncio.FIRST_EXCEPTION
            )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for poller in pollers.values():
                poller.close()
        for task in done:
            task.result()  # raises what stopped it
    return written
