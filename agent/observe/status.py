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
from agent.common.times import iso, span
from agent.common.values import show
from agent.delivery.deliverer import Result
from agent.observe.logs import one_line_logger
from agent.observe.snapshot import TREND_STEP, AlarmView, Snapshot, Snapshots, VariableView
from agent.observe.web import WebServer
from agent.sources.modbus.wire import EXCEPTION_NAMES

log = logging.getLogger("agent.status")

PREFIX = "ixon_agent"
#: the failure kinds a Modbus source counts: exported at 0 before they first happen
ERROR_KINDS = ("not connected", "no reply", "protocol error", *EXCEPTION_NAMES.values())
MAX_VALUES = 200  # variables (and normal alarms) listed on the status page
MAX_CARDS = 100  # alarms not normal shown in full; the rest are counted
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

    def __init__(self, snapshot: Snapshots, metrics: Metrics) -> None:
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
        return web.Response(text=render(self.snapshot(detail=True)), content_type="text/html")


def _ago(moment: float | None, now: float) -> str:
    return "never" if moment is None else span(now - moment) + " ago"


def _when(moment: datetime | str | None) -> str:
    """A time the browser shows in its own time zone; the agent's local time without JS."""
    if moment is None:
        return "?"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    local = moment.astimezone()
    text = local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")
    return f'<time datetime="{iso(moment)}">{html.escape(text.strip())}</time>'


_RANK = {"high": 0, "medium": 1, "low": 2}
_ORDER = {State.ACTIVE: 0, State.CLEARING: 1, State.PENDING: 2, State.NORMAL: 3}


def _sparkline(
    points: tuple[float, ...], current: VariableView | None, boolean: bool = False
) -> str:
    """An inline SVG of recent values, with their range in words (no script, no library);
    ``boolean``: the points are 0 and 1, read as false and true."""
    if len(points) < 2:
        return ""
    low, high = min(points), max(points)
    spread = (high - low) or 1.0
    step = 100 / (len(points) - 1)
    path = " ".join(
        f"{i * step:.1f},{22 - 20 * (v - low) / spread:.1f}" for i, v in enumerate(points)
    )
    minutes = len(points) * TREND_STEP / 60
    unit = current.unit if current else None
    if boolean or (current is not None and isinstance(current.value, bool)):
        span_text = "false and true" if low != high else show(bool(low))
    else:
        span_text = f"{html.escape(show(low, unit))} to {html.escape(show(high, unit))}"
    return (
        f'<div class="trend"><svg viewBox="0 0 100 24" preserveAspectRatio="none"'
        f' role="img" aria-label="recent values"><polyline points="{path}"/></svg>'
        f"<small>last {minutes:.0f} min: {span_text}</small></div>"
    )


def _alarm_card(alarm: AlarmView, view: Snapshot, values: dict[str, VariableView]) -> str:
    e = html.escape
    if alarm.shelf is not None and alarm.state is State.NORMAL:
        state = "shelved"
    else:
        state = alarm.state.value
    lines = []
    if alarm.reading:
        lines.append(f'<span class="reading">{e(alarm.reading)}</span>')
    lines.append(f"condition: {e(alarm.condition)}")
    facts = [" &middot; ".join(lines)]
    if alarm.active:
        facts.append(f"since {_when(alarm.occurred_on)}")
    if alarm.state is State.PENDING and alarm.due_in is not None:
        facts.append(f"starts in {span(alarm.due_in)} if the condition holds (on-delay)")
    if alarm.state is State.CLEARING and alarm.due_in is not None:
        facts.append(f"ends in {span(alarm.due_in)} if the condition stays gone (off-delay)")
    if alarm.shelf is not None:
        reason = f": {e(alarm.shelf.reason)}" if alarm.shelf.reason else ""
        facts.append(f"<b>shelved</b> until {_when(alarm.shelf_ends)}{reason}")
    elif alarm.active and not alarm.notified:
        facts.append("<b>not notified</b>: held back by flapping control")
    if alarm.bit is not None and alarm.inputs and alarm.inputs[0] in view.trends:
        bit = alarm.bit  # its own bit of the word, as false and true
        trend = view.trends[alarm.inputs[0]]
        trends = _sparkline(tuple(float(int(p) >> bit & 1) for p in trend), None, boolean=True)
    else:
        trends = "".join(
            _sparkline(view.trends[key], values.get(key))
            for key in alarm.inputs
            if key in view.trends
        )
    instructions = f'<p class="instr">{e(alarm.instructions)}</p>' if alarm.instructions else ""
    shelved = ' <span class="state">shelved</span>' if alarm.shelf and state != "shelved" else ""
    return (
        f'<article class="card sev-{e(alarm.severity)} st-{state}">'
        f'<h3>{e(alarm.name)} <span class="badge">{e(alarm.severity)}</span>'
        f' <span class="state">{state}</span>{shelved}</h3>'
        + "".join(f"<p>{fact}</p>" for fact in facts)
        + instructions
        + trends
        + "</article>"
    )


