"""Delivery against real HTTP servers on 127.0.0.1: retries, order, permanent errors, secrets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp import web

from agent.config import Webhook, load_config
from agent.delivery import (
    Deliverer,
    Delivery,
    Outcome,
    backoff,
    make_http_client,
    parse_retry_after,
)
from agent.logs import RedactSecrets
from agent.messages import build, sample_transition
from simulators._http import HttpServer
from simulators.ilert import IlertSimulator
from tests.conftest import wait_for, write_config


class Receiver(HttpServer):
    """Answers with the scripted statuses in turn (then 200) and records what came in."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        app = web.Application()
        app.router.add_post("/hook/{key}", self.handle)
        super().__init__(app)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        status = self.statuses.pop(0) if self.statuses else 200
        if status < 300:
            self.bodies.append(body)
        return web.json_response({"code": "X"}, status=status)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as client:
        yield client


def hook(url: str, **kw: Any) -> Webhook:
    return Webhook.model_validate({"name": "hook", "url": url, **kw})


async def test_retries_until_delivered_and_keeps_order(http: httpx.AsyncClient) -> None:
    receiver = Receiver([503, 503])
    await receiver.start()
    results: list[tuple[str, Outcome]] = []
    deliverer = Deliverer(
        [hook(f"{receiver.url}/hook/secretkey123")], http, lambda d, o: results.append((d.label, o))
    )
    deliverer.start()
    try:
        deliverer.submit(Delivery("hook", {"n": 1}, "first"))
        deliverer.submit(Delivery("hook", {"n": 2}, "second"))
        assert await deliverer.drain(20)
    finally:
        await deliverer.stop()
        await receiver.stop()
    assert receiver.bodies == [{"n": 1}, {"n": 2}]  # the second waited for the first
    assert results == [
        ("first", "retry"),
        ("first", "retry"),
        ("first", "delivered"),
        ("second", "delivered"),
    ]


async def test_permanent_error_is_not_retried_and_does_not_block(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver([404])
    await receiver.start()
    deliverer = Deliverer([hook(f"{receiver.url}/hook/secretkey123")], http)
    deliverer.start()
    try:
        deliverer.submit(Delivery("hook", {"n": 1}, "first"))
        deliverer.submit(Delivery("hook", {"n": 2}, "second"))
        assert await deliverer.drain(10)
    finally:
        await deliverer.stop()
        await receiver.stop()
    assert receiver.attempts == 2 and receiver.bodies == [{"n": 2}]
    assert "webhook hook: first rejected with HTTP 404" in caplog.text


async def test_ilert_events_resolve_of_a_closed_alert_counts_as_delivered(
    tmp_path: Any, http: httpx.AsyncClient, ilert: IlertSimulator
) -> None:
    config = load_config(write_config(tmp_path, ilert=ilert.url), environ={})
    webhook = hook(f"{ilert.url}/api/events", format="ilert-events", integration_key="il1api0demo")
    start = sample_transition(config)
    body = build(config.agent, webhook, start, datetime.now(UTC))
    assert body["eventType"] == "ALERT" and body["priority"] == "HIGH"
    assert body["alertKey"] == start.occurrence_id and body["integrationKey"] == "il1api0demo"
    assert body["customDetails"]["variable"] == "agent.test"
    resolve = dict(body, eventType="RESOLVE", alertKey="never-opened")
    outcomes: list[Outcome] = []
    deliverer = Deliverer([webhook], http, lambda d, o: outcomes.append(o))
    deliverer.start()
    try:
        deliverer.submit(Delivery("hook", body, "alert"))
        deliverer.submit(Delivery("hook", resolve, "resolve of nothing"))
        await wait_for(lambda: len(outcomes) == 2)
    finally:
        await deliverer.stop()
    assert outcomes == ["delivered", "delivered"]
    [alert] = ilert.alerts
    assert alert.status == "PENDING" and alert.alert_key == start.occurrence_id


async def test_unreachable_webhook_keeps_the_message_and_logs_no_secret(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver([])
    await receiver.start()
    url = f"{receiver.url}/hook/il1secretKEY99"
    await receiver.stop()  # connection refused from now on
    caplog.set_level(logging.DEBUG)
    attempts: list[Outcome] = []
    deliverer = Deliverer([hook(url)], http, lambda d, o: attempts.append(o))
    deliverer.start()
    try:
        deliverer.submit(Delivery("hook", {"n": 1}, "first"))
        await wait_for(lambda: len(attempts) >= 2, what="two failed attempts")
        assert deliverer.pending == 1  # kept, not dropped
    finally:
        await deliverer.stop()
    assert "il1secretKEY99" not in caplog.text
    assert "webhook hook: first failed (attempt 1: ConnectError" in caplog.text


def test_redaction_filter_masks_secrets_in_messages_and_tracebacks() -> None:
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "posting to %s", ("http://h/k/il1abc12345",), None
    )
    try:
        raise ValueError("bad url http://h/k/il1abc12345")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactSecrets(["il1abc12345"]).filter(record)
    text = logging.Formatter().format(record)
    assert "il1abc12345" not in text and "http://h/k/***" in text


def test_backoff_and_retry_after() -> None:
    assert 0.25 <= backoff(0) <= 0.5
    assert 30.0 <= backoff(30) <= 60.0  # capped
    assert backoff(0, retry_after=12.0) == 12.0
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
