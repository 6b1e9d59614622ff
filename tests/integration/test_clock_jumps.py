"""The wall clock jumps (a Raspberry Pi without a battery clock, then NTP): nothing is lost,
expired or stalled. Durations run on the agent clock (``Store.now``), never on wall time.

In-process tests move ``time.time`` itself, so any code that took a duration from the wall
clock would show; the last test moves the wall clock of a real ``ixon-agent run`` process
with libfaketime (Debian package ``faketime``) and is skipped without it.
"""

from __future__ import annotations

import asyncio
import glob
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from agent.config import Webhook
from agent.delivery.deliverer import BACKOFF_CAP, Deliverer
from agent.outbox.store import SCHEMA_VERSION, Message, Store
from agent.runtime.scheduling import SteadyInterval
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import wait_for, write_config
from tests.receiver import Receiver

HOUR = 3600.0
REAL_TIME = time.time


class WallClock:
    """``time.time`` with an adjustable jump: what NTP does to a running process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        monkeypatch.setattr(time, "time", self)

    def __call__(self) -> float:
        return REAL_TIME() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    return WallClock(monkeypatch)


def message(occurrence: str, kind: str = "start") -> Message:
    return Message("hook", occurrence, kind, "high", f"{kind} of {occurrence}", {"occ": occurrence})


def deliverer(store: Store, http: httpx.AsyncClient, url: str) -> Deliverer:
    webhook = Webhook.model_validate({"name": "hook", "url": f"{url}/hook", "timeout": 2.0})
    return Deliverer(store, [webhook], http, max_age=24 * HOUR)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.delivery.deliverer.BACKOFF_BASE", 0.05)


@pytest.mark.usefixtures("fast_retries")
async def test_a_jump_forward_by_a_day_expires_nothing(
    tmp_path: Path, wall: WallClock, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    store = Store(tmp_path / "agent.db")
    store.record([], [message(f"O{i}") for i in range(5)])
    receiver.default = 503
    sender = deliverer(store, http, receiver.url)
    sender.start()
    try:
        await wait_for(lambda: len(receiver.attempts) >= 5, what="first attempts")
        wall.jump(25 * HOUR)  # NTP after a weekend powered off
        tried = len(receiver.attempts)
        await wait_for(lambda: len(receiver.attempts) >= tried + 5, what="attempts after the jump")
        assert store.dead() == [], "a jump of the wall clock dead-lettered messages"
        assert all(e.next_attempt - store.now() <= BACKOFF_CAP for e in store.pending())
        receiver.default = 200
        assert await sender.drain(15)
    finally:
        await sender.stop()
    assert sorted(b["occ"] for b in receiver.bodies) == [f"O{i}" for i in range(5)]
    assert store.dead() == []


@pytest.mark.usefixtures("fast_retries")
async def test_a_jump_back_by_an_hour_stalls_no_retry(
    tmp_path: Path, wall: WallClock, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    store = Store(tmp_path / "agent.db")
    store.record([], [message("A"), message("A", "end")])
    receiver.script = [503]
    sender = deliverer(store, http, receiver.url)
    sender.start()
    try:
        await wait_for(lambda: receiver.attempts, what="a failed attempt")
        wall.jump(-HOUR)  # the retry was due in about 50 ms of wall time: now an hour away?
        assert await sender.drain(10), "a retry waited for the wall clock to catch up"
    finally:
        await sender.stop()
    assert [b["occ"] for b in receiver.bodies] == ["A", "A"]


def test_the_agent_clock_resumes_after_a_restart_without_counting_the_downtime(
    tmp_path: Path,
) -> None:
    mono = [5000.0]
    store = Store(tmp_path / "agent.db", monotonic=lambda: mono[0])
    start = store.now()
    [entry] = store.record([], [message("A")])
    mono[0] += 600.0  # ten minutes of trying
    store.close()  # writes the clock
    mono[0] = 7.0  # a reboot: the monotonic clock starts again near zero, days later
    again = Store(tmp_path / "agent.db", monotonic=lambda: mono[0])
    assert again.now() - start == pytest.approx(600.0)
    assert again.oldest_age() == pytest.approx(600.0)
    assert [e.id for e in again.due(again.now(), 10)] == [entry]


def test_the_agent_clock_never_runs_backwards(tmp_path: Path) -> None:
    mono = [100.0]
    store = Store(tmp_path / "agent.db", monotonic=lambda: mono[0])
    mono[0] += 50.0
    store.mark(force=True)
    store.db.execute("UPDATE clock SET boot = 'same', holder = 1")  # pid 1: alive, "sharing"
    store.close()
    mono[0] = 3.0
    again = Store(tmp_path / "agent.db", monotonic=lambda: mono[0])
    assert again.now() == pytest.approx(50.0)


def test_processes_using_one_file_share_its_clock(tmp_path: Path) -> None:
    """``send-test`` beside the running agent: leases and due times must mean the same."""
    store = Store(tmp_path / "agent.db")
    store._offset += 1000.0  # this process has run 1000 s since the clock was last written
    store.db.execute("UPDATE clock SET offset = ?", (store._offset,))
    code = f"from pathlib import Path; from agent.outbox.store import Store; print(Store(Path({str(store.path)!r})).now())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == pytest.approx(store.now(), abs=5.0)


def test_a_schema_1_outbox_is_migrated_with_every_message_due_now(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, webhook TEXT NOT NULL,
            occurrence_id TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL,
            label TEXT NOT NULL, body TEXT NOT NULL, created REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, last_error TEXT,
            lease_until REAL, lease_pid INTEGER);
        CREATE TABLE alarm_state (alarm_id TEXT PRIMARY KEY, name TEXT NOT NULL,
            severity TEXT NOT NULL, active INTEGER NOT NULL, occurrence_id TEXT,
            occurred_on TEXT, notified INTEGER NOT NULL DEFAULT 0,
            suppressed INTEGER NOT NULL DEFAULT 0, snapshot TEXT NOT NULL, updated REAL NOT NULL);
        CREATE TABLE dead_letter (id INTEGER PRIMARY KEY, webhook TEXT NOT NULL,
            occurrence_id TEXT NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL,
            label TEXT NOT NULL, body TEXT NOT NULL, created REAL NOT NULL,
            attempts INTEGER NOT NULL, last_error TEXT, reason TEXT NOT NULL, status INTEGER,
            response TEXT, died REAL NOT NULL);
        PRAGMA user_version = 1;
        """
    )
    wall_due = time.time() + 2 * HOUR  # a retry time in wall-clock seconds
    db.execute(
        "INSERT INTO outbox (webhook, occurrence_id, kind, severity, label, body, created,"
        " attempts, next_attempt) VALUES ('hook', 'A', 'start', 'high', 'start of A', '{}', ?,"
        " 3, ?)",
        (time.time(), wall_due),
    )
    db.commit()
    db.close()
    store = Store(path)
    [entry] = store.due(store.now(), 10)
    assert entry.attempts == 3 and entry.label == "start of A"
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.history() == [] and store.shelves() == []  # the journal came with it