def _alarms(view: Snapshot) -> str:
    e = html.escape
    in_service = [a for a in view.alarms if a.in_service]
    notable: list[AlarmView] = []
    quiet: list[AlarmView] = []
    for a in in_service:
        (notable if a.state is not State.NORMAL or a.shelf is not None else quiet).append(a)
    notable.sort(key=lambda a: (_ORDER[a.state], _RANK.get(a.severity, 0), a.name))
    off = [a for a in view.alarms if not a.in_service]
    counts = Counter(
        "shelved" if a.shelf is not None and a.state is State.NORMAL else a.state.value
        for a in notable
    )
    counts["shelved"] = sum(1 for a in notable if a.shelf is not None)  # of any state
    parts = [f"{counts[s]} {s}" for s in ("active", "clearing", "pending", "shelved") if counts[s]]
    summary = ", ".join(parts) or "none active"
    out = [f'<h2 id="alarms">Alarms: {summary}</h2>']
    values = {v.key: v for v in view.values}
    out += [_alarm_card(a, view, values) for a in notable[:MAX_CARDS]]
    if len(notable) > MAX_CARDS:  # a page for a phone: the most urgent first, then a count
        more = len(notable) - MAX_CARDS
        out.append(f"<p>and {more} more not normal: see /metrics (ixon_agent_alarm_state)</p>")
    if quiet:
        shown = sorted(quiet, key=lambda a: (_RANK.get(a.severity, 0), a.name))[:MAX_VALUES]
        items = "".join(
            f'<li class="sev-{e(a.severity)}"><span class="dot"></span>{e(a.name)}'
            + (f" <small>{e(a.reading)}</small>" if a.reading else "")
            + "</li>"
            for a in shown
        )
        if len(quiet) > len(shown):
            items += f"<li>and {len(quiet) - len(shown)} more</li>"
        out.append(
            f"<details><summary>Normal ({len(quiet)})</summary>"
            f'<ul class="quiet">{items}</ul></details>'
        )
    if off:
        items = "".join(
            f'<li class="sev-{e(a.severity)}"><span class="dot"></span>{e(a.name)}'
            f" <small>out of service (enabled = false)</small></li>"
            for a in off
        )
        out.append(f'<h3>Out of service ({len(off)})</h3><ul class="quiet" id="oos">{items}</ul>')
    return "".join(out)


def _history(view: Snapshot) -> str:
    e = html.escape
    if not view.history:
        return '<p id="history">No alarm has occurred yet.</p>'
    items = []
    for o in view.history:
        started = datetime.fromisoformat(o.started)
        if o.ended:
            ended = datetime.fromisoformat(o.ended)
            span_text = (
                f"{_when(started)} to {_when(ended)} ({span((ended - started).total_seconds())})"
            )
        else:
            span_text = f"{_when(started)}, <b>still active</b>"
        deliveries = (
            " &middot; ".join(
                f'<span class="dl-{d.state}">{e(d.webhook)}: {d.state}'
                + (f" ({e(d.detail)})" if d.detail else "")
                + "</span>"
                for d in o.deliveries
            )
            or "no webhook"
        )
        items.append(
            f'<li class="sev-{e(o.severity)}"><span class="dot"></span><b>{e(o.name)}</b>'
            f" <small>{e(o.severity)}</small><br>{span_text}<br><small>{deliveries}</small></li>"
        )
    return f'<ul class="history" id="history">{"".join(items)}</ul>'


