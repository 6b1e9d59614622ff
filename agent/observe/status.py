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
import html
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent import __version__
from agent.alarms.states import State, Transition
from agent.common.values import show
from agent.delivery.deliverer import Result
from agent.observe.logs import one_line_logger
from agent.observe.snapshot import Snapshot
from agent.observe.web import WebServer
from agent.sources.modbus.wire import EXCEPTION_NAMES

log = logging.getLogger("agent.status")

PREFIX = "ixon_agent"
#: the failure kinds a Modbus source counts: exported at 0 before they first happen
ERROR_KINDS = ("not connected", "no reply", "protocol error", *EXCEPTION_NAMES.values())
MAX_VALUES = 200  # variables listed on the status page
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
            for kind in sorted({*ERROR_KINDS, *stats.errors}):
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

    def __init__(self, snapshot: Callable[[], Snapshot], metrics: Metrics) -> None:
        self.snapshot = snapshot
        self.registry = metrics.registry
        metrics.connections_dropped = lambda: self.dropped
        self.dropped = 0  # connections closed to make room
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self.page),
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
            ]
        )
        super().__init__(app, http_log, keepalive=IDLE_TIMEOUT)

    backlog = MAX_CONNECTIONS

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        try:
            url = await super().start(host, port)
        except OSError as exc:
            log.error(
                "status page: cannot listen on %s:%d (%s); running without it", host, port, exc
            )
            return ""
        log.info("status page, metrics and health on %s/", url)
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
        return web.Response(text=render(self.snapshot()), content_type="text/html")


def _ago(moment: float | None, now: float) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, now - moment)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.1f} h ago"


def render(view: Snapshot) -> str:
    """Plain server-rendered HTML, refreshing itself; readable on a phone."""
    e = html.escape
    now = time.monotonic()  # ages; the wall clock only for the "updated" stamp
    sources = []
    for source in view.sources:
        name, stats = source.name, source.stats
        state = "online" if source.online else ("offline" if stats.cycles else "starting")
        errors = ", ".join(f"{k} {v}" for k, v in stats.errors.most_common(3)) or "none"
        sources.append(
            f'<tr class="{state}"><td>{e(name)}</td><td>{e(source.address)}</td>'
            f'<td class="state">{state}</td><td>{_ago(stats.last_read_mono, now)}</td>'
            f"<td>{stats.requests}</td><td>{e(errors)}</td></tr>"
        )
    shown = view.values
    values = "".join(
        f'<tr><td>{e(key)}</td><td class="num">{e(show(value, unit))}</td></tr>'
        for key, unit, value in shown[:MAX_VALUES]
    )
    if len(shown) > MAX_VALUES:  # a page for a phone, not a data dump
        more = len(shown) - MAX_VALUES
        values += f'<tr><td colspan="2">and {more} more: see /metrics or ixon-agent read</td></tr>'

    active = [alarm for alarm in view.alarms if alarm.active]
    rows = []
    for alarm in active:
        when = alarm.occurred_on
        since = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "?"
        rows.append(
            f'<tr class="sev-{e(alarm.severity)}"><td>{e(alarm.name)}</td>'
            f"<td>{e(alarm.severity)}</td><td>{since}</td>"
            f"<td>{'yes' if alarm.notified else 'held back (flapping)'}</td></tr>"
        )
    alarms = "".join(rows) or '<tr><td colspan="4">No active alarms.</td></tr>'
    outbox = view.outbox
    waiting = "".join(
        f"<li>{e(m.webhook)}: {e(m.label)}, {m.attempts} attempt(s)"
        + (f", last error {e(m.last_error)}" if m.last_error else "")
        + "</li>"
        for m in outbox.first
    )
    problems = view.problems
    ready = "ready" if not problems else "not ready: " + "; ".join(problems)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(view.agent_name)}: ixon-agent</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: .8rem; max-width: 60rem; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 1rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .35rem; text-align: left; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.online .state {{ color: #070; }} .offline .state {{ color: #b00; font-weight: bold; }}
.sev-high td:first-child {{ color: #b00; font-weight: bold; }}
.scroll {{ overflow-x: auto; }}
</style></head><body>
<h1>{e(view.agent_name)}</h1>
<p id="summary">ixon-agent {__version__}, up {_ago(view.started, now).removesuffix(" ago")},
{e(ready)}. Updated {stamp} UTC.</p>
<h2>Sources</h2><div class="scroll"><table id="sources"><thead><tr><th>Source</th><th>Address</th>
<th>State</th><th>Last read</th><th>Requests</th><th>Errors</th></tr></thead>
<tbody>{"".join(sources)}</tbody></table></div>
<h2>Active alarms ({len(active)})</h2>
<div class="scroll"><table id="alarms"><thead><tr><th>Alarm</th>
<th>Severity</th><th>Since</th><th>Notified</th></tr></thead><tbody>{alarms}</tbody></table></div>
<h2>Outbox</h2><p id="outbox">{outbox.pending} waiting, {outbox.dead} dead-lettered,
oldest waiting {outbox.oldest_age:.0f} s.</p><ul>{waiting}</ul>
<h2>Values</h2><div class="scroll"><table id="values"><tbody>{values}</tbody></table></div>
</body></html>
"""
