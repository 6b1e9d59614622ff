"""A full disk under ``state_dir`` loses no alarm; a damaged database stops the agent clearly.

The full disk is real: a small tmpfs mounted over the state directory and filled up, which
needs root (CI runs as root); without it the test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from agent.config import load_config
from agent.outbox.store import Message, Store
from agent.runtime.service import Agent
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config
from tests.receiver import Receiver


class SmallDisk:
    """A 16 MB tmpfs at ``path``, filled and freed on demand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with self.filler.open("wb") as out:
            chunk = b"\0" * 65536
            while True:
                try:
                    out.write(chunk)
                    out.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
        with contextlib.suppress(OSError), (self.path / "crumbs").open("wb") as out:
            while True:  # the last few blocks too
                out.write(b"\0" * 512)
                out.flush()

    def free(self) -> None:
        self.filler.unlink()
        (self.path / "crumbs").unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    yield from mounted(tmp_path, "16m")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 1 MB state partition: SQLite's default journal alone (up to 4 MB) would fill it."""
    yield from mounted(tmp_path, "1m")


def mounted(tmp_path: Path, size: str) -> Iterator[SmallDisk]:
    path = tmp_path / "state"
    path.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mount.stderr.decode().strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def states(receiver: Receiver) -> list[tuple[str, str]]:
    return [(b["alarm"]["state"], b["alarm"]["occurrenceId"]) for b in receiver.bodies]


