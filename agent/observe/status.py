"""Seeing that it works: Prometheus metrics, health checks and a status page, one listener.

    /          status page: sources, live values, active alarms, the outbox (works on a phone)
    /metrics   Prometheus text format
    /healthz   200 while the process runs
    /readyz    200 when config is loaded, the scheduler runs, no source has been offline longer
               than its offline_after and the outbox is within its bound; else 503 and why

Counters that the agent keeps anyway (per-source stats, alarm states, the outbox) are read
when scraped, so the poll loop pays nothing for them; only latencies are observed as they
happen. Webhook URLs never appear: webhooks are labelled by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent import __version__
from agent.alarms.states import State, Transition
from agent.common.retry import Throttle
from agent.delivery.deliverer import Result
from agent.observe.auth import USER, Login, tls_context
from agent.observe.logs import one_line_logger
from agent.observe.page import render
from agent.observe.snapshot import Snapshot, Snapshots
from agent.observe.web import WebServer

log = logging.getLogger("agent.status")

PREFIX = "ixon_agent"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics(Collector):
    """The agent's registry: state read at scrape time, plus latency histograms."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot
        self.connections_dropped: Callable[[], int] = lambda: 0  # the status server's count
        self.registry = CollectorRegistry(auto_describe=False)
        self.poll_seconds = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "Time of one poll cycle of a source",
            ["source"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.delivery_seconds = Histogram(
            f"{PREFIX}_delivery_duration_seconds",
            "Time of one delivery attempt to a webhook",
            ["webhook"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.transitions: Counter[tuple[str, str]] = Counter()
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.registry.register(self)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds

    def transition(self, t: Transition) -> None:
        self.transitions[(t.rule.name, t.kind)] += 1

    def delivered(self, result: Result) -> None:
        self.attempts[(result.entry.webhook, result.outcome)] += 1
        self.delivery_seconds.labels(result.entry.webhook).observe(result.latency)

    def collect(self) -> Iterator[Any]:
        view = self.snapshot()
        polls = _counter("polls", "Poll cycles", "source", "result")
        requests = _counter("requests", "Modbus requests sent", "source")
        errors = _counter("errors", "Failures by kind", "source", "kind")
        skipped = _counter("cycles_skipped", "Cycles skipped: the last still ran", "source")
        values = _counter("values_decoded", "Values decoded", "source")
        up = _gauge("source_up", "1 if the source answered its last cycle", "source")
        last = _gauge("source_last_read_timestamp_seconds", "Last complete read", "source")
        for source in view.sources:
            name, stats = source.name, source.stats
            polls.add_metric([name, "ok"], stats.cycles - stats.failed)
            polls.add_metric([name, "failed"], stats.failed)
            requests.add_metric([name], stats.requests)
            # every known kind from the start (at 0), so a rate() has a baseline; label
            # values without spaces
            for kind in sorted({*stats.kinds, *stats.errors}):
                errors.add_metric([name, kind.replace(" ", "_")], stats.errors.get(kind, 0))
            skipped.add_metric([name], stats.skipped)
            values.add_metric([name], stats.values)
            up.add_metric([name], 1.0 if source.online else 0.0)
            if stats.last_read is not None:
                last.add_metric([name], stats.last_read)
        yield from (polls, requests, errors, skipped, values, up, last)

        state = _gauge("alarm_state", "1 for the state each alarm is in", "alarm", "state")
        held = _counter("alarm_suppressed", "Held back by flapping control", "alarm")
        for alarm in view.alarms:
            for each in State:
                state.add_metric([alarm.name, each.value], float(alarm.state is each))
            held.add_metric([alarm.name], alarm.suppressed)
        transitions = _counter(
            "alarm_transitions", "Alarm starts and ends notified", "alarm", "kind"
        )
        for labels, count in self.transitions.items():
            transitions.add_metric(list(labels), count)
        yield from (state, held, transitions)

        outbox = view.outbox
        yield _gauge("outbox_pending", "Messages waiting to be delivered", value=outbox.pending)
        yield _gauge("outbox_dead", "Messages in the dead-letter table", value=outbox.dead)
        yield _gauge("outbox_oldest_age_seconds", "Oldest waiting message", value=outbox.oldest_age)
        yield _gauge(
            "state_durable", "1 if the state database can be written", value=float(outbox.durable)
        )
        yield _gauge(
            "state_waiting_messages",
            "New messages waiting in memory to be written",
            value=outbox.held,
        )
        yield _counter_value(
            "state_dropped_messages",
            "New messages dropped: memory full, not durable",
            outbox.dropped,
        )
        attempts = _counter("delivery_attempts", "Delivery attempts", "webhook", "outcome")
        for labels, count in self.attempts.items():
            attempts.add_metric(list(labels), count)
        yield attempts
        yield _counter_value(
            "status_connections_dropped",
            "Idle status connections closed for new ones",
            self.connections_dropped(),
        )
        yield _gauge(
            "heartbeat_failures", "Heartbeat pings failed in a row", value=view.heartbeat_failures
        )
        info = _gauge("info", "The agent", "version", "agent")
        info.add_metric([__version__, view.agent_name], 1.0)
        yield info


def _counter(name: str, text: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", text, labels=list(labels))


def _counter_value(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)


def _gauge(name: str, text: str, *labels: str, value: float | None = None) -> GaugeMetricFamily:
    if value is not None:
        return GaugeMetricFamily(f"{PREFIX}_{name}", text, value=value)
    return GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=list(labels))


#: connections the status listener holds at most; past it the longest idle one is dropped
MAX_CONNECTIONS = 64
MAX_FORM = 4096  # bytes of an Acknowledge form
#: (alarm id, who, comment) -> the alarm's name, or None for no such alarm
Acknowledge = Callable[[str, str, str], str | None]
#: ilert's alert-action body -> an HTTP status: 200 taken, 400 not ilert's, 404 no such key
FromIlert = Callable[[dict[str, Any]], int]
MAX_ILERT = 64 * 1024  # bytes of an alert-action body (ilert's are a few KB)
#: seconds a connection may stay idle (before its first request too) before it is closed
IDLE_TIMEOUT = 15.0


http_log = one_line_logger("agent.status.http")


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class StatusServer(WebServer):
    """The listener; failing to bind is logged, never fatal: alarms matter more.

    It must not be a way to starve the agent: it holds at most ``MAX_CONNECTIONS``
    (dropping the longest idle one for a new one), closes connections idle for
    ``IDLE_TIMEOUT`` seconds, and logs malformed requests in one line, now and then. So a
    thousand idle connections cost a few file descriptors, and polling and delivery go on.
    """

    def __init__(
        self,
        snapshot: Snapshots,
        metrics: Metrics,
        login: Login | None = None,
        acknowledge: Acknowledge | None = None,
        from_ilert: FromIlert | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.acknowledge = acknowledge
        self.from_ilert = from_ilert
        self._bad_input = Throttle(600.0)
        self.registry = metrics.registry
        metrics.connections_dropped = lambda: self.dropped
        self.dropped = 0  # connections closed to make room
        self.login = login or Login({})
        app = web.Application(middlewares=[self.login.middleware])
        app.add_routes(
            [
                web.get("/", self.page),
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.post("/ack", self.ack),
                web.post("/ilert", self.ilert),
            ]
        )
        self._secret = os.urandom(32)  # the forms' tokens mean nothing to another process
        super().__init__(app, http_log, keepalive=IDLE_TIMEOUT)

    backlog = MAX_CONNECTIONS

    async def start(  # type: ignore[override]
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[Path | None, Path | None] = (None, None),
    ) -> str:
        """Listen, over TLS with a certificate and key given."""
        try:
            url = await super().start(host, port, tls_context(*tls))
        except OSError as exc:
            log.error(
                "status page: cannot listen on %s:%d (%s); running without it", host, port, exc
            )
            return ""
        login = "a login" if self.login.enabled else "no login"
        log.info("status page, metrics and health on %s/ (%s)", url, login)
        return url

    def _connection(self) -> asyncio.BaseProtocol:
        """A protocol for a new connection, within ``MAX_CONNECTIONS``."""
        assert self._runner is not None and self._runner.server is not None
        server = self._runner.server
        handlers = server.connections  # oldest first
        if len(handlers) >= MAX_CONNECTIONS:
            idle = [
                h
                for h in handlers
                if not getattr(h, "_request_in_progress", False)
                and not getattr(h, "_force_close", False)  # already on its way out
            ]
            if not idle:
                return _Refuse()
            idle[0].force_close()
            self.dropped += 1
        return server()

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(
            body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(self, request: web.Request) -> web.Response:
        problems = list(self.snapshot().problems)
        status = 503 if problems else 200
        return web.json_response({"ready": not problems, "problems": problems}, status=status)

    async def page(self, request: web.Request) -> web.Response:
        view = self.snapshot(detail=True)
        user = request.get(USER)
        if user is not None and self.acknowledge is not None:
            view = replace(view, viewer=user, token=self._token(user))
        return web.Response(text=render(view), content_type="text/html")

    async def ilert(self, request: web.Request) -> web.Response:
        """ilert's alert action (its default webhook body), behind the login: ilert sends
        the URL's userinfo as basic auth. Bad input changes nothing and gets a 4xx."""
        if request.get(USER) is None or self.from_ilert is None:
            return web.Response(status=403, text="/ilert needs a login ([status.users])\n")
        if (request.content_length or 0) > MAX_ILERT:
            return self._refused(request, 413, "a body over 64 KB")
        try:
            raw = await request.content.read(MAX_ILERT + 1)
            if len(raw) > MAX_ILERT:
                return self._refused(request, 413, "a body over 64 KB")
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return self._refused(request, 400, "not JSON")
        if not isinstance(payload, dict):
            return self._refused(request, 400, "not a JSON object")
        status = self.from_ilert(payload)
        if status != 200:
            why = (
                "no occurrence with this alertKey" if status == 404 else "not ilert's alert action"
            )
            return self._refused(request, status, why)
        return web.json_response({"ok": True})

    def _refused(self, request: web.Request, status: int, why: str) -> web.Response:
        if self._bad_input.hit():  # at most one line now and then
            log.warning(
                "status: /ilert from %s refused: %s (%d such so far)",
                request.remote,
                why,
                self._bad_input.count,
            )
        return web.Response(status=status, text=f"{why}\n")

    def _token(self, user: str) -> str:
        return hmac.new(self._secret, user.encode(), hashlib.sha256).hexdigest()[:32]

    async def ack(self, request: web.Request) -> web.Response:
        """The Acknowledge form: a logged-in user, the same origin, and the page's token;
        then the same path as ``ixon-agent ack``, and back to the page."""
        user = request.get(USER)
        if user is None or self.acknowledge is None:
            return web.Response(status=403, text="acknowledging needs a login ([status.users])\n")
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        if origin is not None and urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text="a form of another site\n")
        if (request.content_length or 0) > MAX_FORM:
            return web.Response(status=413, text="too large\n")
        form = await request.post()
        token, alarm = str(form.get("token", "")), str(form.get("alarm", ""))
        if not hmac.compare_digest(token, self._token(user)):
            return web.Response(status=403, text="the page is out of date: reload it\n")
        name = self.acknowledge(alarm, user, str(form.get("comment", "")).strip()[:200])
        if name is None:
            return web.Response(status=404, text="no such alarm\n")
        raise web.HTTPSeeOther("/")
