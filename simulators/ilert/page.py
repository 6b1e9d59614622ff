"""The stand-in's read-only page of alerts."""

from __future__ import annotations

import html

from simulators.ilert.alerts import Alert


def render_page(alerts: list[Alert]) -> str:
    """Server-rendered, read-only, refreshing itself every 2 seconds."""
    e = html.escape
    rows = []
    for a in reversed(alerts):
        responders = ", ".join(r["user"]["username"] for r in a.responders)
        timeline = "".join(
            f"<li><time>{e(t['timestamp'])}</time> {e(t['eventType'])}"
            + (f": {e(t['note'])}" if t.get("note") else "")
            + "</li>"
            for t in a.timeline
        )
        rows.append(
            f'<tr class="alert {e(a.status.lower())}" data-id="{a.id}"><td>#{a.id}</td>'
            f'<td class="status">{e(a.status)}</td><td class="priority">{e(a.priority)}</td>'
            f"<td>{e(a.summary)}<details><summary>timeline ({len(a.timeline)})</summary>"
            f"<ul>{timeline}</ul></details></td><td>{e(a.source.name)}</td>"
            f'<td class="policy">{e(a.policy.name)} (level {a.level + 1})</td>'
            f"<td>{e(responders)}</td><td>{e(a.report_time)}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="8">No alerts yet.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ilert stand-in: alerts</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; vertical-align: top; }}
.pending .status {{ color: #b00; font-weight: bold; }} .accepted .status {{ color: #b60; }}
.resolved .status {{ color: #070; }} .priority {{ font-weight: bold; }}
</style></head><body>
<h1>ilert stand-in: {len(alerts)} alert(s), {sum(a.status != "RESOLVED" for a in alerts)} open</h1>
<table><thead><tr><th>Id</th><th>Status</th><th>Priority</th><th>Summary</th><th>Source</th>
<th>Escalation policy</th><th>Responders</th><th>Reported</th></tr></thead>
<tbody>{body}</tbody></table></body></html>
"""
