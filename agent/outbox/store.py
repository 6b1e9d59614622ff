"""The agent's durable state: one SQLite file under ``state_dir``.

- ``alarm_state``: what survives a restart of each alarm (active? notified?).
- ``outbox``: every message, committed before any attempt to send it, with its attempts,
  next attempt time and last error, so a restart resumes exactly where it was.
- ``dead_letter``: messages that cannot be delivered (rejected, expired, evicted), kept with
  the reason, never silently dropped; ``retry_dead`` puts them back. At most ``max_dead``
  are kept: past it the oldest go, with a log line, so the file's size stays bounded.
- ``history`` and ``shelf``: the alarm journal (``agent.outbox.journal``): recent
  occurrences for the status page, and alarms a person shelved.
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

When a write fails (a full SD card, a read-only remount), the store is *not durable* and
keeps going in memory: what delivery does to saved messages (claims, deliveries, retry
times, dead letters) goes to in-memory tables that every query takes into account, so
saved messages are still delivered, in order; new alarm states and messages wait in a
bounded queue. All of it is written, in order, as soon as a write succeeds again. A file
with damaged pages is another matter: ``StoreDamaged`` stops the agent with a message that
says what to do, since going on could lose or repeat alarms without anyone knowing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent.common.retry import Throttle
from agent.common.values import json_safe
from agent.outbox import journal

log = logging.getLogger("agent.store")
T = TypeVar("T")

SCHEMA_VERSION = 4

#: the agent clock (``Store.now``)
_CLOCK_TABLE = """
CREATE TABLE IF NOT EXISTS clock (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    boot          TEXT,
    offset        REAL NOT NULL,
    holder        INTEGER,
    elapsed       REAL NOT NULL
)"""
#: the order of sending (``_RANK``), with the due time in it: ``due`` walks it and stops at
#: its limit, whether all of a large outbox is due or almost nothing is (it replaced an
#: index on the due time alone, so a message costs no more pages on disk than before)
_RANK_INDEX = """
CREATE INDEX IF NOT EXISTS outbox_rank ON outbox ((CASE severity WHEN 'high' THEN 0
    WHEN 'medium' THEN 1 ELSE 2 END), id, next_attempt)"""

_SCHEMA = (
    """
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
"""
    + _RANK_INDEX
    + """;
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
"""
    + _CLOCK_TABLE
    + ";"
    + journal.SCHEMA
    + ";"
)

#: from a schema version to the next; a message's due time and lease were wall time in 1
_MIGRATIONS = {
    1: [
        "ALTER TABLE outbox ADD COLUMN enqueued REAL NOT NULL DEFAULT 0",
        "UPDATE outbox SET enqueued = :now, next_attempt = :now, lease_until = NULL,"
        " lease_pid = NULL",
        _CLOCK_TABLE,
    ],
    2: journal.SCHEMA.split(";"),
    3: ["DROP INDEX IF EXISTS outbox_due", _RANK_INDEX],  # the most severe first
}

#: how often the agent clock is written while nothing else is (it is also written with
#: every new message); after a crash it resumes at most this much behind
CLOCK_MARK_INTERVAL = 60.0

#: what a message is, in the outbox and the dead-letter table alike
_MESSAGE = "webhook, occurrence_id, kind, severity, label, body"
#: an outbox row as ``Entry.from_row`` reads it
_COLUMNS = f"id, {_MESSAGE}, created, enqueued, attempts, next_attempt, last_error"


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


#: the order messages go out in when more are due than can go: the most severe first,
#: the oldest first within a severity (``outbox_rank`` is on the same expression)
_RANK = "(CASE o.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END), o.id"
#: a message as delivery sees it: the row, with what is only in memory while not durable
_ENTRY = (
    f"o.id, {', '.join('o.' + c for c in _MESSAGE.split(', '))}, o.created,"
    " o.enqueued, o.attempts + COALESCE(l.attempts, 0) AS attempts,"
    " COALESCE(l.next_attempt, o.next_attempt) AS next_attempt,"
    " COALESCE(l.last_error, o.last_error) AS last_error"
)
_WAITING = "outbox AS o LEFT JOIN temp.later AS l ON l.id = o.id WHERE o.id NOT IN temp.gone"
_HEAD = (
    "o.id = (SELECT MIN(q.id) FROM outbox AS q WHERE q.webhook = o.webhook"
    " AND q.occurrence_id = o.occurrence_id AND q.id NOT IN temp.gone)"
)
_FREE = "(l.id IS NOT NULL OR o.lease_until IS NULL OR o.lease_until < :now)"
_MEMORY = """
CREATE TEMP TABLE gone (id INTEGER PRIMARY KEY);
CREATE TEMP TABLE later (id INTEGER PRIMARY KEY, attempts INTEGER NOT NULL,
                         next_attempt REAL NOT NULL, last_error TEXT);
