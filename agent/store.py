"""The agent's durable state: one SQLite file under ``state_dir``.

- ``alarm_state``: what survives a restart of each alarm (active? notified?).
- ``outbox``: every message, committed before any attempt to send it, with its attempts,
  next attempt time and last error, so a restart resumes exactly where it was.
- ``dead_letter``: messages that cannot be delivered (rejected, expired, evicted), kept with
  the reason, never silently dropped; ``retry_dead`` puts them back.
- ``clock``: the agent clock (``Store.now``), seconds the agent has run against this file.

Durations are never taken from the wall clock, which a Raspberry Pi without a battery sets
from NTP some time after boot, often days forward, sometimes back. Due times, leases and a
message's age are in agent-clock seconds: monotonic while a process runs, carried over a
restart from the last value written, shared by processes that use the file at once. So a
jump of the wall clock by any amount neither expires nor delays a message, and ``max_age``
counts the time the agent spent trying, not the time it was switched off. Wall time is kept
only to be shown (``created``, ``died``, ``updated``).

An alarm's state change and the messages it causes are written in one transaction
(``record``), so a crash can neither lose nor repeat a notification. WAL journal,
``synchronous=FULL``, a busy timeout for the CLI reading beside the running agent. Webhook
URLs and integration keys are never stored: messages name their webhook, and secrets are
added when sending.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_state (
    alarm_id      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    active        INTEGER NOT NULL,
    occurrence_id TEXT,
    occurred_on   TEXT,
    notified      INTEGER NOT NULL DEFAULT 0,
    suppressed    INTEGER NOT NULL DEFAULT 0,
    snapshot      TEXT NOT NULL,
    updated       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook       TEXT NOT NULL,
    occurrence_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    label         TEXT NOT NULL,
    body          TEXT NOT NULL,
    created       REAL NOT NULL,  -- wall time, shown only
    enqueued      REAL NOT NULL,  -- agent clock: the start of its age
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  REAL NOT NULL,  -- agent clock
    last_error    TEXT,
    lease_until   REAL,
    lease_pid     INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_queue ON outbox (webhook, occurrence_id, id);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt);
CREATE TABLE IF NOT EXISTS dead_letter (
    id            INTEGER PRIMARY KEY,
    webhook       TEXT NOT NULL,
    occurrence_id TEXT NOT NULL,
    kind          TEXT NOT NULL,
    severity      TEXT NOT NULL,
    label         TEXT NOT NULL,
    body          TEXT NOT NULL,
    created       REAL NOT NULL,
    attempts      INTEGER NOT NULL,
    last_error    TEXT,
    reason        TEXT NOT NULL,
    status        INTEGER,
    response      TEXT,
    died          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clock (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    boot          TEXT,
    offset        REAL NOT NULL,
    holder        INTEGER,
    elapsed       REAL NOT NULL
);
"""

#: from a schema version to the next; a message's due time and lease were wall time in 1
_MIGRATIONS = {
    1: [
        "ALTER TABLE outbox ADD COLUMN enqueued REAL NOT NULL DEFAULT 0",
        "UPDATE outbox SET enqueued = :now, next_attempt = :now, lease_until = NULL,"
        " lease_pid = NULL",
        _SCHEMA.split(";")[-2],  # the clock table
    ],
}

#: how often the agent clock is written while nothing else is (it is also written with
#: every new message); after a crash it resumes at most this much behind
CLOCK_MARK_INTERVAL = 60.0

_COLUMNS = (
    "id, webhook, occurrence_id, kind, severity, label, body, created, enqueued, attempts,"
    " next_attempt, last_error"
)


class StoreError(Exception):
    """The state directory or its database cannot be used (permissions, disk, corruption)."""


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
    died: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        data = dict(row)
        data["body"] = json.loads(data["body"])
        data.setdefault("next_attempt", 0.0)
        data.setdefault("enqueued", 0.0)
        data.pop("lease_until", None)
        data.pop("lease_pid", None)
        data.pop("response", None)
        return cls(**data)


