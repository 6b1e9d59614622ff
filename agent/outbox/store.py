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
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from agent.common.retry import Throttle
from agent.outbox import journal
from agent.outbox.files import Transaction, alive, boot_id, state_dir_problem
from agent.outbox.model import (
    Entry,
    Held,
    Message,
    StoreDamaged,
    StoreError,
    damage_report,
    damaged,
)
from agent.outbox.queue import OutboxQueue, doomed
from agent.outbox.schema import (
    CLOCK_MARK_INTERVAL,
    MEMORY,
    MESSAGE,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
)

__all__ = [
    "FLUSH_INTERVAL",
    "Entry",
    "Held",
    "Message",
    "Store",
    "StoreDamaged",
    "StoreError",
    "damaged",
    "state_dir_problem",
]

log = logging.getLogger("agent.store")
T = TypeVar("T")

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


class Store(OutboxQueue):
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
        self._announced = False  # the log said "not durable" and not yet "durable again"
        self._recovered = -NOT_DURABLE_LOG_INTERVAL  # monotonic: when writes last came back
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
        self.db.executescript(MEMORY)
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
            statements = SCHEMA.split(";") if version == 0 else []
            for old in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                statements += MIGRATIONS[old]
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
            if self.monotonic() - self._recovered >= NOT_DURABLE_LOG_INTERVAL:
                self._throttle.clear()  # a new outage, not the last one flapping
        self.problem = str(exc)
        if self._throttle.hit():
            self._announced = True
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
        self._announced = True  # the last store said "not durable": this one says "again"
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
        if self._announced:  # each "not durable" line gets its "durable again"; a disk
            # that is nearly full may let a write through now and then: not a line each
            log.warning(
                "state durable again: %s written after %.0f s, with %d message(s) that waited"
                " in memory",
                self.path,
                self.monotonic() - self.since,
                written,
            )
        self.durable, self.problem, self._announced = True, "", False
        self._recovered = self.monotonic()
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
        going = doomed(queues, excess, keep_high=False)
        before = len(self._messages)
        self._messages = [m for m in self._messages if (m.webhook, m.occurrence_id) not in going]
        self.dropped += before - len(self._messages)
        log.error(
            "state not durable and %d new message(s) wait in memory: %d dropped (%s)",
            self.max_held,
            before - len(self._messages),
            ", ".join(sorted(o for _, o in going)),
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
            and alive(row[0]["holder"])
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

    def transaction(self) -> Transaction:
        return Transaction(self.db)

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
                f"INSERT INTO outbox ({MESSAGE}, created, enqueued, next_attempt)"
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

    def request_ack(self, alarm_id: str, name: str, by: str, comment: str) -> int:
        """``ixon-agent ack``: a request the running agent takes within a second."""
        wall = self.wall()
        return self._command(
            lambda: journal.request_ack(self.db, alarm_id, name, by, comment, wall)
        )

    def ack_requests(self) -> list[journal.AckRequest]:
        return self._read(lambda: journal.ack_requests(self.db))

    def drop_ack_request(self, request_id: int) -> None:
        self._command(lambda: journal.drop_ack_request(self.db, request_id))

    def to_acknowledge(self, alarm_id: str) -> journal.Occurrence | None:
        return self._read(lambda: journal.to_acknowledge(self.db, alarm_id))

    def occurrence(self, occurrence_id: str) -> journal.Occurrence | None:
        found = self._read(lambda: journal.recent_by_id(self.db, occurrence_id))
        return found[0] if found else None

    def _command(self, action: Callable[[], T]) -> T:
        """A person's change (the CLI): it is written now, or it fails with the reason."""
        try:
            with self.transaction():
                return action()
        except sqlite3.Error as exc:
            if damaged(exc):
                raise StoreDamaged(damage_report(self.path, str(exc))) from None
            raise StoreError(f"agent.state_dir: cannot write {self.path}: {exc}") from None