_STYLE = """
:root { --high: #c62828; --medium: #e65100; --low: #1565c0; --sev: #777; color-scheme: light; }
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: .6rem; max-width: 60rem;
       line-height: 1.35; overflow-wrap: anywhere; }
h1 { font-size: 1.4rem; margin: .2rem 0; } h2 { font-size: 1.15rem; margin: 1.2rem 0 .4rem; }
h3 { font-size: 1rem; margin: 0 0 .2rem; }
p { margin: .15rem 0; }
.sev-high { --sev: var(--high); } .sev-medium { --sev: var(--medium); }
.sev-low { --sev: var(--low); }
.card { border: 1px solid #ccc; border-left: .5rem solid var(--sev); border-radius: .4rem;
        padding: .45rem .6rem; margin: .45rem 0; }
.st-active, .st-clearing { background: color-mix(in srgb, var(--sev) 9%, white); }
.badge { background: var(--sev); color: #fff; border-radius: .3rem; padding: 0 .35rem;
         font-size: .75rem; text-transform: uppercase; vertical-align: middle; }
.state { font-size: .75rem; text-transform: uppercase; border: 1px solid currentColor;
         border-radius: .3rem; padding: 0 .3rem; vertical-align: middle; }
.st-active .state { color: var(--sev); font-weight: bold; }
.st-pending .state, .st-shelved .state { color: #555; }
.reading { font-weight: 600; font-variant-numeric: tabular-nums; }
.instr { background: #f6f6f6; border-radius: .3rem; padding: .3rem .45rem; margin-top: .35rem; }
.trend svg { width: 100%; height: 2rem; display: block; }
.trend polyline { fill: none; stroke: var(--sev); stroke-width: 1.5;
                  vector-effect: non-scaling-stroke; }
.trend small, small { color: #555; }
ul.quiet, ul.history, ul.sources { list-style: none; padding: 0; margin: .2rem 0; }
ul.quiet li, ul.history li, ul.sources li { padding: .3rem 0; border-bottom: 1px solid #e3e3e3; }
.dot { display: inline-block; width: .65rem; height: .65rem; border-radius: 50%;
       background: var(--sev); margin-right: .4rem; }
.dl-failed { color: var(--high); font-weight: bold; } .dl-waiting { color: var(--medium); }
.online { color: #2e7d32; } .offline { color: var(--high); font-weight: bold; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .3rem; text-align: left; vertical-align: top; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
summary { cursor: pointer; margin: .4rem 0; }
"""

#: the browser's own time zone for every <time> (the page reads well without it)
_LOCAL_TIME = """<script>
for (const t of document.querySelectorAll("time[datetime]")) {
  const d = new Date(t.getAttribute("datetime"));
  if (!isNaN(d)) { t.textContent = d.toLocaleString(); t.title = t.getAttribute("datetime"); }
}
</script>"""


def render(view: Snapshot) -> str:
    """Plain server-rendered HTML, refreshing itself, made for a phone beside the machine:
    alarms first, in every state, then their history, the sources, the values, the outbox."""
    e = html.escape
    now = time.monotonic()  # ages; the wall clock only for timestamps
    sources = []
    for source in view.sources:
        name, stats = source.name, source.stats
        state = "online" if source.online else ("offline" if stats.cycles else "starting")
        errors = ", ".join(f"{k} {v}" for k, v in stats.errors.most_common(3)) or "no errors"
        sources.append(
            f'<li><b>{e(name)}</b> <span class="{state}">{state}</span>'
            f" <small>{e(source.address)}</small><br><small>last read"
            f" {_ago(stats.last_read_mono, now)}, {stats.requests} requests,"
            f" {e(errors)}</small></li>"
        )
    shown = view.values
    values = "".join(
        f"<tr><td>{e(v.label)}<br><small>{e(v.key)}</small></td>"
        f'<td class="num">{e(v.shown)}</td></tr>'
        for v in shown[:MAX_VALUES]
    )
    if len(shown) > MAX_VALUES:  # a page for a phone, not a data dump
        more = len(shown) - MAX_VALUES
        values += f'<tr><td colspan="2">and {more} more: see /metrics or ixon-agent read</td></tr>'
    outbox = view.outbox
    waiting = "".join(
        f"<li>{e(m.webhook)}: {e(m.label)}, {m.attempts} attempt(s)"
        + (f", last error {e(m.last_error)}" if m.last_error else "")
        + "</li>"
        for m in outbox.first
    )
    problems = view.problems
    ready = "ready" if not problems else "not ready: " + "; ".join(problems)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(view.agent_name)}: ixon-agent</title>
<style>{_STYLE}</style></head><body>
<h1>{e(view.agent_name)}</h1>
<p id="summary">ixon-agent {__version__}, up {_ago(view.started, now).removesuffix(" ago")},
{e(ready)}. Updated {_when(datetime.now(UTC))}.</p>
{_alarms(view)}
<h2>History</h2>{_history(view)}
<h2>Sources</h2><ul class="sources" id="sources">{"".join(sources)}</ul>
<h2>Values</h2><table id="values"><thead><tr><th>Variable</th><th class="num">Value</th></tr>
</thead><tbody>{values}</tbody></table>
<h2>Outbox</h2><p id="outbox">{outbox.pending} waiting, {outbox.dead} dead-lettered,
oldest waiting {outbox.oldest_age:.0f} s.</p><ul>{waiting}</ul>
{_LOCAL_TIME}
</body></html>
"""
