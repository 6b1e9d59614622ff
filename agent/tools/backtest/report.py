"""A replay as a table (one row per alarm, a second config beside the first) or JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.tools.backtest.data import Reading
from agent.tools.backtest.replay import Figures, Replay


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _when(unix: float | None) -> str:
    if unix is None:
        return "-"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cells(f: Figures | None) -> list[str]:
    if f is None:
        return ["(not in this config)", "", "", "", ""]
    sent = ", ".join(f"{w} {n}" for (w, k), n in sorted(f.sent.items()) if k == "start")
    return [
        f"{f.pages} ({sent})" if sent else "0",
        str(f.occurrences),
        _span(f.active),
        _span(f.longest),
        str(f.held_back),
    ]


def _diff(a: Figures | None, b: Figures | None) -> str:
    if a is None or b is None:
        return ""
    change = b.pages - a.pages
    return f"{change:+d} pages" if change else "same"


def table(data: Path, reading: Reading, runs: list[tuple[Path, Replay]]) -> str:
    first = runs[0][1]
    span = (first.last or 0) - (first.first or 0)
    lines = [
        f"replay of {data}: {reading.rows:,} rows, {reading.values:,} values,"
        f" {_when(first.first)} to {_when(first.last)} UTC ({_span(span)})"
    ]
    if reading.unknown:
        lines.append(f"skipped, not in the config: {', '.join(reading.unknown)}")
    if reading.skipped:
        lines.append(f"skipped bad rows: {reading.skipped}")
    names = list(dict.fromkeys(n for _, r in runs for n in r.alarms))
    head = ["alarm"]
    for path, _ in runs:
        tag = f" [{path.name}]" if len(runs) > 1 else ""
        head += [f"pages{tag}", "occurrences", "active", "longest", "held back"]
    if len(runs) == 2:
        head.append("difference")
    rows = [head]
    for name in names:
        row = [name]
        for _, r in runs:
            row += _cells(r.alarms.get(name))
        if len(runs) == 2:
            row.append(_diff(runs[0][1].alarms.get(name), runs[1][1].alarms.get(name)))
        rows.append(row)
    totals = ["total pages"]
    for _, r in runs:
        totals += [str(sum(f.pages for f in r.alarms.values())), "", "", "", ""]
    if len(runs) == 2:
        a, b = (sum(f.pages for f in r.alarms.values()) for _, r in runs)
        totals.append(f"{b - a:+d} pages" if b != a else "same")
    rows.append(totals)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append(
        "pages: starts sent, per webhook (min_severity and notify_ended applied); held back:"
        " starts flapping control did not send"
    )
    return "\n".join(lines)


def as_json(data: Path, reading: Reading, runs: list[tuple[Path, Replay]]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "data": str(data),
        "rows": reading.rows,
        "values": reading.values,
        "unknown_columns": reading.unknown,
        "skipped_rows": reading.skipped,
        "configs": [
            {
                "config": str(path),
                "first": r.first,
                "last": r.last,
                "alarms": {n: f.as_json() for n, f in r.alarms.items()},
            }
            for path, r in runs
        ],
    }
    if len(runs) == 2:
        a, b = runs[0][1].alarms, runs[1][1].alarms
        found["difference"] = {
            n: (b[n].pages - a[n].pages) if n in a and n in b else None for n in {*a, *b}
        }
    return found
