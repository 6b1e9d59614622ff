"""The alarm journal, in the state database beside the outbox: recent occurrences (for the
status page's history) and shelved alarms (``ixon-agent shelve``).

History rows are written in the transaction that queues their messages, so the page never
shows an occurrence the outbox does not know, nor the reverse. Their delivery state is not
stored: it is read from the outbox and the dead-letter table when the page asks, so
delivery pays nothing for it. The table keeps the last ``HISTORY_KEEP`` occurrences (up to
``TRIM_BATCH`` more between two trims).

A shelf's end is in agent-clock seconds (``Store.now``), like every due time here, so
setting the wall clock neither ends a shelf early nor makes it last for days.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: occurrences kept; older ones are deleted as new ones come, TRIM_BATCH at a time
HISTORY_KEEP = 500
TRIM_BATCH = 50

#: the journal's tables as schema 3 made them (a migration from 2 creates these)
BASE = """
CREATE TABLE IF NOT EXISTS history (
    occurrence_id TEXT PRIMARY KEY,
    alarm_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    started       TEXT NOT NULL,  -- ISO wall time, shown only
    ended         TEXT,
    start_values  TEXT NOT NULL,  -- JSON list
    end_values    TEXT,
    webhooks      TEXT NOT NULL   -- JSON list: the webhooks it was queued for
);
CREATE TABLE IF NOT EXISTS shelf (
    alarm_id      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    until         REAL NOT NULL,  -- agent clock
    reason        TEXT NOT NULL,
    by            TEXT NOT NULL,  -- who shelved it (the user running the command)
    created       REAL NOT NULL   -- wall time, shown only
)
"""
#: schema 5: acknowledgements (IXON's acknowledged, acknowledgedBy, acknowledgedOn,
#: comment) on each occurrence, and the requests ``ixon-agent ack`` leaves for the agent
ACKS = """
ALTER TABLE history ADD COLUMN acked_by TEXT;
ALTER TABLE history ADD COLUMN acked_on TEXT;  -- ISO wall time, shown only
ALTER TABLE history ADD COLUMN ack_comment TEXT;
ALTER TABLE history ADD COLUMN ilert TEXT;  -- JSON: ilert's side, from its alert actions
CREATE TABLE IF NOT EXISTS ack_request (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the agent remembers ids
    alarm_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    by            TEXT NOT NULL,
    comment       TEXT NOT NULL,
    created       REAL NOT NULL   -- wall time, shown only
)
"""
SCHEMA = BASE + ";" + ACKS


@dataclass(frozen=True)
class Delivery:
    """Where an occurrence's messages to one webhook are."""

    webhook: str
    state: str  # delivered | waiting | failed
    detail: str = ""  # attempts and last error, or why it failed


@dataclass(frozen=True)
class Occurrence:
    occurrence_id: str
    alarm_id: str
    name: str
    severity: str
    started: str  # ISO
    ended: str | None
    start_values: list[Any]
    end_values: list[Any] | None
    deliveries: tuple[Delivery, ...]
    acked_by: str | None = None
    acked_on: str | None = None  # ISO
    ack_comment: str | None = None
    webhooks: tuple[str, ...] = ()  # the webhooks it was queued for
    #: ilert's side, from its alert actions (``POST /ilert``): status, by, at, assigned
    ilert: Mapping[str, str] | None = None


@dataclass(frozen=True)
class AckRequest:
    """``ixon-agent ack``'s request, waiting for the running agent."""

    id: int
    alarm_id: str
    name: str
    by: str
    comment: str
    created: float  # wall


@dataclass(frozen=True)
class ShelfRow:
    alarm_id: str
    name: str
    until: float  # agent clock
    reason: str
    by: str
    created: float  # wall


def event(
    kind: str,
    occurrence_id: str,
    alarm_id: str,
    name: str,
    severity: str,
    at: str,
    values: list[Any],
    webhooks: Iterable[str],
) -> dict[str, Any]:
    """A start or end as the journal records it (plain data: it may wait in memory)."""
    return {
        "kind": kind,
        "occurrence_id": occurrence_id,
        "alarm_id": alarm_id,
        "name": name,
        "severity": severity,
        "at": at,
        "values": values,
        "webhooks": sorted(set(webhooks)),
    }


