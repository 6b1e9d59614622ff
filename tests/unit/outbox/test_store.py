"""The outbox on a real SQLite file, with the agent clock injected: order per occurrence,
leases, retries, dead letters, eviction and saved alarm states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.outbox.store import Message, Store


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def store(tmp_path: Path, ticks: Ticks) -> Any:
    s = Store(tmp_path / "agent.db", monotonic=ticks)
    yield s
    s.close()


def message(
    occurrence: str, kind: str = "start", severity: str = "high", webhook: str = "w"
) -> Message:
    return Message(
        webhook, occurrence, kind, severity, f"{kind} of {occurrence}", {"n": occurrence}
    )


def test_only_the_head_of_each_occurrence_is_due_and_ends_follow_their_starts(store: Store) -> None:
    a1, b1, a2 = store.record([], [message("A"), message("B"), message("A", "end")])
    now = store.now()
    assert [e.id for e in store.due(now, 10)] == [a1, b1]
    store.delivered(a1)
    assert [e.id for e in store.due(now, 10)] == [b1, a2]
    assert [e.kind for e in store.pending()] == ["start", "end"]


def test_a_claimed_message_is_not_due_until_its_lease_ends(store: Store, ticks: Ticks) -> None:
    [entry_id] = store.record([], [message("A")])
    now = store.now()
    assert store.claim(entry_id, now + 40)
    assert store.due(now, 10) == [] and not store.claim(entry_id, now + 40)
    ticks.now += 41
    assert [e.id for e in store.due(store.now(), 10)] == [entry_id]


def test_retry_later_counts_the_attempt_and_waits(store: Store, ticks: Ticks) -> None:
    [entry_id] = store.record([], [message("A")])
    store.retry_later(entry_id, store.now() + 30, "HTTP 503")
    assert store.due(store.now(), 10) == [] and store.next_due() == pytest.approx(store.now() + 30)
    ticks.now += 30
    [entry] = store.due(store.now(), 10)
    assert (entry.attempts, entry.last_error) == (1, "HTTP 503")


def test_dead_letters_keep_why_and_can_be_sent_again(store: Store) -> None:
    [entry_id] = store.record([], [message("A")])
    store.bury([entry_id], "rejected", 400, "bad body", "HTTP 400", attempted=True)
    [dead] = store.dead()
    assert (dead.reason, dead.status, dead.response, dead.attempts) == (
        "rejected",
        400,
        "bad body",
        1,
    )
    assert store.pending_count() == 0 and store.is_dead(entry_id)
    assert store.retry_dead() == 1
    [again] = store.pending()
    assert (again.id, again.attempts, again.body) == (entry_id, 0, {"n": "A"})


def test_eviction_takes_whole_low_queues_oldest_first_and_never_high(store: Store) -> None:
    store.record([], [message("H", severity="high"), message("L1", severity="low"),
                      message("L1", "end", severity="low"), message("M", severity="medium"),
                      message("L2", severity="low")])  # fmt: skip
    evicted = store.evict_overflow(max_pending=2)
    assert [(e.occurrence_id, e.kind) for e in evicted] == [
        ("L1", "start"),
        ("L1", "end"),
        ("L2", "start"),
    ]
    assert [e.occurrence_id for e in store.pending()] == ["H", "M"]
    assert store.evict_overflow(max_pending=2) == []


def test_alarm_states_are_saved_with_their_messages_and_forgotten_on_request(
    tmp_path: Path, store: Store
) -> None:
    state = {"alarm_id": "Alarm0000001", "name": "Oil hot", "severity": "high", "active": True,
             "occurrence_id": "Occ1", "occurred_on": None, "notified": True, "suppressed": 0}  # fmt: skip
    store.record([state], [message("Occ1")])
    store.close()
    again = Store(tmp_path / "agent.db")
    try:
        assert again.alarm_states()["Alarm0000001"]["occurrence_id"] == "Occ1"
        again.record([], [], forget=["Alarm0000001"])
        assert again.alarm_states() == {} and again.pending_count() == 1
    finally:
        again.close()


def test_the_agent_clock_goes_on_from_where_it_was_not_from_the_boot(
    tmp_path: Path, ticks: Ticks
) -> None:
    first = Store(tmp_path / "clock.db", monotonic=ticks)
    ticks.now += 500
    first.mark(force=True)
    reached = first.now()
    first.close()
    ticks.now = 3.0  # a reboot: the monotonic clock starts again near zero
    second = Store(tmp_path / "clock.db", monotonic=ticks)
    try:
        assert second.now() >= reached
    finally:
        second.close()


def _event(kind: str, occurrence: str, webhooks: tuple[str, ...] = ("w",)) -> dict[str, Any]:
    from agent.outbox import journal

    at = "2026-11-23T10:00:00.000Z" if kind == "start" else "2026-11-23T10:05:00.000Z"
    return journal.event(kind, occurrence, "a1", "Oil hot", "high", at, [90.0], webhooks)


def test_history_shows_where_each_message_is_and_keeps_a_bounded_size(store: Any) -> None:
    from agent.outbox import journal

    store.record(
        [], [message("o1"), message("o1", webhook="v")], history=[_event("start", "o1", ("v", "w"))]
    )
    [start_w, start_v] = store.pending()
    assert store.history()[0].deliveries == (
        journal.Delivery("v", "waiting", "0 attempt(s)"),
        journal.Delivery("w", "waiting", "0 attempt(s)"),
    )
    store.delivered(start_w.id)
    store.bury([start_v.id], "rejected", status=400)
    store.record([], [], history=[_event("end", "o1", ())])
    [o1] = store.history()
    assert o1.ended == "2026-11-23T10:05:00.000Z" and o1.started == "2026-11-23T10:00:00.000Z"
    assert [(d.webhook, d.state) for d in o1.deliveries] == [("v", "failed"), ("w", "delivered")]
    store.record([], [], history=[_event("start", "o1")])  # a restart's resend: kept as it was
    assert store.history()[0].ended is not None
    events = [_event("start", f"x{i}") for i in range(journal.HISTORY_KEEP + 10)]
    store.record([], [], history=events)
    kept = store.history(limit=10_000)
    assert len(kept) == journal.HISTORY_KEEP + 11  # trimmed in batches, not a row a time
    more = [_event("start", f"y{i}") for i in range(journal.TRIM_BATCH)]
    store.record([], [], history=more)
    kept = store.history(limit=10_000)
    assert len(kept) == journal.HISTORY_KEEP and kept[0].occurrence_id == more[-1]["occurrence_id"]


def test_an_older_database_gets_the_journal_tables(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "agent.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE history")
    db.execute("DROP TABLE shelf")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.history() == [] and store.shelves() == []
    finally:
        store.close()


def test_dead_letters_are_bounded_the_oldest_going_first_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "agent.db", max_dead=3)
    ids = store.record([], [Message("w", f"O{i}", "start", "low", f"m{i}", {}) for i in range(5)])
    for entry_id in ids:
        store.bury([entry_id], "rejected")
    assert [e.label for e in store.dead()] == ["m2", "m3", "m4"]
    assert "dead letters past 3: the 1 oldest deleted" in caplog.text
