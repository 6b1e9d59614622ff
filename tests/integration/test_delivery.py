"""Delivery from the SQLite outbox against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.config import Webhook
from agent.delivery.deliverer import (
    Deliverer,
    Result,
    backoff,
)
from agent.delivery.post import parse_retry_after
from agent.formats import FORMATS
from agent.observe.logs import RedactSecrets
from agent.outbox.store import Message, Store
from tests.conftest import wait_for
from tests.receiver import Receiver

KEY = "il1secretKEY99"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "agent.db")


def hook(url: str, **kw: Any) -> Webhook:
    return Webhook.model_validate(
        {"name": "hook", "url": f"{url}/hook/{KEY}", "timeout": 2.0, **kw}
    )


def message(occurrence: str, kind: str, n: int, severity: str = "high") -> Message:
    return Message(
        "hook",
        occurrence,
        kind,
        severity,
        f"{kind} of {occurrence}",
        {"n": n, "occ": occurrence, "kind": kind},
    )


class Run:
    """A deliverer over ``store`` and a webhook at ``url``, recording every result."""

    def __init__(self, store: Store, http: httpx.AsyncClient, webhook: Webhook, **kw: Any) -> None:
        self.results: list[Result] = []
        self.deliverer = Deliverer(
            store,
            [webhook],
            http,
            secrets=[KEY, webhook.url.get_secret_value()],
            on_result=self.results.append,
            **kw,
        )

    def outcomes(self, label: str | None = None) -> list[str]:
        return [r.outcome for r in self.results if label is None or r.entry.label == label]

    async def __aenter__(self) -> Run:
        self.deliverer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.deliverer.stop(grace=0)


def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry after ~50 ms instead of seconds: the policy is tested on its own below."""
    monkeypatch.setattr("agent.delivery.deliverer.BACKOFF_BASE", 0.05)


async def test_every_message_is_committed_before_it_is_sent(store: Store) -> None:
    [first] = store.record([], [message("A", "start", 1)])
    again = Store(store.path)  # another connection: what a restart would see
    assert [e.id for e in again.pending()] == [first]
    assert again.pending()[0].body == {"n": 1, "occ": "A", "kind": "start"}


