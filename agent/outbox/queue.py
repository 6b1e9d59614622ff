"""The outbox as delivery uses it: what is due (the most severe first, each the head of its
occurrence's queue), claims, deliveries, retries, dead letters and evictions. Each operation
is one short transaction on the store's file, or, while the file cannot be written, an entry
in the in-memory tables every query takes into account (``Store``'s docstring says why)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

from agent.outbox.files import Transaction, alive
from agent.outbox.model import Entry
from agent.outbox.schema import COLUMNS, ENTRY, FREE, HEAD, MESSAGE, RANK, WAITING

log = logging.getLogger("agent.store")
T = TypeVar("T")


class OutboxQueue:
    """The outbox's operations; ``Store`` provides the file they work on."""

    db: sqlite3.Connection
    durable: bool
    max_dead: int
    wall: Callable[[], float]
    _in_memory: bool
    _burials: list[tuple[Any, ...]]

    # -- what the store provides -----------------------------------------------------------

    def now(self) -> float:
        raise NotImplementedError

    def _rows(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def _write(self, action: Callable[[], T], instead: Callable[[], T]) -> T:
        raise NotImplementedError

    def _command(self, action: Callable[[], T]) -> T:
        raise NotImplementedError

    def _relaxed(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def transaction(self) -> Transaction:
        raise NotImplementedError

    # -- the queue -------------------------------------------------------------------------

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
                f"SELECT {ENTRY} FROM {WAITING} AND {HEAD} AND {FREE}{skipped}"
                " AND COALESCE(l.next_attempt, o.next_attempt) <= :now"
                f" ORDER BY {RANK} LIMIT :limit"
            )
        else:  # the usual case
            sql = (
                f"SELECT {COLUMNS} FROM outbox AS o WHERE next_attempt <= :now{skipped}"
                " AND (lease_until IS NULL OR lease_until < :now)"
                " AND id = (SELECT MIN(id) FROM outbox AS q"
                "           WHERE q.webhook = o.webhook AND q.occurrence_id = o.occurrence_id)"
                f" ORDER BY {RANK} LIMIT :limit"
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
                f"SELECT o.id, COALESCE(l.next_attempt, {due}) AS due FROM {WAITING}"
                f" AND {HEAD}{skipped}"
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
            if pid == os.getpid() or not alive(pid):
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
            f"INSERT INTO dead_letter SELECT id, {MESSAGE}, created, attempts + ?,"
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
            f"SELECT {COLUMNS}, lease_until FROM outbox WHERE severity IN ('low', 'medium')"
            " ORDER BY id"
        )
        now = self.now()
        busy = {  # being sent right now (a lease is an agent-clock time; None: not leased)
            (r["webhook"], r["occurrence_id"])
            for r in rows
            if r["lease_until"] is not None and r["lease_until"] >= now
        }
        queues = [(r["severity"], (r["webhook"], r["occurrence_id"])) for r in rows]
        chosen = doomed(queues, excess, keep_high=True, spare=busy)
        victims = [Entry.from_row(r) for r in rows if (r["webhook"], r["occurrence_id"]) in chosen]
        self.bury([v.id for v in victims], "evicted: outbox over max_pending")
        return victims

    def expired(self, oldest: float, busy: Iterable[int] = ()) -> list[Entry]:
        """Messages enqueued before ``oldest`` (agent clock)."""
        busy = set(busy)
        rows = self._rows(f"SELECT {ENTRY} FROM {WAITING} AND o.enqueued < ?", (oldest,))
        return [Entry.from_row(r) for r in rows if r["id"] not in busy]

    def pending(self, limit: int = -1) -> list[Entry]:
        rows = self._rows(f"SELECT {ENTRY} FROM {WAITING} ORDER BY o.id LIMIT ?", (limit,))
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

    def is_dead(self, entry_id: int) -> bool:
        return bool(self._rows("SELECT 1 FROM dead_letter WHERE id = ?", (entry_id,)))

    def retry_dead(self) -> int:
        """Put every dead letter back in the outbox, due now, attempts reset."""
        now = self.now()

        def move() -> int:
            cursor = self.db.execute(
                f"INSERT INTO outbox (id, {MESSAGE}, created, enqueued, attempts,"
                f" next_attempt, last_error) SELECT id, {MESSAGE}, ?, ?, 0, ?, last_error"
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


def doomed(
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