def write(db: sqlite3.Connection, events: Iterable[Mapping[str, Any]]) -> None:
    """Inside the caller's transaction. A start seen again (a restart's resend) is kept as
    first written; an end without its start (trimmed away) gets a row of its own."""
    wrote = False
    for e in events:
        if e["kind"] == "ilert":  # ilert's side of the occurrence, from an alert action
            db.execute(
                "UPDATE history SET ilert = ? WHERE occurrence_id = ?",
                (json.dumps(e["ilert"]), e["occurrence_id"]),
            )
            continue
        if e["kind"] == "ack":  # an acknowledgement, and the request it answers
            db.execute(
                "UPDATE history SET acked_by = ?, acked_on = ?, ack_comment = ?"
                " WHERE occurrence_id = ? AND acked_by IS NULL",
                (e["by"], e["at"], e["comment"], e["occurrence_id"]),
            )
            if e["request"] is not None:
                db.execute("DELETE FROM ack_request WHERE id = ?", (e["request"],))
            continue
        wrote = True
        values, webhooks = json.dumps(e["values"]), json.dumps(e["webhooks"])
        if e["kind"] == "start":
            db.execute(
                "INSERT OR IGNORE INTO history (occurrence_id, alarm_id, name, severity,"
                " started, ended, start_values, end_values, webhooks)"
                " VALUES (?, ?, ?, ?, ?, NULL, ?, NULL, ?)",
                (e["occurrence_id"], e["alarm_id"], e["name"], e["severity"], e["at"], values,
                 webhooks),
            )  # fmt: skip
            continue
        db.execute(
            "INSERT INTO history (occurrence_id, alarm_id, name, severity, started, ended,"
            " start_values, end_values, webhooks) VALUES (?, ?, ?, ?, ?, ?, '[]', ?, ?) ON CONFLICT"
            " (occurrence_id) DO UPDATE SET ended = excluded.ended,"
            " end_values = excluded.end_values, webhooks = (SELECT json_group_array(value)"
            " FROM (SELECT value FROM json_each(history.webhooks)"
            " UNION SELECT value FROM json_each(excluded.webhooks) ORDER BY value))",
            (e["occurrence_id"], e["alarm_id"], e["name"], e["severity"], e["at"], e["at"],
             values, webhooks),
        )  # fmt: skip
    if wrote:  # trimmed in batches: the oldest rows' pages are written once per batch
        db.execute(
            "DELETE FROM history WHERE rowid <= (SELECT MAX(rowid) FROM history) - :keep"
            " AND (SELECT MAX(rowid) - MIN(rowid) FROM history) >= :keep + :batch",
            {"keep": HISTORY_KEEP, "batch": TRIM_BATCH},
        )


def recent(db: sqlite3.Connection, limit: int, gone: str = "") -> list[Occurrence]:
    """The last ``limit`` occurrences, newest first, with where each message is.
    ``gone``: a SQL condition on ``o.id`` for waiting rows that are in fact delivered."""
    rows = db.execute("SELECT * FROM history ORDER BY rowid DESC LIMIT ?", (limit,)).fetchall()
    ids = [r["occurrence_id"] for r in rows]
    marks = ",".join("?" * len(ids))
    waiting: dict[tuple[str, str], tuple[int, str | None]] = {}
    failed: dict[tuple[str, str], str] = {}
    if ids:
        where = f"o.occurrence_id IN ({marks})" + (f" AND NOT ({gone})" if gone else "")
        for r in db.execute(
            f"SELECT o.occurrence_id, o.webhook, MAX(o.attempts), MAX(o.last_error)"
            f" FROM outbox AS o WHERE {where} GROUP BY o.occurrence_id, o.webhook",
            ids,
        ):
            waiting[(r[0], r[1])] = (int(r[2]), r[3])
        for r in db.execute(
            f"SELECT occurrence_id, webhook, MAX(reason) FROM dead_letter"
            f" WHERE occurrence_id IN ({marks}) GROUP BY occurrence_id, webhook",
            ids,
        ):
            failed[(r[0], r[1])] = r[2]
    out = []
    for r in rows:
        deliveries = []
        for webhook in json.loads(r["webhooks"]):
            key = (r["occurrence_id"], webhook)
            if key in waiting:
                attempts, error = waiting[key]
                detail = f"{attempts} attempt(s)" + (f", {error}" if error else "")
                deliveries.append(Delivery(webhook, "waiting", detail))
            elif key in failed:
                deliveries.append(Delivery(webhook, "failed", failed[key]))
            else:
                deliveries.append(Delivery(webhook, "delivered"))
        out.append(
            Occurrence(
                r["occurrence_id"],
                r["alarm_id"],
                r["name"],
                r["severity"],
                r["started"],
                r["ended"],
                json.loads(r["start_values"]),
                json.loads(r["end_values"]) if r["end_values"] is not None else None,
                tuple(deliveries),
                r["acked_by"],
                r["acked_on"],
                r["ack_comment"],
                tuple(json.loads(r["webhooks"])),
                json.loads(r["ilert"]) if r["ilert"] else None,
            )
        )
    return out


