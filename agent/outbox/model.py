"""What the store holds and says: a message to enqueue, an entry of the outbox, what waits
in memory while the file cannot be written, and the errors that mean the file cannot be used."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.common.values import json_safe


class StoreError(Exception):
    """The state directory or its database cannot be used (permissions, disk, corruption)."""


class StoreDamaged(StoreError):
    """The database file has damaged pages: the agent must not go on with it."""


def damaged(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def damage_report(path: Path, problem: str) -> str:
    problem = " ".join(problem.split())
    return (
        f"agent.state_dir: the state database {path} is damaged ({problem}). Stop the agent,"
        f" move the file aside (mv {path} {path}.damaged, and its -wal and -shm files if any)"
        " and start the agent again: it creates a new database and evaluates every alarm"
        " afresh, so alerts it had opened may have to be resolved by hand. Undelivered"
        f" messages can be recovered from the old file: sqlite3 {path}.damaged .recover"
    )


@dataclass(frozen=True)
class Message:
    """A message to enqueue: its body and what ordering and listing need to know."""

    webhook: str
    occurrence_id: str
    kind: str  # start | end | test
    severity: str
    label: str
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Held:
    """What a store keeps in memory while its file cannot be written."""

    states: list[Mapping[str, Any]]
    messages: list[Message]
    forget: set[str]
    history: list[Mapping[str, Any]]


@dataclass(frozen=True)
class Entry:
    """A message in the outbox (or the dead-letter table)."""

    id: int
    webhook: str
    occurrence_id: str
    kind: str
    severity: str
    label: str
    body: dict[str, Any]
    created: float  # wall time, shown only
    enqueued: float  # agent clock
    attempts: int
    next_attempt: float
    last_error: str | None
    reason: str | None = None
    status: int | None = None
    response: str | None = None  # what a receiver answered when it refused (redacted)
    died: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        data = dict(row)
        text = data["body"]
        data["body"] = json.loads(text)
        if "NaN" in text or "Infinity" in text:  # queued by a version that allowed them
            data["body"] = json_safe(data["body"])
        data.setdefault("next_attempt", 0.0)
        data.setdefault("enqueued", 0.0)
        data.pop("lease_until", None)
        data.pop("lease_pid", None)
        return cls(**data)