async def test_a_full_disk_delays_new_messages_and_loses_none(
    tmp_path: Path,
    small_disk: SmallDisk,
    machine: ModbusDeviceSimulator,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    agent = Agent(
        load_config(write_config(tmp_path, port=machine.port, ilert=receiver.url), environ={})
    )
    await agent.start()
    store = agent.store
    try:
        await wait_for(lambda: "plc.oil_temp" in agent.values, what="a first poll")
        receiver.default = 503  # the receiver is down: the next two messages stay saved
        await machine.hold(oil_temp=90.0)
        await wait_for(lambda: receiver.attempts, what="a failed attempt")
        await machine.hold(oil_temp=70.0)
        await wait_for(lambda: store.pending_count() == 2, what="start and end saved")

        small_disk.fill()
        receiver.default = 200  # saved before the disk filled: delivered while it is full
        await wait_for(lambda: len(receiver.bodies) == 2, what="the saved messages")
        assert [s for s, _ in states(receiver)] == ["active", "ended"]
        await wait_for(lambda: not store.durable, what="a failed write noticed")

        cycles = agent.pollers["plc"].stats.cycles
        await machine.hold(oil_temp=95.0)  # new transitions wait in memory
        await wait_for(lambda: store.held == 1, what="a new start held in memory")
        await machine.hold(oil_temp=60.0)
        await wait_for(lambda: store.held == 2, what="its end held too")
        await wait_for(lambda: agent.pollers["plc"].stats.cycles > cycles + 20, what="cycles")
        assert len(receiver.bodies) == 2  # not sent before it is saved
        [problem] = [p for p in agent.readiness() if p.startswith("state not durable")]
        assert "database or disk is full" in problem and "2 new message(s)" in problem
        metrics = generate_latest(agent.metrics.registry).decode()
        assert "ixon_agent_state_durable 0.0" in metrics
        assert "ixon_agent_state_waiting_messages 2.0" in metrics

        small_disk.free()
        await wait_for(lambda: len(receiver.bodies) == 4, what="the held messages, sent")
        assert store.durable and store.held == 0 and agent.readiness() == []
    finally:
        await agent.stop()
    (first, a), (_, a2), (second, b), (_, b2) = states(receiver)
    assert (first, second) == ("active", "active") and a == a2 and b == b2 and a != b
    assert [s for s, _ in states(receiver)] == ["active", "ended", "active", "ended"]
    saved = Store(small_disk.path / "agent.db")
    assert saved.pending() == [] and saved.dead() == []
    [oil] = [s for s in saved.alarm_states().values() if s["name"] == "Oil temperature high"]
    assert oil["active"] is False
    saved.close()
    complaints = [r for r in caplog.records if "state not durable" in r.getMessage()]
    assert len(complaints) == 1, [r.getMessage() for r in complaints]  # once a minute
    assert not [r for r in caplog.records if r.exc_info], "a traceback in the log"


async def test_the_agent_starts_and_delivers_on_a_disk_that_is_already_full(
    tmp_path: Path, small_disk: SmallDisk, machine: ModbusDeviceSimulator, receiver: Receiver
) -> None:
    config = load_config(write_config(tmp_path, port=machine.port, ilert=receiver.url), environ={})
    store = Store(small_disk.path / "agent.db")
    store.record([], [Message("ilert", "A", "start", "high", "start of A", {"n": 1})])
    store.close()
    small_disk.fill()
    agent = Agent(config)
    await agent.start()
    try:
        await wait_for(lambda: receiver.bodies == [{"n": 1}], what="the saved message")
        await wait_for(lambda: "plc.oil_temp" in agent.values, what="polling")
    finally:
        await agent.stop()
        small_disk.free()


def damage(path: Path) -> None:
    """Overwrite the third page of the file with garbage, as a bad SD card block would."""
    data = bytearray(path.read_bytes())
    data[8192:12288] = bytes((i * 7) & 0xFF for i in range(4096))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("command", ["run", "outbox"])
def test_a_damaged_database_stops_run_and_outbox_with_exit_2(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "state" / "agent.db"
    store = Store(db)
    pad = {"pad": "x" * 3000}
    store.record([], [Message("ilert", f"O{i}", "start", "high", "x", pad) for i in range(20)])
    store.close()
    damage(db)
    proc = subprocess.run(
        [sys.executable, "-m", "agent", command, "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"the state database {db} is damaged" in proc.stderr
    assert f"mv {db} {db}.damaged" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_memory_queue_is_bounded_and_gives_up_low_severity_first(tmp_path: Path) -> None:
    """While nothing can be written, at most ``max_held`` new messages wait; past it whole
    occurrences go, oldest first, low before medium before high (a unit test of the bound;
    the full-disk test above shows the queue at work)."""
    store = Store(tmp_path / "agent.db", max_held=4)

    def msg(occurrence: str, kind: str, severity: str) -> Message:
        return Message("hook", occurrence, kind, severity, f"{kind} of {occurrence}", {})

    store._hold([], [msg("H1", "start", "high"), msg("L1", "start", "low")], set())
    store._hold([], [msg("M1", "start", "medium"), msg("L1", "end", "low")], set())
    assert store.held == 4 and store.dropped == 0
    store._hold([], [msg("H2", "start", "high")], set())  # one too many: L1 goes, whole
    assert [(m.occurrence_id, m.kind) for m in store._messages] == [
        ("H1", "start"), ("M1", "start"), ("H2", "start"),
    ]  # fmt: skip
    assert store.dropped == 2
    store._hold([], [msg("H3", "start", "high"), msg("H4", "start", "high")], set())
    assert [m.occurrence_id for m in store._messages] == ["H1", "H2", "H3", "H4"]


class RunningAgent:
    """``ixon-agent run`` as systemd starts it, its log in a file, its status port found."""

    def __init__(self, config: Path) -> None:
        self.log_path = config.parent / "agent.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=self.log_path.open("wb"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        import httpx

        port = re.search(r"health on http://127\.0\.0\.1:(\d+)/", self.log())
        if port is None:
            return -1.0
        text = httpx.get(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=5).text
        found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else -1.0

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)  # what systemd sends to restart or update
        return await asyncio.to_thread(self.proc.wait, 60)


async def flap_on_a_full_disk(
    tmp_path: Path, small_disk: SmallDisk, machine: ModbusDeviceSimulator, url: str
) -> RunningAgent:
    """The agent runs, then its disk fills and its alarm flaps: 6 new messages wait in
    memory (3 starts, 3 ends)."""
    text = CONFIG.replace('state_dir = "state"', f'state_dir = "{small_disk.path}"')
    path = write_config(tmp_path, text, port=machine.port, ilert=url)
    path.chmod(0o600)
    agent = RunningAgent(path)
    await wait_for(lambda: agent.metric("ixon_agent_state_durable") == 1.0, timeout=30,
                   what="the agent up")  # fmt: skip
    small_disk.fill()
    for i in range(3):
        await machine.hold(oil_temp=90.0)
        await wait_for(lambda i=i: agent.metric("ixon_agent_state_waiting_messages") == 2 * i + 1,
                       timeout=20, what=f"start {i} held in memory")  # fmt: skip
        await machine.hold(oil_temp=70.0)
        await wait_for(lambda i=i: agent.metric("ixon_agent_state_waiting_messages") == 2 * i + 2,
                       timeout=20, what=f"end {i} held in memory")  # fmt: skip
    return agent


async def test_sigterm_on_a_full_disk_sends_what_waits_in_memory_before_it_exits(
    tmp_path: Path, small_disk: SmallDisk, machine: ModbusDeviceSimulator, receiver: Receiver
) -> None:
    receiver.default = 503  # nothing goes out before the stop: it all waits
    agent = await flap_on_a_full_disk(tmp_path, small_disk, machine, receiver.url)
    receiver.default = 200
    try:
        code = await agent.stop()
    finally:
        small_disk.free()
    log = agent.log()
    assert code == 0, log
    per_occurrence: dict[str, list[str]] = {}
    for state, occurrence in states(receiver):
        per_occurrence.setdefault(occurrence, []).append(state)
    assert list(per_occurrence.values()) == [["active", "ended"]] * 3  # all, each in order
    assert "sending the 6 message(s) that wait in memory straight to their webhooks" in log
    assert "lost" not in log and "Traceback" not in log


async def test_sigterm_on_a_full_disk_names_what_is_lost_and_exits_non_zero(
    tmp_path: Path, small_disk: SmallDisk, machine: ModbusDeviceSimulator, receiver: Receiver
) -> None:
    receiver.default = 503  # the receiver stays down: nowhere to put the 6 messages
    agent = await flap_on_a_full_disk(tmp_path, small_disk, machine, receiver.url)
    try:
        code = await agent.stop()
    finally:
        small_disk.free()
    log = agent.log()
    assert code == 1, log
    [lost] = [line for line in log.splitlines() if "could be neither sent nor saved" in line]
    assert " ERROR " in lost and "stopping: 6 message(s)" in lost
    assert lost.count("of 'Oil temperature high'") == 6 and "for webhook ilert" in lost
    assert "agent stopped: 6 message(s) were lost" in log


async def test_on_a_1_mb_partition_the_journal_never_grows_back_into_the_room_won(
    tmp_path: Path,
    tiny_disk: SmallDisk,
    machine: ModbusDeviceSimulator,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The disk fills, the alarm flaps, the disk is freed: the store is durable again and
    stays so through 40 more transitions, however small the partition."""
    caplog.set_level(logging.INFO)
    text = CONFIG.replace('state_dir = "state"', f'state_dir = "{tiny_disk.path}"')
    text = text.replace('severity = "high"', 'severity = "high"\nmax_notifications = 100')
    agent = Agent(load_config(write_config(tmp_path, text, port=machine.port,
                                           ilert=receiver.url), environ={}))  # fmt: skip
    await agent.start()
    store = agent.store
    try:
        await wait_for(lambda: "plc.oil_temp" in agent.values, what="a first poll")
        tiny_disk.fill()
        await machine.hold(oil_temp=90.0)
        await wait_for(lambda: store.held == 1, what="a start held in memory")
        tiny_disk.free()
        await wait_for(lambda: store.durable, what="durable again")
        await wait_for(lambda: len(receiver.bodies) == 1, what="the held start, sent")
        for sent in range(2, 42):
            await machine.hold(oil_temp=90.0 if sent % 2 else 70.0)
            await wait_for(lambda n=sent: len(receiver.bodies) == n, what=f"message {sent}")
            assert store.durable, f"not durable again at message {sent}: {store.problem}"
            assert (tiny_disk.path / "agent.db-wal").stat().st_size <= 600 * 1024
    finally:
        await agent.stop()
    complaints = [r for r in caplog.records if "state not durable" in r.getMessage()]
    assert len(complaints) == 1  # the real fill, once