class Store:
    """The SQLite file; every method is one short transaction."""

    def __init__(
        self,
        path: Path,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.monotonic = monotonic
        self.wall = wall
        self._offset = 0.0
        self._marked = -CLOCK_MARK_INTERVAL
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            self._open()
            self._start_clock()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"agent.state_dir: cannot use {path}: {exc}") from None

    def _open(self) -> None:
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"written by a newer ixon-agent (schema {version})")
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            statements = _SCHEMA.split(";") if version == 0 else []
            for old in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                statements += _MIGRATIONS[old]
            for statement in filter(str.strip, statements):
                self.db.execute(statement, {"now": self._read_clock()})
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- the agent clock ------------------------------------------------------------------

    def now(self) -> float:
        """The agent clock: seconds this file has been in use by a running agent."""
        return self._offset + self.monotonic()

    def _read_clock(self) -> float:
        """The agent clock as last written, 0 for a new file."""
        with contextlib.suppress(sqlite3.OperationalError):  # no clock table yet (schema 1)
            row = self.db.execute("SELECT elapsed FROM clock").fetchone()
            return float(row[0]) if row else 0.0
        return 0.0

    def _start_clock(self) -> None:
        """Continue the agent clock: share it with a live process on this boot that uses
        the same file (send-test beside the agent), else resume it where it was written
        last. It never runs backwards, whatever the monotonic clock did since."""
        row = self.db.execute("SELECT boot, offset, holder, elapsed FROM clock").fetchone()
        boot, pid = boot_id(), os.getpid()
        elapsed = float(row["elapsed"]) if row else 0.0
        shared = (
            row is not None
            and boot is not None
            and row["boot"] == boot
            and row["holder"] not in (None, pid)
            and _alive(row["holder"])
        )
        self._offset = float(row["offset"]) if shared else elapsed - self.monotonic()
        if self.now() < elapsed:
            self._offset, shared = elapsed - self.monotonic(), False
        if not shared:
            with self.transaction():
                self.db.execute(
                    "INSERT OR REPLACE INTO clock VALUES (1, ?, ?, ?, ?)",
                    (boot, self._offset, pid, elapsed),
                )
            self._marked = self.monotonic()

    def mark(self, force: bool = False) -> None:
        """Write the agent clock, at most once a ``CLOCK_MARK_INTERVAL`` unless forced: a
        restart resumes from here, so the time the agent is off does not count."""
        if not force and self.monotonic() - self._marked < CLOCK_MARK_INTERVAL:
            return
        with self._relaxed():
            self.db.execute("UPDATE clock SET elapsed = MAX(elapsed, ?)", (self.now(),))
        self._marked = self.monotonic()

    @contextlib.contextmanager
    def _relaxed(self) -> Iterator[None]:
        """Bookkeeping of sends (claims, deliveries, retry times) is not worth an fsync each:
        a power cut can undo the last few, which means a message sent once more or an
        attempt not counted, never a message lost. New messages are always fully synced."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.mark(force=True)
        self.db.close()

    # -- alarm state ----------------------------------------------------------------------

    def alarm_states(self) -> dict[str, dict[str, Any]]:
        rows = self.db.execute("SELECT alarm_id, snapshot FROM alarm_state").fetchall()
        return {row["alarm_id"]: json.loads(row["snapshot"]) for row in rows}

    def record(
        self,
        states: Iterable[Mapping[str, Any]],
        messages: Iterable[Message],
        forget: Iterable[str] = (),
    ) -> list[int]:
        """Alarm state changes and the messages they cause, in one transaction."""
        now, wall = self.now(), self.wall()
        ids = []
        with self.transaction():
            self.db.executemany(
                "DELETE FROM alarm_state WHERE alarm_id = ?", [(a,) for a in forget]
            )
            for s in states:
                self.db.execute(
                    "INSERT OR REPLACE INTO alarm_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (s["alarm_id"], s["name"], s["severity"], int(s["active"]), s["occurrence_id"],
                     s["occurred_on"], int(s["notified"]), s["suppressed"], json.dumps(s), now),
                )  # fmt: skip
            for m in messages:
                cursor = self.db.execute(
                    "INSERT INTO outbox (webhook, occurrence_id, kind, severity, label, body,"
                    " created, enqueued, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (m.webhook, m.occurrence_id, m.kind, m.severity, m.label,
                     json.dumps(m.body), wall, now, now),
                )  # fmt: skip
                ids.append(int(cursor.lastrowid or 0))
            self.db.execute("UPDATE clock SET elapsed = MAX(elapsed, ?)", (now,))
        return ids

    # -- outbox ---------------------------------------------------------------------------

    def due(self, now: float, limit: int, busy: Iterable[int] = ()) -> list[Entry]:
        """Messages to send now: each the oldest of its (webhook, occurrence) queue."""
        busy = set(busy)
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM outbox AS o WHERE next_attempt <= ?"
            " AND (lease_until IS NULL OR lease_until < ?)"
            " AND id = (SELECT MIN(id) FROM outbox AS q"
            "           WHERE q.webhook = o.webhook AND q.occurrence_id = o.occurrence_id)"
            " ORDER BY next_attempt, id LIMIT ?",
            (now, now, limit + len(busy)),
        ).fetchall()
        return [Entry.from_row(r) for r in rows if r["id"] not in busy][:limit]

    def next_due(self, busy: Iterable[int] = ()) -> float | None:
        """When the earliest waiting message becomes due (heads of queues, not in flight here;
        one another process is sending is due when its lease ends)."""
        busy = list(busy)
        rows = self.db.execute(
            "SELECT id, MAX(next_attempt, COALESCE(lease_until, 0)) AS due FROM outbox AS o"
            " WHERE id = (SELECT MIN(id) FROM outbox AS q"
            "             WHERE q.webhook = o.webhook AND q.occurrence_id = o.occurrence_id)"
            " ORDER BY due LIMIT ?",
            (len(busy) + 1,),
        ).fetchall()
        return next((r["due"] for r in rows if r["id"] not in busy), None)

    def claim(self, entry_id: int, until: float) -> bool:
        """Take a message for sending, unless another process holds it."""
        now = self.now()
        with self._relaxed():
            cursor = self.db.execute(
                "UPDATE outbox SET lease_until = ?, lease_pid = ? WHERE id = ?"
                " AND (lease_until IS NULL OR lease_until < ?)",
                (until, os.getpid(), entry_id, now),
            )
        return cursor.rowcount == 1

    def release_dead_leases(self) -> int:
        """Free messages claimed by processes that died mid-send (SIGKILL, power cut), so a
        restart resends them now instead of after the lease. Our own pid's leases are stale
        too: we only just started (a container's agent is pid 1 every time)."""
        stale = []
        for (pid,) in self.db.execute(
            "SELECT DISTINCT lease_pid FROM outbox WHERE lease_pid IS NOT NULL"
        ):
            if pid == os.getpid() or not _alive(pid):
                stale.append((pid,))
        self.db.executemany(
            "UPDATE outbox SET lease_until = NULL, lease_pid = NULL WHERE lease_pid = ?", stale
        )
        return len(stale)

    def delivered(self, entry_id: int) -> None:
        with self._relaxed():
            self.db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def retry_later(
        self, entry_id: int, next_attempt: float, error: str, count: bool = True
    ) -> None:
        with self._relaxed():
            self.db.execute(
                "UPDATE outbox SET attempts = attempts + ?, next_attempt = ?, last_error = ?,"
                " lease_until = NULL, lease_pid = NULL WHERE id = ?",
                (1 if count else 0, next_attempt, error, entry_id),
            )

    def bury(
        self, entry_ids: Iterable[int], reason: str, status: int | None = None,
        response: str | None = None, error: str | None = None, attempted: bool = False,
    ) -> int:  # fmt: skip
        """Move messages to the dead-letter table, with why."""
        ids = [(i,) for i in entry_ids]
        if not ids:
            return 0
        with self.transaction():
            self.db.executemany(
                "INSERT INTO dead_letter SELECT id, webhook, occurrence_id, kind, severity, label,"
                " body, created, attempts + ?, COALESCE(?, last_error), ?, ?, ?, ? FROM outbox"
                " WHERE id = ?",
                [(int(attempted), error, reason, status, response, self.wall(), i) for (i,) in ids],
            )
            self.db.executemany("DELETE FROM outbox WHERE id = ?", ids)
        return len(ids)

    def evict_overflow(self, max_pending: int) -> list[Entry]:
        """Past ``max_pending``: the oldest low-severity occurrences go to dead letters (then
        medium ones; high severity is never evicted). Whole queues go, so an end never
        stays behind without its start; a message being sent right now stays."""
        excess = self.pending_count() - max_pending
        if excess <= 0:
            return []
        rows = self.db.execute(
            f"SELECT {_COLUMNS}, lease_until FROM outbox WHERE severity IN ('low', 'medium')"
            " ORDER BY CASE severity WHEN 'low' THEN 0 ELSE 1 END, id"
        ).fetchall()
        now = self.now()
        sizes = Counter((r["webhook"], r["occurrence_id"]) for r in rows)
        busy = {(r["webhook"], r["occurrence_id"]) for r in rows if (r["lease_until"] or 0) >= now}
        chosen: set[tuple[str, str]] = set()
        count = 0
        for row in rows:
            queue = (row["webhook"], row["occurrence_id"])
            if count >= excess:
                break
            if queue not in chosen and queue not in busy:
                chosen.add(queue)
                count += sizes[queue]
        victims = [Entry.from_row(r) for r in rows if (r["webhook"], r["occurrence_id"]) in chosen]
        self.bury([v.id for v in victims], "evicted: outbox over max_pending")
        return victims

    def expired(self, oldest: float, busy: Iterable[int] = ()) -> list[Entry]:
        """Messages enqueued before ``oldest`` (agent clock)."""
        busy = set(busy)
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE enqueued < ?", (oldest,))
        return [Entry.from_row(r) for r in rows.fetchall() if r["id"] not in busy]

    def pending(self, limit: int = -1) -> list[Entry]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY id LIMIT ?", (limit,))
        return [Entry.from_row(r) for r in rows]

    def dead(self) -> list[Entry]:
        rows = self.db.execute("SELECT * FROM dead_letter ORDER BY id").fetchall()
        return [Entry.from_row(r) for r in rows]

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def dead_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0])

    def oldest_age(self) -> float:
        """Seconds (agent clock) the oldest waiting message has waited; 0 if none waits."""
        oldest = self.db.execute("SELECT MIN(enqueued) FROM outbox").fetchone()[0]
        return 0.0 if oldest is None else max(0.0, self.now() - oldest)

    def is_pending(self, entry_id: int) -> bool:
        return (
            self.db.execute("SELECT 1 FROM outbox WHERE id = ?", (entry_id,)).fetchone() is not None
        )

    def is_dead(self, entry_id: int) -> bool:
        return (
            self.db.execute("SELECT 1 FROM dead_letter WHERE id = ?", (entry_id,)).fetchone()
            is not None
        )

    def retry_dead(self) -> int:
        """Put every dead letter back in the outbox, due now, attempts reset."""
        now = self.now()
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO outbox (id, webhook, occurrence_id, kind, severity, label, body,"
                " created, enqueued, attempts, next_attempt, last_error) SELECT id, webhook,"
                " occurrence_id, kind, severity, label, body, ?, ?, 0, ?, last_error"
                " FROM dead_letter",
                (self.wall(), now, now),
            )
            self.db.execute("DELETE FROM dead_letter")
        return cursor.rowcount


def boot_id() -> str | None:
    """This boot's id (Linux); monotonic clocks of different boots cannot be compared."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception); nests flatly."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self.db

    def __exit__(self, kind: object, *_: object) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if kind else "COMMIT")