def ack_event(
    request: int | None, occurrence_id: str, by: str, comment: str, at: str
) -> dict[str, Any]:
    """An acknowledgement as the journal records it (plain data: it may wait in memory),
    with the ``ixon-agent ack`` request it answers, if one did (not ilert's accept)."""
    return {
        "kind": "ack",
        "request": request,
        "occurrence_id": occurrence_id,
        "by": by,
        "comment": comment,
        "at": at,
    }


def request_ack(db: sqlite3.Connection, alarm_id: str, name: str, by: str, comment: str,
                created: float) -> int:  # fmt: skip
    cursor = db.execute(
        "INSERT INTO ack_request (alarm_id, name, by, comment, created) VALUES (?, ?, ?, ?, ?)",
        (alarm_id, name, by, comment, created),
    )
    return int(cursor.lastrowid or 0)


def ack_requests(db: sqlite3.Connection) -> list[AckRequest]:
    rows = db.execute(
        "SELECT id, alarm_id, name, by, comment, created FROM ack_request ORDER BY id"
    ).fetchall()
    return [AckRequest(*row) for row in rows]


def drop_ack_request(db: sqlite3.Connection, request_id: int) -> None:
    db.execute("DELETE FROM ack_request WHERE id = ?", (request_id,))


def to_acknowledge(db: sqlite3.Connection, alarm_id: str) -> Occurrence | None:
    """The occurrence an acknowledgement of ``alarm_id`` is for: the current one, else the
    last that ended without one. None: nothing to acknowledge."""
    row = db.execute(
        "SELECT occurrence_id FROM history WHERE alarm_id = ? AND acked_by IS NULL"
        " ORDER BY (ended IS NULL) DESC, rowid DESC LIMIT 1",
        (alarm_id,),
    ).fetchone()
    if row is None:
        return None
    found = [o for o in recent_by_id(db, row[0])]
    return found[0] if found else None


def recent_by_id(db: sqlite3.Connection, occurrence_id: str) -> list[Occurrence]:
    rows = db.execute("SELECT * FROM history WHERE occurrence_id = ?", (occurrence_id,))
    return [
        Occurrence(
            r["occurrence_id"], r["alarm_id"], r["name"], r["severity"], r["started"],
            r["ended"], json.loads(r["start_values"]),
            json.loads(r["end_values"]) if r["end_values"] is not None else None, (),
            r["acked_by"], r["acked_on"], r["ack_comment"], tuple(json.loads(r["webhooks"])),
            json.loads(r["ilert"]) if r["ilert"] else None,
        )
        for r in rows
    ]  # fmt: skip


def shelves(db: sqlite3.Connection) -> list[ShelfRow]:
    rows = db.execute("SELECT alarm_id, name, until, reason, by, created FROM shelf").fetchall()
    return [ShelfRow(*row) for row in rows]


def shelve(db: sqlite3.Connection, row: ShelfRow) -> None:
    db.execute(
        "INSERT OR REPLACE INTO shelf VALUES (?, ?, ?, ?, ?, ?)",
        (row.alarm_id, row.name, row.until, row.reason, row.by, row.created),
    )


def unshelve(db: sqlite3.Connection, alarm_ids: Iterable[str]) -> int:
    cursor = db.executemany("DELETE FROM shelf WHERE alarm_id = ?", [(a,) for a in alarm_ids])
    return cursor.rowcount
