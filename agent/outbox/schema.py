"""The state database's tables, the migrations from older versions of them, and the SQL
pieces the store's queries share (a message's columns, what waits, the head of a queue)."""

from __future__ import annotations

from agent.outbox import journal

SCHEMA_VERSION = 5

#: the agent clock (``Store.now``)
CLOCK_TABLE = """
CREATE TABLE IF NOT EXISTS clock (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    boot          TEXT,
    offset        REAL NOT NULL,
    holder        INTEGER,
    elapsed       REAL NOT NULL
)"""
#: the order of sending (``RANK``), with the due time in it: ``due`` walks it and stops at
#: its limit, whether all of a large outbox is due or almost nothing is (it replaced an
#: index on the due time alone, so a message costs no more pages on disk than before)
RANK_INDEX = """
CREATE INDEX IF NOT EXISTS outbox_rank ON outbox ((CASE severity WHEN 'high' THEN 0
    WHEN 'medium' THEN 1 ELSE 2 END), id, next_attempt)"""

SCHEMA = (
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
    + RANK_INDEX
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
    + CLOCK_TABLE
    + ";"
    + journal.SCHEMA
    + ";"
)

#: from a schema version to the next; a message's due time and lease were wall time in 1
MIGRATIONS = {
    1: [
        "ALTER TABLE outbox ADD COLUMN enqueued REAL NOT NULL DEFAULT 0",
        "UPDATE outbox SET enqueued = :now, next_attempt = :now, lease_until = NULL,"
        " lease_pid = NULL",
        CLOCK_TABLE,
    ],
    2: journal.BASE.split(";"),
    3: ["DROP INDEX IF EXISTS outbox_due", RANK_INDEX],  # the most severe first
    4: journal.ACKS.split(";"),  # acknowledgements
}

#: how often the agent clock is written; after a crash it resumes at most this much behind,
#: and never before the newest message was queued
CLOCK_MARK_INTERVAL = 60.0

#: what a message is, in the outbox and the dead-letter table alike
MESSAGE = "webhook, occurrence_id, kind, severity, label, body"
#: an outbox row as ``Entry.from_row`` reads it
COLUMNS = f"id, {MESSAGE}, created, enqueued, attempts, next_attempt, last_error"

#: the order messages go out in when more are due than can go: the most severe first,
#: the oldest first within a severity (``outbox_rank`` is on the same expression)
RANK = "(CASE o.severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END), o.id"
#: a message as delivery sees it: the row, with what is only in memory while not durable
ENTRY = (
    f"o.id, {', '.join('o.' + c for c in MESSAGE.split(', '))}, o.created,"
    " o.enqueued, o.attempts + COALESCE(l.attempts, 0) AS attempts,"
    " COALESCE(l.next_attempt, o.next_attempt) AS next_attempt,"
    " COALESCE(l.last_error, o.last_error) AS last_error"
)
WAITING = "outbox AS o LEFT JOIN temp.later AS l ON l.id = o.id WHERE o.id NOT IN temp.gone"
HEAD = (
    "o.id = (SELECT MIN(q.id) FROM outbox AS q WHERE q.webhook = o.webhook"
    " AND q.occurrence_id = o.occurrence_id AND q.id NOT IN temp.gone)"
)
FREE = "(l.id IS NOT NULL OR o.lease_until IS NULL OR o.lease_until < :now)"
MEMORY = """
CREATE TEMP TABLE gone (id INTEGER PRIMARY KEY);
CREATE TEMP TABLE later (id INTEGER PRIMARY KEY, attempts INTEGER NOT NULL,
                         next_attempt REAL NOT NULL, last_error TEXT);
"""