"""
#: how long a write waits for another process's lock (the CLI beside the agent)
BUSY_TIMEOUT_MS = 10_000
#: the write-ahead journal is checkpointed into the file every this many pages, and cut
#: back to this many bytes after: what it may take on disk besides one transaction
WAL_PAGES = 100
JOURNAL_LIMIT = 512 * 1024
#: seconds between attempts to write what is held in memory, besides each new transition
FLUSH_INTERVAL = 1.0
#: seconds between log lines while the state is not durable
NOT_DURABLE_LOG_INTERVAL = 60.0


class Store:
    """The SQLite file; every method is one short transaction."""

    def __init__(
        self,
        path: Path,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_held: int = 10_000,
        max_dead: int = 10_000,
    ) -> None:
        """``max_held``: new messages kept in memory at most while writes fail;
        ``max_dead``: dead letters kept at most (the oldest go first, with a log line), so
        the file's size is bounded."""
        self.path = path
        self.max_dead = max_dead
        self.monotonic = monotonic
        self.wall = wall
        self.max_held = max_held
        self._offset = 0.0
        self._marked = -CLOCK_MARK_INTERVAL
        # not durable: what waits in memory for a write to succeed again
        self.durable = True
        self.problem = ""
        self.since = 0.0  # monotonic: when writes began to fail
        self.dropped = 0  # new messages dropped: memory full while writes failed
        self._states: dict[str, Mapping[str, Any]] = {}
        self._messages: list[Message] = []
        self._history: list[Mapping[str, Any]] = []
        self._forget: set[str] = set()
        self._burials: list[tuple[Any, ...]] = []
        self._in_memory = False  # delivery bookkeeping waits in the temp tables
        self._flushed = -FLUSH_INTERVAL
        self._throttle = Throttle(NOT_DURABLE_LOG_INTERVAL, monotonic)
        problem = state_dir_problem(path.parent, probe=False)
        if problem is not None:
            raise StoreError(problem)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"agent.state_dir: cannot use {path.parent}: {exc.strerror}") from None
        try:
            self.db = self._connect(exclusive=False)
        except sqlite3.DatabaseError as exc:
            if damaged(exc):
                raise StoreDamaged(damage_report(path, str(exc))) from None
            raise StoreError(f"agent.state_dir: cannot use {path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"agent.state_dir: cannot use {path}: {exc}") from None
        self._start_clock()

    def _connect(self, exclusive: bool) -> sqlite3.Connection:
        """Open the file. On a full disk its shared-memory file cannot be created: then it
        is opened for this process alone (no shared memory needed), so a restart on a full
        disk still delivers what was saved; other processes wait until the agent restarts."""
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        try:
            if exclusive:
                self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._open()
        except sqlite3.OperationalError as exc:
            self.db.close()
            name = exc.sqlite_errorname
            if exclusive or not name.startswith(("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN")):
                raise
            self._connect(exclusive=True)
            log.warning(
                "%s opened for the agent alone (%s): `ixon-agent outbox` and `send-test` cannot"
                " use it until the agent restarts with room on the disk",
                self.path,
                exc,
            )
        return self.db

    def _open(self) -> None:
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # the journal stays small: checkpointed every WAL_PAGES pages (SQLite's default is
        # 1000, 4 MB) and cut back to JOURNAL_LIMIT after, so it never grows back into
        # the room a small state partition has just won
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        self.db.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")
        self.db.execute("PRAGMA temp_store=MEMORY")  # the in-memory tables, on a full disk too
        self.db.executescript(_MEMORY)
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"written by a newer ixon-agent (schema {version})")
        if version:
            check = self.db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise StoreDamaged(damage_report(self.path, check))
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            statements = _SCHEMA.split(";") if version == 0 else []
            for old in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                statements += _MIGRATIONS[old]
            for statement in filter(str.strip, statements):
                self.db.execute(statement, {"now": self._read_clock()})
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- reading, and writing when the disk may be full -------------------------------------

    def _rows(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self._read(lambda: self.db.execute(sql, params).fetchall())

    def _read(self, action: Callable[[], T]) -> T:
        """A query; damaged pages raise ``StoreDamaged``."""
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            if damaged(exc):
                raise StoreDamaged(damage_report(self.path, str(exc))) from None
            raise

    def _write(self, action: Callable[[], T], instead: Callable[[], T]) -> T:
        """``action`` if the file can be written, else ``instead`` (in memory)."""
        if not self.flush():
            return instead()
        try:
            result = self._roomy(action)
        except sqlite3.Error as exc:
            self._failed(exc)
            return instead()
        return result

    def _roomy(self, action: Callable[[], T]) -> T:
        """``action``; if the disk is full, once more after giving the disk back what the
        journal holds (a checkpoint that truncates it), before the store says it is not
        durable: the journal's own pages may be all that fills a small partition."""
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not exc.sqlite_errorname.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
                raise
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            try:
                busy = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error:
                raise exc from None
            if busy:  # another process reads an old snapshot: the journal cannot go
                raise exc from None
            return action()

    def _failed(self, exc: sqlite3.Error) -> None:
        """A write failed: damage stops the agent, a bug is raised, anything else (a full
        disk, a read-only file system, an I/O error, a lock held too long) is survived."""
        if damaged(exc):
            raise StoreDamaged(damage_report(self.path, str(exc))) from None
        if not isinstance(exc, sqlite3.OperationalError) or exc.sqlite_errorname == "SQLITE_ERROR":
            raise exc
        if self.durable:
            self.durable, self.since = False, self.monotonic()
        self.problem = str(exc)
        if self._throttle.hit():
            log.error(
                "state not durable: cannot write %s (%s) for %.0f s; %d new message(s) wait in"
                " memory and saved messages are still delivered; free space to save them",
                self.path,
                self.problem,
                self.monotonic() - self.since,
                len(self._messages),
            )

    @property
    def held(self) -> int:
        """New messages waiting in memory for a write to succeed."""
        return len(self._messages)

    def held_messages(self) -> list[Message]:
        """The new messages that wait in memory, oldest first (a copy)."""
        return list(self._messages)

    def release(self, sent: Iterable[Message]) -> None:
        """Messages that wait in memory and were delivered without the outbox (at a stop
        on a full disk): they are not to be written any more."""
        done = {id(m) for m in sent}
        self._messages = [m for m in self._messages if id(m) not in done]

    def handover(self) -> Held | None:
        """What waits in memory, taken away for the next store on this file (a reload
        while the disk is full): nothing is lost between two configs."""
        if self.durable or not (self._states or self._messages or self._forget):
            return None
        held = Held(list(self._states.values()), self._messages, set(self._forget), self._history)
        self._states, self._messages, self._forget, self._history = {}, [], set(), []
        return held

    def adopt(self, held: Held) -> None:
        """Take what the last store on this file held in memory: written at the next flush,
        in order, before anything newer."""
        self.durable, self.since = False, self.monotonic()
        self.problem = self.problem or "not yet written since the reload"
        self._hold(held.states, held.messages, held.forget, held.history)

    def flush(self, force: bool = False) -> bool:
        """Write what waits in memory, in order, in one transaction (at most once a
        ``FLUSH_INTERVAL`` unless forced); True when nothing waits any more."""
        if self.durable:
            return True
        if not force and self.monotonic() - self._flushed < FLUSH_INTERVAL:
            return False
        self._flushed = self.monotonic()
        written = len(self._messages)
        # a quick try: a lock held elsewhere must not stall the event loop each second
        self.db.execute("PRAGMA busy_timeout=100")

        def write() -> None:
            with self.transaction():
                self.db.execute(
                    "UPDATE outbox SET attempts = outbox.attempts + l.attempts,"
                    " next_attempt = l.next_attempt, last_error = l.last_error,"
                    " lease_until = NULL, lease_pid = NULL FROM temp.later AS l"
                    " WHERE outbox.id = l.id"
                )
                for burial in self._burials:
                    self._bury(*burial)
                self.db.execute("DELETE FROM outbox WHERE id IN temp.gone")
                self.db.execute("DELETE FROM temp.later")
                self.db.execute("DELETE FROM temp.gone")
                self._insert(
                    list(self._states.values()), self._messages, self._forget, self._history
                )

        try:
            self._roomy(write)
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        finally:
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._states, self._messages, self._forget, self._burials = {}, [], set(), []
        self._history = []
        self._in_memory = False
        log.warning(
            "state durable again: %s written after %.0f s, with %d message(s) that waited in"
            " memory",
            self.path,
            self.monotonic() - self.since,
            written,
        )
        self.durable, self.problem = True, ""
        self._throttle.clear()
        return True

    def _hold(
        self,
        states: Iterable[Mapping[str, Any]],
        messages: Iterable[Message],
        forget: set[str],
        history: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Keep new states and messages in memory, within ``max_held`` messages: past it,
        whole occurrences go, oldest first, low severity before medium before high."""
        for alarm_id in forget:
            self._states.pop(alarm_id, None)
        for state in states:
            self._states[state["alarm_id"]] = state
        self._forget |= forget
        self._messages += messages
        self._history = [*self._history, *history][-journal.HISTORY_KEEP :]
        excess = len(self._messages) - self.max_held
        if excess <= 0:
            return
        queues = [(m.severity, (m.webhook, m.occurrence_id)) for m in self._messages]
        doomed = _doomed(queues, excess, keep_high=False)
        before = len(self._messages)
        self._messages = [m for m in self._messages if (m.webhook, m.occurrence_id) not in doomed]
        self.dropped += before - len(self._messages)
        log.error(
            "state not durable and %d new message(s) wait in memory: %d dropped (%s)",
            self.max_held,
            before - len(self._messages),
            ", ".join(sorted(o for _, o in doomed)),
        )

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
        row = self._rows("SELECT boot, offset, holder, elapsed FROM clock")
        boot, pid = boot_id(), os.getpid()
        elapsed = float(row[0]["elapsed"]) if row else 0.0
        # the clock ran at least until the newest message was queued (it is not written
        # with every message: one page less per message on an SD card)
        newest = self._rows("SELECT MAX(enqueued) FROM outbox")[0][0]
        elapsed = max(elapsed, float(newest or 0.0))
        shared = (
            bool(row)
            and boot is not None
            and row[0]["boot"] == boot
            and row[0]["holder"] not in (None, pid)
            and _alive(row[0]["holder"])
        )
        self._offset = float(row[0]["offset"]) if shared else elapsed - self.monotonic()
        if self.now() < elapsed:
            self._offset, shared = elapsed - self.monotonic(), False
        if not shared:
            values = (boot, self._offset, pid, elapsed)
            self._write(
                lambda: self.db.execute(
                    "INSERT OR REPLACE INTO clock VALUES (1, ?, ?, ?, ?)", values
                ),
                lambda: None,
            )
            self._marked = self.monotonic()

    def mark(self, force: bool = False) -> None:
        """Write the agent clock, at most once a ``CLOCK_MARK_INTERVAL`` unless forced: a
        restart resumes from here, so the time the agent is off does not count."""
        if not force and self.monotonic() - self._marked < CLOCK_MARK_INTERVAL:
            return
        self._marked = self.monotonic()

        def write() -> None:
            with self._relaxed():
                self.db.execute("UPDATE clock SET elapsed = MAX(elapsed, ?)", (self.now(),))

        self._write(write, lambda: None)

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
        with contextlib.suppress(sqlite3.Error, StoreError):
            self.flush(force=True)
            self.mark(force=True)
        self.db.close()

    # -- alarm state ----------------------------------------------------------------------

    def alarm_states(self) -> dict[str, dict[str, Any]]:
        rows = self._rows("SELECT alarm_id, snapshot FROM alarm_state")
        saved = {row["alarm_id"]: json.loads(row["snapshot"]) for row in rows}
        saved.update({k: dict(v) for k, v in self._states.items()})
        return saved

    def record(
        self,
        states: Iterable[Mapping[str, Any]],
        messages: Iterable[Message],
        forget: Iterable[str] = (),
        history: Iterable[Mapping[str, Any]] = (),
    ) -> list[int]:
        """Alarm state changes, the messages they cause and their journal entries
        (``journal.event``), in one transaction. While the file cannot be written they
        wait in memory (and the ids returned are fewer)."""
        states, messages, forget = list(states), list(messages), set(forget)
        history = list(history)
        if not self.flush(force=True):
            self._hold(states, messages, forget, history)
            return []

        def write() -> list[int]:
            with self.transaction():
                return self._insert(states, messages, forget, history)

        try:
            return self._roomy(write)
        except sqlite3.Error as exc:
            self._failed(exc)
            self._hold(states, messages, forget, history)
            return []

    def _insert(
        self,
        states: list[Mapping[str, Any]],
        messages: list[Message],
        forget: set[str],
        history: list[Mapping[str, Any]],
    ) -> list[int]:
        now, wall = self.now(), self.wall()
        ids = []
        self.db.executemany("DELETE FROM alarm_state WHERE alarm_id = ?", [(a,) for a in forget])
        for s in states:
            self.db.execute(
                "INSERT OR REPLACE INTO alarm_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    s["alarm_id"],
                    s["name"],
                    s["severity"],
                    int(s["active"]),
                    s["occurrence_id"],
                    s["occurred_on"],
                    int(s["notified"]),
                    s["suppressed"],
                    json.dumps(s),
                    wall,
                ),
            )
        for m in messages:
            cursor = self.db.execute(
                f"INSERT INTO outbox ({_MESSAGE}, created, enqueued, next_attempt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    m.webhook,
                    m.occurrence_id,
                    m.kind,
                    m.severity,
                    m.label,
                    json.dumps(m.body),
                    wall,
                    now,
                    now,
                ),
            )
            ids.append(int(cursor.lastrowid or 0))
        journal.write(self.db, history)
        return ids

    # -- outbox ---------------------------------------------------------------------------

    def due(
        self, now: float, limit: int, busy: Iterable[int] = (), skip: Collection[str] = ()
    ) -> list[Entry]:
        """Messages to send now, each the oldest of its (webhook, occurrence) queue: the most
        severe first, then the oldest. ``skip``: webhooks that may not send now (paced)."""
        busy = set(busy)
        params: dict[str, Any] = {"now": now, "limit": limit + len(busy)}
        params.update({f"skip{i}": name for i, name in enumerate(skip)})
        skipped = _skipping(skip)
        if self._in_memory:  # what delivery did while not durable counts too
            sql = (
                f"SELECT {_ENTRY} FROM {_WAITING} AND {_HEAD} AND {_FREE}{skipped}"
                " AND COALESCE(l.next_attempt, o.next_attempt) <= :now"
                f" ORDER BY {_RANK} LIMIT :limit"
            )
        else:  # the usual case
            sql = (
                f"SELECT {_COLUMNS} FROM outbox AS o WHERE next_attempt <= :now{skipped}"
                " AND (lease_until IS NULL OR lease_until < :now)"
                " AND id = (SELECT MIN(id) FROM outbox AS q"
                "           WHERE q.webhook = o.webhook AND q.occurrence_id = o.occurrence_id)"
                f" ORDER BY {_RANK} LIMIT :limit"
            )
        rows = self._rows(sql, params)
        return [Entry.from_row(r) for r in rows if r["id"] not in busy][:limit]

    def next_due(self, busy: Iterable[int] = (), skip: Collection[str] = ()) -> float | None:
        """When the earliest waiting message becomes due (heads of queues, not in flight here;
        one another process is sending is due when its lease ends). ``skip``: as for
        ``due``."""
        busy = list(busy)
        params: dict[str, Any] = {"limit": len(busy) + 1}
        params.update({f"skip{i}": name for i, name in enumerate(skip)})
        skipped = _skipping(skip)
        due = "MAX(o.next_attempt, COALESCE(o.lease_until, 0))"
        if self._in_memory:
            sql = (
                f"SELECT o.id, COALESCE(l.next_attempt, {due}) AS due FROM {_WAITING}"
                f" AND {_HEAD}{skipped}"
            )
        else:
            sql = (
                f"SELECT o.id, {due} AS due FROM outbox AS o WHERE o.id = (SELECT MIN(q.id)"
                " FROM outbox AS q WHERE q.webhook = o.webhook"
                f" AND q.occurrence_id = o.occurrence_id){skipped}"
            )
        rows = self._rows(sql + " ORDER BY due LIMIT :limit", params)
        return next((r["due"] for r in rows if r["id"] not in busy), None)

    def claim(self, entry_id: int, until: float) -> bool:
        """Take a message for sending, unless another process holds it."""
        return bool(self.claim_many({entry_id: until}))

    def claim_many(self, leases: Mapping[int, float]) -> set[int]:
        """Take messages for sending (id -> lease end), in one write; returns the ids taken
        (not those another process holds). While the file cannot be written the claims are
        this process's alone (a message is never sent twice at once from here; another
        process could, which is at least once, not lost)."""
        if not leases:
            return set()
        now, pid = self.now(), os.getpid()

        def write() -> set[int]:
            taken = set()
            with self._relaxed(), self.transaction():  # one commit for them all
                for entry_id, until in leases.items():
                    cursor = self.db.execute(
                        "UPDATE outbox SET lease_until = ?, lease_pid = ? WHERE id = ?"
                        " AND (lease_until IS NULL OR lease_until < ?)",
                        (until, pid, entry_id, now),
                    )
                    if cursor.rowcount == 1:
                        taken.add(entry_id)
            return taken

        return self._write(write, lambda: set(leases))

    def release_dead_leases(self) -> int:
        """Free messages claimed by processes that died mid-send (SIGKILL, power cut), so a
        restart resends them now instead of after the lease. Our own pid's leases are stale
        too: we only just started (a container's agent is pid 1 every time)."""
        stale = []
        for (pid,) in self._rows(
            "SELECT DISTINCT lease_pid FROM outbox WHERE lease_pid IS NOT NULL"
        ):
            if pid == os.getpid() or not _alive(pid):
                stale.append((pid,))
        sql = "UPDATE outbox SET lease_until = NULL, lease_pid = NULL WHERE lease_pid = ?"
        self._write(lambda: self.db.executemany(sql, stale), lambda: None)
        return len(stale)

    def delivered(self, entry_id: int) -> None:
        self.delivered_many([entry_id])

    def delivered_many(self, entry_ids: Iterable[int]) -> None:
        """Messages that arrived, in one write."""
        rows = [(i,) for i in entry_ids]
        if not rows:
            return

        def write() -> None:
            with self._relaxed(), self.transaction():
                self.db.executemany("DELETE FROM outbox WHERE id = ?", rows)

        self._write(write, lambda: self._gone(row[0] for row in rows))

    def _gone(self, ids: Iterable[int]) -> None:
        self._in_memory = True
        rows = [(i,) for i in ids]
        self.db.executemany("INSERT OR IGNORE INTO temp.gone VALUES (?)", rows)
        self.db.executemany("DELETE FROM temp.later WHERE id = ?", rows)

    def retry_later(
        self, entry_id: int, next_attempt: float, error: str, count: bool = True
    ) -> None:
        def write() -> None:
            with self._relaxed():
                self.db.execute(
                    "UPDATE outbox SET attempts = attempts + ?, next_attempt = ?, last_error = ?,"
                    " lease_until = NULL, lease_pid = NULL WHERE id = ?",
                    (1 if count else 0, next_attempt, error, entry_id),
                )

        def instead() -> None:
            self._in_memory = True
            self.db.execute(
                "INSERT INTO temp.later VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " attempts = attempts + excluded.attempts, next_attempt = excluded.next_attempt,"
                " last_error = excluded.last_error",
                (entry_id, 1 if count else 0, next_attempt, error),
            )

        self._write(write, instead)

    def bury(
        self,
        entry_ids: Iterable[int],
        reason: str,
        status: int | None = None,
        response: str | None = None,
        error: str | None = None,
        attempted: bool = False,
    ) -> int:
        """Move messages to the dead-letter table, with why."""
        ids = list(entry_ids)
        if not ids:
            return 0
        burial = (ids, reason, status, response, error, attempted, self.wall())

        def write() -> None:
            with self.transaction():
                self._bury(*burial)

        def instead() -> None:
            self._burials.append(burial)
            self._gone(ids)

        self._write(write, instead)
        return len(ids)

    def _bury(
        self,
        ids: list[int],
        reason: str,
        status: int | None,
        response: str | None,
        error: str | None,
        attempted: bool,
        died: float,
    ) -> None:
        self.db.executemany(
            f"INSERT INTO dead_letter SELECT id, {_MESSAGE}, created, attempts + ?,"
            " COALESCE(?, last_error), ?, ?, ?, ? FROM outbox WHERE id = ?",
            [(int(attempted), error, reason, status, response, died, i) for i in ids],
        )
        self.db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
        excess = self.db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] - self.max_dead
        if excess > 0:
            self.db.execute(
                "DELETE FROM dead_letter WHERE id IN"
                " (SELECT id FROM dead_letter ORDER BY died, id LIMIT ?)",
                (excess,),
            )
            log.warning(
                "dead letters past %d: the %d oldest deleted (`ixon-agent outbox` lists those"
                " kept)",
                self.max_dead,
                excess,
            )

    def evict_overflow(self, max_pending: int) -> list[Entry]:
        """Past ``max_pending``: the oldest low-severity occurrences go to dead letters (then
        medium ones; high severity is never evicted). Whole queues go, so an end never
        stays behind without its start; a message being sent right now stays. Nothing goes
        while the file cannot be written: there would be no dead letter to show for it."""
        excess = self.pending_count() - max_pending
        if excess <= 0 or not self.durable:
            return []
        rows = self._rows(
            f"SELECT {_COLUMNS}, lease_until FROM outbox WHERE severity IN ('low', 'medium')"
            " ORDER BY id"
        )
        now = self.now()
        busy = {  # being sent right now (a lease is an agent-clock time; None: not leased)
            (r["webhook"], r["occurrence_id"])
            for r in rows
            if r["lease_until"] is not None and r["lease_until"] >= now
        }
        queues = [(r["severity"], (r["webhook"], r["occurrence_id"])) for r in rows]
        chosen = _doomed(queues, excess, keep_high=True, spare=busy)
        victims = [Entry.from_row(r) for r in rows if (r["webhook"], r["occurrence_id"]) in chosen]
        self.bury([v.id for v in victims], "evicted: outbox over max_pending")
        return victims

    def expired(self, oldest: float, busy: Iterable[int] = ()) -> list[Entry]:
        """Messages enqueued before ``oldest`` (agent clock)."""
        busy = set(busy)
        rows = self._rows(f"SELECT {_ENTRY} FROM {_WAITING} AND o.enqueued < ?", (oldest,))
        return [Entry.from_row(r) for r in rows if r["id"] not in busy]

    def pending(self, limit: int = -1) -> list[Entry]:
        rows = self._rows(f"SELECT {_ENTRY} FROM {_WAITING} ORDER BY o.id LIMIT ?", (limit,))
        return [Entry.from_row(r) for r in rows]

    def dead(self) -> list[Entry]:
        rows = self._rows("SELECT * FROM dead_letter ORDER BY id")
        return [Entry.from_row(r) for r in rows]

    def pending_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM outbox WHERE id NOT IN temp.gone")[0][0])

    def dead_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM dead_letter")[0][0])

    def oldest_age(self) -> float:
        """Seconds (agent clock) the oldest waiting message has waited; 0 if none waits."""
        oldest = self._rows("SELECT MIN(enqueued) FROM outbox WHERE id NOT IN temp.gone")[0][0]
        return 0.0 if oldest is None else max(0.0, self.now() - oldest)

    def is_pending(self, entry_id: int) -> bool:
        sql = "SELECT 1 FROM outbox WHERE id = ? AND id NOT IN temp.gone"
        return bool(self._rows(sql, (entry_id,)))

    def is_gone(self, entry_id: int) -> bool:
        """Delivered (or withdrawn): neither waiting nor a dead letter."""
        return not self.is_pending(entry_id) and not self.is_dead(entry_id)

    def withdraw(self, entry_ids: Iterable[int]) -> None:
        """Take waiting messages back unsent (``send-test`` leaves nothing behind)."""
        self.delivered_many(entry_ids)  # the same deletion; nothing was sent

    # -- the alarm journal ------------------------------------------------------------------

    def history(self, limit: int = 20) -> list[journal.Occurrence]:
        """Recent occurrences, newest first, with where their messages are."""
        gone = "o.id IN temp.gone" if self._in_memory else ""
        return self._read(lambda: journal.recent(self.db, limit, gone))

    def shelves(self) -> list[journal.ShelfRow]:
        return self._read(lambda: journal.shelves(self.db))

    def shelve(self, alarm_id: str, name: str, seconds: float, reason: str, by: str) -> float:
        """Shelve an alarm for ``seconds`` of agent clock; returns when it ends (agent clock)."""
        row = journal.ShelfRow(alarm_id, name, self.now() + seconds, reason, by, self.wall())
        self._command(lambda: journal.shelve(self.db, row))
        return row.until

    def unshelve(self, alarm_ids: Iterable[str]) -> int:
        return self._command(lambda: journal.unshelve(self.db, alarm_ids))

    def _command(self, action: Callable[[], T]) -> T:
        """A person's change (the CLI): it is written now, or it fails with the reason."""
        try:
            with self.transaction():
                return action()
        except sqlite3.Error as exc:
            if damaged(exc):
                raise StoreDamaged(damage_report(self.path, str(exc))) from None
            raise StoreError(f"agent.state_dir: cannot write {self.path}: {exc}") from None

    def is_dead(self, entry_id: int) -> bool:
        return bool(self._rows("SELECT 1 FROM dead_letter WHERE id = ?", (entry_id,)))

    def retry_dead(self) -> int:
        """Put every dead letter back in the outbox, due now, attempts reset."""
        now = self.now()

        def move() -> int:
            cursor = self.db.execute(
                f"INSERT INTO outbox (id, {_MESSAGE}, created, enqueued, attempts,"
                f" next_attempt, last_error) SELECT id, {_MESSAGE}, ?, ?, 0, ?, last_error"
                " FROM dead_letter",
                (self.wall(), now, now),
            )
            self.db.execute("DELETE FROM dead_letter")
            return cursor.rowcount

        return self._command(move)


def _skipping(webhooks: Collection[str]) -> str:
    """``AND o.webhook NOT IN (:skip0, ...)``, or nothing."""
    if not webhooks:
        return ""
    return f" AND o.webhook NOT IN ({', '.join(f':skip{i}' for i in range(len(webhooks)))})"


def _doomed(
    queues: list[tuple[str, tuple[str, str]]],
    excess: int,
    keep_high: bool,
    spare: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
) -> set[tuple[str, str]]:
    """Whole queues (webhook, occurrence) to give up for ``excess`` messages, given each
    message's (severity, queue) oldest first: low before medium before high (never high
    with ``keep_high``), oldest first, never one in ``spare``; so an end never stays
    behind without its start."""
    sizes = Counter(queue for _, queue in queues)
    rank = {"low": 0, "medium": 1, "high": 2}
    order = sorted(range(len(queues)), key=lambda i: (rank.get(queues[i][0], 2), i))
    chosen: set[tuple[str, str]] = set()
    for index in order:
        if excess <= 0:
            break
        severity, queue = queues[index]
        if queue in chosen or queue in spare or (keep_high and severity == "high"):
            continue
        chosen.add(queue)
        excess -= sizes[queue]
    return chosen


def state_dir_problem(directory: Path, probe: bool = True) -> str | None:
    """Why ``directory`` cannot hold the state database, found without leaving anything
    behind; ``check`` probes by creating (and removing) a directory where ``run`` would
    create its own, so both reject the same places (under a file, in /proc, read-only)."""
    try:  # whatever the OS refuses (a name too long, no permission, a loop) is located
        existing = directory
        while True:  # the nearest folder that exists; any answer but "no such file" counts
            try:
                os.stat(existing)
                break
            except FileNotFoundError:
                if existing == existing.parent:
                    break
                existing = existing.parent
        if not existing.is_dir():
            return f"agent.state_dir: cannot use {directory}: {existing} is not a directory"
        if probe:
            os.rmdir(tempfile.mkdtemp(prefix=".ixon-agent-probe-", dir=existing))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # full: not a config problem
            return f"agent.state_dir: cannot use {directory}: {exc.strerror or exc}"
    return None


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
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception); nests flatly.
    A failed COMMIT (a full disk) rolls back what SQLite has not already rolled back."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self.db

    def __exit__(self, kind: object, *_: object) -> None:
        if not self.outer:
            return
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
