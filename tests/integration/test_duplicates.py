"""Delivery is at least once: a message is sent again only when its receiver did not answer
in time, or answered 5xx/429, and then with exactly the same body (same ``publicId``, same
``alertKey``). Nothing else makes a duplicate: not a retry after an answer that arrived,
not a database that cannot record a delivery at that moment.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from agent.alarms.rules import AlarmRule
from agent.alarms.states import Transition
from agent.common.ids import new_id
from agent.config import Config, load_config
from agent.delivery.deliverer import Deliverer, Result
from agent.formats import messages_for
from agent.outbox.store import Store
from simulators._http import HttpServer
from tests.conftest import CONFIG, wait_for, write_config

ANSWERED = ("ok",)
UNANSWERED_BUT_PROCESSED = ("late", "503-after")  # the receiver acted, the agent never knew
REFUSED = ("503", "reset")  # the receiver did nothing


class Faulty(HttpServer):
    """A receiver that processes a message or not, and answers or not, at random."""

    def __init__(self, seed: int, late: float) -> None:
        self.rng = random.Random(seed)
        self.late = late
        self.processed: list[dict[str, Any]] = []
        self.attempts: list[tuple[str, str]] = []  # (message key, what the receiver did)
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        super().__init__(app)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        action = self.rng.choice(ANSWERED * 3 + UNANSWERED_BUT_PROCESSED + REFUSED)
        self.attempts.append((key(body), action))
        if action in ANSWERED + UNANSWERED_BUT_PROCESSED:
            self.processed.append(body)
        if action == "late":
            await asyncio.sleep(self.late)  # answers after the agent's timeout
        if action == "reset":
            assert request.transport is not None
            request.transport.close()
        return web.json_response({}, status=200 if action in ("ok", "late") else 503)


def key(body: dict[str, Any]) -> str:
    """What identifies one message: IXON's publicId, or the event and its alertKey."""
    return body.get("publicId") or f"{body['eventType']}:{body['alertKey']}"


def config(tmp_path: Path, url: str) -> Config:
    text = (
        CONFIG
        + f"""
[[webhooks]]
name = "events"
url = "{url}/api/events"
format = "ilert-events"
integration_key = "il1api0demo"
timeout = "1s"
"""
    )
    text = text.replace("notify_ended = true\n", 'notify_ended = true\ntimeout = "1s"\n')
    return load_config(write_config(tmp_path, text, ilert=url), environ={})


def transitions(config: Config, count: int) -> list[Transition]:
    rule = AlarmRule.compile(config.alarms[0], config)
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        occurrence = new_id()
        out.append(Transition(rule, "start", occurrence, (90.0,), now, now))
        out.append(Transition(rule, "end", occurrence, (70.0,), now, now))
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_duplicates_come_only_from_answers_that_never_arrived(
    tmp_path: Path, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr("agent.delivery.deliverer.BACKOFF_BASE", 0.02)
    monkeypatch.setattr("agent.delivery.deliverer.BACKOFF_CAP", 0.2)
    receiver = Faulty(seed, late=2.0)
    await receiver.start()
    conf = config(tmp_path, receiver.url)
    store = Store(tmp_path / "agent.db")
    # 6 occurrences: 12 events and their retries stay under ilert's 50 a minute per key
    sent = [m for t in transitions(conf, 6) for m in messages_for(conf, t, t.at)]
    store.record([], sent)
    results: list[Result] = []
    deliverer = Deliverer(store, conf.webhooks, http, max_in_flight=8, on_result=results.append)
    deliverer.start()
    try:
        assert await deliverer.drain(30), "not everything was delivered"
    finally:
        await deliverer.stop()
        await receiver.stop()
    assert store.dead() == [], [(d.reason, d.status) for d in store.dead()]
    wanted = Counter(key(dict(m.body)) for m in sent)
    assert len(wanted) == len(sent) == 24  # one publicId per IXON message, one key per event
    got = Counter(key(b) for b in receiver.processed)
    assert set(got) == set(wanted)
    # what the receiver did but the agent never heard of: each one must cause a resend
    unheard = Counter(k for k, action in receiver.attempts if action in UNANSWERED_BUT_PROCESSED)
    # what the agent saw fail (those above, refusals, and answers a busy machine made late)
    failed = Counter(key(r.entry.body) for r in results if r.outcome == "retry")
    for message, times in got.items():
        assert 1 + unheard[message] <= times <= 1 + failed[message], (message, times)
        copies = {json.dumps(b, sort_keys=True) for b in receiver.processed if key(b) == message}
        assert len(copies) == 1, "a resent message differs from the first copy"
    assert sum(got.values()) > len(wanted)  # the faults did cause some repeats


async def test_a_database_that_cannot_record_a_delivery_does_not_cause_a_resend(
    tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """Another process holds the write lock (a backup, `outbox --retry-dead`) just when a
    delivery is to be recorded: the message was delivered, so it must not go again."""
    receiver = Faulty(0, late=0.0)
    receiver.rng = random.Random(0)
    receiver.rng.choice = lambda options: "ok"  # type: ignore[method-assign]
    await receiver.start()
    conf = config(tmp_path, receiver.url)
    store = Store(tmp_path / "agent.db")
    store.db.execute("PRAGMA busy_timeout=50")
    [start, _] = transitions(conf, 1)
    store.record([], messages_for(conf, start, start.at, ["ilert"]))
    blocker = sqlite3.connect(tmp_path / "agent.db", isolation_level=None)
    deliverer = Deliverer(store, conf.webhooks, http)
    deliverer.start()
    try:
        blocker.execute("BEGIN IMMEDIATE")  # no claim, no delete can be written now
        deliverer.wake()
        await wait_for(lambda: receiver.processed, what="the delivery")
        await wait_for(lambda: not deliverer.in_flight, what="the send to finish")
        assert store.pending_count() == 0  # delivered, as far as this process knows
        for _ in range(3):  # more dispatch rounds: the message must not be sent again
            deliverer.wake()
            await asyncio.sleep(0)
        blocker.execute("COMMIT")
        await wait_for(lambda: store.flush(force=True), what="the delivery recorded")
    finally:
        await deliverer.stop()
        await receiver.stop()
        blocker.close()
    assert len(receiver.processed) == 1
    assert Store(tmp_path / "agent.db").pending() == []
