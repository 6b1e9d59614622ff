"""The outbox: messages enqueued durably per second, and delivered per second.

    .venv/bin/python bench/outbox.py [--messages 2000] [--dir var/bench]

Enqueue: each alarm transition is one transaction, the alarm's state row and its message(s),
committed (fsync, WAL, synchronous=FULL) before anything is sent. Measured the way the agent
writes: one transition per transaction, and ten (several alarms in one poll cycle).
Delivery: the same outbox drained by the deliverer (32 in flight) into a local HTTP receiver.
``--dir`` should be on the disk the agent will use (an SD card is far slower).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path

from aiohttp import web

from agent.config import Webhook
from agent.delivery.deliverer import Deliverer
from agent.delivery.post import make_http_client
from agent.outbox.store import Message, Store
from simulators._http import HttpServer


def state(i: int) -> dict[str, object]:
    return {
        "alarm_id": f"Alarm{i % 1000:07d}",
        "name": f"alarm {i}",
        "severity": "high",
        "active": True,
        "occurrence_id": f"Occ{i:09d}",
        "occurred_on": "2026-11-22T10:00:00+00:00",
        "notified": True,
        "suppressed": 0,
        "values": [84.2],
    }


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


async def deliver(directory: Path, messages: int) -> float:
    """Messages per second from a full outbox to a local receiver that answers 202."""
    shutil.rmtree(directory, ignore_errors=True)
    store = Store(directory / "agent.db")
    store.record([], [message(i) for i in range(messages)])
    app = web.Application()

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    app.router.add_post("/hook", accept)
    receiver = HttpServer(app)
    url = await receiver.start()
    webhook = Webhook.model_validate({"name": "ilert", "url": f"{url}/hook"})
    async with make_http_client() as http:
        deliverer = Deliverer(store, [webhook], http)
        start = time.perf_counter()
        deliverer.start()
        assert await deliverer.drain(600)
        elapsed = time.perf_counter() - start
        await deliverer.stop()
    await receiver.stop()
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
        print(f"  {per:>2} transition(s) per transaction: {rate:>9,.0f} messages/s enqueued")
    rate = asyncio.run(deliver(args.dir, min(args.messages, 1000)))
    print(f"  delivered to a local receiver:  {rate:>9,.0f} messages/s (32 in flight)")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