def test_the_scheduler_does_not_replay_the_runs_a_jump_skipped() -> None:
    trigger = SteadyInterval(seconds=0.1, timezone=UTC)
    now = datetime.now(UTC)
    scheduled = trigger.get_next_fire_time(None, now)
    later = now + timedelta(days=7)  # the wall clock jumped a week forward
    runs, following = [], scheduled
    while following is not None and following <= later and len(runs) < 10:
        runs.append(following)  # what APScheduler's Job._get_run_times does
        following = trigger.get_next_fire_time(following, later)
    assert len(runs) <= 2 and following is not None and following > later
    assert following - later <= timedelta(seconds=0.1)


# -- the real process ----------------------------------------------------------------------

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)


@pytest.fixture
def faketime(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """Run a process with a wall clock this test moves, monotonic time untouched."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")

    def jump(to: str) -> None:
        offset.write_text(to + "\n")

    yield jump


@pytest.mark.skipif(LIBFAKETIME is None, reason="no libfaketime (Debian package: faketime)")
async def test_the_agent_process_rides_out_jumps_of_its_wall_clock(
    tmp_path: Path,
    machine: ModbusDeviceSimulator,
    receiver: Receiver,
    faketime: Callable[[str], None],
) -> None:
    config = write_config(tmp_path, port=machine.port, ilert=receiver.url)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(tmp_path / "faketime"),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    log = tmp_path / "agent.log"
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(config),
            stdout=out, stderr=out, env=env,
        )  # fmt: skip
    try:
        receiver.script = [503]  # the start fails once, then the clock jumps a day forward
        await machine.hold(oil_temp=90.0)
        await wait_for(lambda: receiver.attempts, timeout=30, what="a first attempt")
        faketime("+25h")
        await wait_for(lambda: receiver.bodies, timeout=30, what="the start, after the jump")

        receiver.script = [503]  # the end fails once, then the clock goes back an hour
        await machine.hold(oil_temp=70.0)
        await wait_for(lambda: len(receiver.attempts) == 3, timeout=30, what="the end's try")
        faketime("-1h")
        await wait_for(lambda: len(receiver.bodies) == 2, timeout=30, what="the end")

        await machine.hold(oil_temp=91.0)  # polling goes on at once after the jump back
        await wait_for(lambda: len(receiver.bodies) == 3, timeout=30, what="a new start")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    text = log.read_text()
    assert [b["alarm"]["state"] for b in receiver.bodies] == ["active", "ended", "active"], text
    db = sqlite3.connect(tmp_path / "state" / "agent.db")
    assert db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] == 0, text
    assert "the wall clock jumped forward by 25.0 h" in text
    assert "the wall clock jumped back by" in text and "Traceback" not in text
    assert "skipped" not in text  # a jump is not a slow device