async def test_503_for_a_while_then_in_order(
    store: Store, http: httpx.AsyncClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries(monkeypatch)
    receiver.script = [503, 503, 503]
    store.record([], [message("A", "start", 1), message("A", "end", 2)])
    async with Run(store, http, hook(receiver.url)) as run:
        run.deliverer.wake()
        assert await run.deliverer.drain(15)
    assert [b["n"] for b in receiver.bodies] == [1, 2]
    assert run.outcomes("start of A") == ["retry", "retry", "retry", "delivered"]
    assert [b["n"] for _, b in receiver.attempts] == [1, 1, 1, 1, 2]  # the end waited


async def test_a_failed_start_blocks_its_end_but_not_other_occurrences(
    store: Store, http: httpx.AsyncClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries(monkeypatch)
    failing = {"on": True}
    receiver.decide = lambda body: 503 if failing["on"] and body["occ"] == "A" else None
    store.record([], [message("A", "start", 1), message("A", "end", 2), message("B", "start", 3)])
    async with Run(store, http, hook(receiver.url)) as run:
        run.deliverer.wake()
        await wait_for(lambda: len(run.outcomes("start of A")) >= 3, what="A's start retrying")
        assert [b["n"] for b in receiver.bodies] == [3]  # B went; A's end never tried
        assert all(b["n"] != 2 for _, b in receiver.attempts)
        failing["on"] = False
        assert await run.deliverer.drain(15)
    assert [b["n"] for b in receiver.bodies] == [3, 1, 2]


async def test_429_retry_after_is_honoured(
    store: Store, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [429]
    receiver.headers = {"Retry-After": "1"}
    store.record([], [message("A", "start", 1)])
    async with Run(store, http, hook(receiver.url)) as run:
        run.deliverer.wake()
        assert await run.deliverer.drain(15)
    (first, _), (second, _) = receiver.attempts
    assert second - first >= 1.0
    assert run.outcomes() == ["retry", "delivered"]
    assert run.results[0].error == "HTTP 429"


async def test_connection_resets_and_a_hanging_receiver_are_retried(
    store: Store, http: httpx.AsyncClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_retries(monkeypatch)
    receiver.script = ["reset", "hang", "reset"]
    store.record([], [message("A", "start", 1), message("A", "end", 2)])
    async with Run(store, http, hook(receiver.url, timeout=0.3)) as run:
        run.deliverer.wake()
        assert await run.deliverer.drain(20)
    assert [b["n"] for b in receiver.bodies] == [1, 2]  # each exactly once, in order
    errors = [r.error or "" for r in run.results if r.outcome == "retry"]
    assert len(errors) == 3 and any("Timeout" in e for e in errors)
    assert all(KEY not in e for e in errors)


async def test_rejected_message_is_dead_lettered_and_retry_dead_requeues_it(
    store: Store, http: httpx.AsyncClient, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [404]
    store.record([], [message("A", "start", 1), message("B", "start", 2)])
    async with Run(store, http, hook(receiver.url)) as run:
        run.deliverer.wake()
        assert await run.deliverer.drain(10)
        [dead] = store.dead()
        assert (dead.reason, dead.status, dead.attempts, dead.label) == (
            "rejected",
            404,
            1,
            "start of A",
        )
        assert [b["n"] for b in receiver.bodies] == [2]
        assert "webhook hook: start of A rejected with HTTP 404" in caplog.text
        assert store.retry_dead() == 1
        run.deliverer.wake()
        assert await run.deliverer.drain(10)
    assert [b["n"] for b in receiver.bodies] == [2, 1] and store.dead() == []


async def test_resolve_of_a_closed_ilert_alert_counts_as_delivered(
    store: Store, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [400]  # with code NO_OPEN_ALERT_WITH_KEY
    resolve = Message(
        "hook", "A", "end", "high", "end of A", {"eventType": "RESOLVE", "alertKey": "A"}
    )
    store.record([], [resolve])
    webhook = hook(receiver.url, format="ilert-events", integration_key="il1api0demo")
    async with Run(store, http, webhook) as run:
        run.deliverer.wake()
        assert await run.deliverer.drain(10)
    assert run.outcomes() == ["delivered"] and store.dead() == []
    ((_, sent),) = receiver.attempts
    assert sent["integrationKey"] == "il1api0demo"  # added at send time
    assert "il1api0demo" not in store.path.read_bytes().decode("latin-1")  # never stored


def test_each_format_classifies_its_answers() -> None:
    def answer(body: Any = None) -> bytes:
        return json.dumps(body or {}).encode()

    events, ixon = FORMATS["ilert-events"], FORMATS["ixon"]
    resolve = {"eventType": "RESOLVE"}
    gone = answer({"code": "NO_OPEN_ALERT_WITH_KEY"})
    for fmt in (events, ixon):
        assert fmt.classify(202, answer(), {}) == "delivered"
        assert [fmt.classify(s, answer(), {}) for s in (408, 429, 500, 503)] == ["retry"] * 4
        assert [fmt.classify(s, answer(), {}) for s in (401, 403, 404, 410, 422)] == [
            "rejected"
        ] * 5
    assert events.classify(400, gone, resolve) == "delivered"  # resolved already: done
    assert events.classify(400, answer({"code": "NONE_OPEN_FOR_KEY"}), resolve) == "delivered"
    assert events.classify(400, gone, {"eventType": "ALERT"}) == "rejected"
    assert events.classify(400, answer({"code": "INVALID_INPUT"}), resolve) == "rejected"
    assert events.classify(400, b"<html>", resolve) == "rejected"
    assert ixon.classify(400, gone, resolve) == "rejected"


async def test_max_age_expires_into_the_dead_letter_table(
    store: Store, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.default = 503
    now = [1000.0]
    store = Store(store.path, monotonic=lambda: now[0])  # an injected monotonic clock
    store.record([], [message("A", "start", 1)])
    async with Run(store, http, hook(receiver.url), max_age=3600.0) as run:
        run.deliverer.wake()
        await wait_for(lambda: run.outcomes() == ["retry"], what="a first failed attempt")
        now[0] += 3601.0  # an hour of trying later: past max_age
        run.deliverer._next_expiry_check = 0.0
        run.deliverer.wake()
        await wait_for(lambda: store.dead(), what="the expired message")
    [dead] = store.dead()
    assert dead.reason == "expired: undelivered for max_age" and dead.attempts == 1
    assert dead.last_error == "HTTP 503" and store.pending() == []


def test_max_pending_evicts_the_oldest_low_severity_occurrences_whole(store: Store) -> None:
    store.record([], [message("L1", "start", 1, "low"), message("H1", "start", 2, "high")])
    store.record([], [message("L1", "end", 3, "low"), message("M1", "start", 4, "medium")])
    store.record([], [message("L2", "start", 5, "low"), message("H2", "start", 6, "high")])
    evicted = store.evict_overflow(max_pending=4)
    assert sorted(e.body["n"] for e in evicted) == [1, 3]  # L1 went whole: start and end
    assert sorted(e.body["n"] for e in store.pending()) == [2, 4, 5, 6]
    assert {e.reason for e in store.dead()} == {"evicted: outbox over max_pending"}
    store.record([], [message("H3", "start", 7, "high")] * 3)
    assert len(store.evict_overflow(max_pending=4)) == 2  # M1 and L2; high is never evicted
    assert {e.severity for e in store.pending()} == {"high"}


async def test_unreachable_webhook_keeps_the_message_and_logs_no_secret(
    store: Store, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    gone = Receiver()
    await gone.start()
    url = gone.url
    await gone.stop()  # connection refused from now on
    caplog.set_level(logging.DEBUG)
    store.record([], [message("A", "start", 1)])
    async with Run(store, http, hook(url)) as run:
        run.deliverer.wake()
        await wait_for(lambda: run.results, what="a failed attempt")
    [entry] = store.pending()
    assert entry.attempts == 1 and entry.last_error and entry.last_error.startswith("ConnectError")
    assert KEY not in caplog.text and KEY not in (entry.last_error or "")
    assert "webhook hook: start of A failed (attempt 1: ConnectError" in caplog.text


def test_redaction_filter_masks_secrets_in_messages_and_tracebacks() -> None:
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "posting to %s", ("http://h/k/il1abc12345",), None
    )
    try:
        raise ValueError("bad url http://h/k/il1abc12345")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactSecrets(["il1abc12345"]).filter(record)
    text = logging.Formatter().format(record)
    assert "il1abc12345" not in text and "http://h/k/***" in text


def test_backoff_and_retry_after() -> None:
    assert 0.5 <= backoff(0) <= 1.0
    assert 150.0 <= backoff(30) <= 300.0  # capped at about 5 minutes
    assert backoff(0, retry_after=12.0) == 12.0
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


async def test_a_send_cut_short_by_sigkill_is_retried_at_once_after_restart(store: Store) -> None:
    import asyncio

    [entry_id] = store.record([], [message("A", "start", 1)])
    dead = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await dead.wait()  # a process that held the message and is gone now
    store.db.execute(
        "UPDATE outbox SET lease_until = ?, lease_pid = ? WHERE id = ?",
        (store.now() + 40, dead.pid, entry_id),
    )
    assert store.due(store.now(), 10) == []  # leased: not due
    assert store.release_dead_leases() == 1
    assert [e.id for e in store.due(store.now(), 10)] == [entry_id]
    assert store.claim(entry_id, store.now() + 40)
    assert store.release_dead_leases() == 1  # our own pid: we only just started


def test_a_message_another_process_is_sending_is_due_when_its_lease_ends(store: Store) -> None:
    [entry_id] = store.record([], [message("A", "start", 1)])
    now = store.now()
    store.db.execute(
        "UPDATE outbox SET lease_until = ?, lease_pid = 1 WHERE id = ?", (now + 30, entry_id)
    )
    assert store.due(now, 10) == []
    assert store.next_due() == pytest.approx(now + 30)  # not "now": no busy loop meanwhile
