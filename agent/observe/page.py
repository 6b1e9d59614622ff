"""The status page: sources, live values, alarm cards, the history; plain HTML that works
on a phone and without JavaScript. Pure: a snapshot in, a page out."""

from __future__ import annotations

import html
import time
from collections import Counter
from datetime import UTC, datetime

from agent import __version__
from agent.alarms.states import State
from agent.common.times import iso, span
from agent.common.values import show
from agent.observe.snapshot import TREND_STEP, AlarmView, Snapshot, VariableView
from agent.outbox.journal import Occurrence

MAX_VALUES = 200  # variables (and normal alarms) listed on the status page
MAX_CARDS = 100  # alarms not normal shown in full; the rest are counted


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
    if alarm.active and alarm.occurrence_id is not None:
        facts.append(_ack_state(alarm.alarm_id, alarm.occurrence_id, view))
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
            f" <small>{e(o.severity)}</small><br>{span_text}{_ack(o, view)}"
            f"{_ilert_side(o, active=o.ended is None)}"
            f"<br><small>{deliveries}</small></li>"
        )
    return f'<ul class="history" id="history">{"".join(items)}</ul>'


def _ack_state(alarm_id: str, occurrence_id: str, view: Snapshot) -> str:
    """An active alarm's acknowledgement: who and when, or the form to give one; and what
    ilert says of it."""
    found = view.current.get(occurrence_id) or next(
        (o for o in view.history if o.occurrence_id == occurrence_id), None
    )
    ilert = _ilert_side(found, active=True) if found is not None else ""
    if found is not None and found.acked_by is not None:
        return _ack(found, view).removeprefix("<br>") + ilert
    return '<span class="unacked">not acknowledged</span>' + ilert + _ack_form(alarm_id, view)


def _ilert_side(o: Occurrence, active: bool) -> str:
    """ilert's side, from its alert actions: accepted by whom and when, assigned to whom,
    resolved there (while it may still be active here)."""
    side = o.ilert or {}
    e = html.escape
    parts = []
    if side.get("status") == "accepted":
        parts.append(f"accepted by {e(side.get('by', '?'))} in ilert, {_when(side.get('at'))}")
    elif side.get("status") == "resolved":
        here = ", still active here" if active else ""
        parts.append(f"resolved in ilert, {_when(side.get('at'))}{here}")
    if side.get("assigned"):
        parts.append(f"assigned to {e(side['assigned'])}")
    return "".join(f'<br><span class="ilert">{p}</span>' for p in parts)


def _ack_form(alarm_id: str, view: Snapshot) -> str:
    """A plain form (no JavaScript needed), for a logged-in viewer only."""
    if view.viewer is None:
        return ""
    e = html.escape
    return (
        f'<form class="ack" method="post" action="/ack">'
        f'<input type="hidden" name="alarm" value="{e(alarm_id)}">'
        f'<input type="hidden" name="token" value="{e(view.token)}">'
        '<input name="comment" maxlength="200" placeholder="comment (optional)"'
        ' aria-label="comment">'
        "<button>Acknowledge</button></form>"
    )


def _ack(o: Occurrence, view: Snapshot) -> str:
    """Who acknowledged an occurrence and when; or that nobody has, while it is active or
    its alarm waits for a person (``auto_acknowledge = false``)."""
    e = html.escape
    if o.acked_by is not None:
        comment = f": &ldquo;{e(o.ack_comment)}&rdquo;" if o.ack_comment else ""
        when = _when(o.acked_on) if o.acked_on else ""
        return f'<br><span class="acked">acknowledged by {e(o.acked_by)}, {when}{comment}</span>'
    if o.ended is None:
        return '<br><span class="unacked">not acknowledged</span>'
    if o.name in view.manual_ack:
        form = _ack_form(o.alarm_id, view)
        return f'<br><span class="unacked">not acknowledged</span>{form}'
    return ""


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
form.ack { display: flex; gap: .3rem; margin-top: .3rem; flex-wrap: wrap; }
form.ack input[name=comment] { flex: 1 1 10rem; min-width: 0; font: inherit; padding: .35rem; }
form.ack button { font: inherit; padding: .35rem .8rem; border-radius: .3rem;
                  border: 1px solid var(--sev); background: var(--sev); color: #fff; }
.acked { color: #2e7d32; } .ilert { color: #4527a0; }
.unacked { color: var(--sev); font-weight: bold; }
.online { color: #2e7d32; } .offline { color: var(--high); font-weight: bold; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .3rem; text-align: left; vertical-align: top; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
summary { cursor: pointer; margin: .4rem 0; }
"""

#: the browser's own time zone for every <time> (the page reads well without it); a reload
#: every 5 s that waits while someone types a comment (without JavaScript: a plain refresh)
_LOCAL_TIME = """<script>
setInterval(() => {
  const busy = [...document.querySelectorAll("form.ack input[name=comment]")]
    .some((i) => i.value || i === document.activeElement);
  if (!busy) location.reload();
}, 5000);
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
<html lang="en"><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="5"></noscript>
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
