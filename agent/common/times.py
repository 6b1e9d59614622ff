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
