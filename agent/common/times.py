"""Wall-clock timestamps, for messages and displays only (durations use the monotonic clock)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """``2026-11-22T10:00:03.120Z``: UTC with milliseconds, as IXON writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_timestamp(seconds: float, timespec: str = "milliseconds") -> str:
    """``iso`` for a POSIX timestamp (a log record's, a dead letter's)."""
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def span(seconds: float) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``2.5 h``, ``3.0 d``."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"
