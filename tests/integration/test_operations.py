"""Operating the agent: heartbeat, the outbox command, send-test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import config_warnings, load_config
from agent.outbox.store import Message, Store
from agent.runtime.scheduling import JitteredInterval
from agent.runtime.service import Agent
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config
from tests.receiver import Receiver

HEARTBEAT = '\n[heartbeat]\nurl = "{ilert}/api/heartbeats/il1hbt0secret"\ninterval = "200ms"\n'


async def test_heartbeat_pings_and_never_logs_its_url(
    tmp_path: Path, machine: ModbusDeviceSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()
    await receiver.start()
    path = write_config(tmp_path, CONFIG + HEARTBEAT, port=machine.port, ilert=receiver.url)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await wait_for(lambda: len(receiver.pings) >= 2, what="two heartbeat pings")
        assert receiver.pings[0] == ("GET", "/api/heartbeats/il1hbt0secret")
        await receiver.stop()
        await wait_for(lambda: agent.snapshot().heartbeat_failures >= 1, what="a failed ping")
    finally:
        await agent.stop()
    assert "heartbeat: ping failed (ConnectError), 1 in a row" in caplog.text
    assert "il1hbt0secret" not in caplog.text


async def test_heartbeat_never_pings_a_key_more_than_5_times_a_minute(
    tmp_path: Path, machine: ModbusDeviceSimulator, receiver: Receiver
) -> None:
    """An interval of 100 ms would be 600 pings a minute: 5 go, the rest are skipped."""
    text = CONFIG + HEARTBEAT.replace('"200ms"', '"100ms"')
    path = write_config(tmp_path, text, port=machine.port, ilert=receiver.url)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        assert agent.heartbeat is not None
        await wait_for(lambda: agent.heartbeat.skipped >= 10, what="ten pings skipped")
    finally:
        await agent.stop()
    assert len(receiver.pings) == 5  # and the next one a minute after the first's answer
    assert "heartbeat.interval: 0.1 s pings more than 5 times a minute" in "\n".join(
        config_warnings(load_config(path, environ={}))
    )


def test_heartbeat_intervals_vary_by_10_percent_either_way() -> None:
    """A fleet switched on together spreads its pings out instead of pinging in lockstep."""
    trigger = JitteredInterval(seconds=60.0, timezone=UTC)
    now = datetime(2026, 12, 5, tzinfo=UTC)
    steps, previous = [], now
    for _ in range(200):
        following = trigger.get_next_fire_time(previous, previous)
        assert following is not None
        steps.append((following - previous).total_seconds())
        previous = following
    assert 54.0 <= min(steps) < 56.0 and 64.0 < max(steps) <= 66.0
    late = trigger.get_next_fire_time(now, now + timedelta(hours=5))  # the clock jumped
    assert late == now + timedelta(hours=5)


def test_outbox_command_lists_and_requeues_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    config = load_config(path, environ={})
    store = Store(config.agent.state_dir / "agent.db")
    pending, dead = store.record(
        [], [Message("ilert", "Occ1", "start", "high", "start of 'Oil hot'", {"a": 1}),
             Message("ilert", "Occ2", "end", "low", "end of 'Motor stopped'", {"b": 2})],
    )  # fmt: skip
    store.retry_later(pending, 0.0, "ConnectError: All connection attempts failed")
    store.bury([dead], "rejected", 404, "not found", "HTTP 404", attempted=True)
    store.close()

    assert main(["outbox", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 pending, 1 dead letter(s)" in out
    assert "start of 'Oil hot'; age" in out and "1 attempt(s)" in out and "ConnectError" in out
    assert "end of 'Motor stopped'; rejected HTTP 404 after 1 attempt(s)" in out
    assert "il1ixon0demo" not in out and "http" not in out.replace("HTTP", "")

    assert main(["outbox", "--config", str(path), "--retry-dead"]) == 0
    out = capsys.readouterr().out
    assert "re-queued 1 dead letter(s)" in out and "2 pending, 0 dead letter(s)" in out


async def test_send_test_goes_through_the_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    receiver = Receiver()
    await receiver.start()
    path = write_config(tmp_path, ilert=receiver.url)
    code = await asyncio.to_thread(main, ["send-test", "--config", str(path), "--timeout", "10"])
    await receiver.stop()
    assert code == 0
    assert "webhook ilert: test alarm delivered, and resolved" in capsys.readouterr().out
    start, end = receiver.bodies  # the test alert is opened, then resolved
    assert start["alarm"]["name"] == "Test message from ixon-agent"
    assert start["systemLabel"] == "alarm-high"
    assert (start["alarm"]["state"], end["alarm"]["state"]) == ("active", "ended")
    assert start["alarm"]["occurrenceId"] == end["alarm"]["occurrenceId"]


async def test_send_test_keep_open_and_a_test_that_cannot_go_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    receiver = Receiver()
    await receiver.start()
    path = write_config(tmp_path, ilert=receiver.url)
    argv = ["send-test", "--config", str(path), "--timeout", "10"]
    code = await asyncio.to_thread(main, [*argv, "--keep-open"])
    assert code == 0 and [b["alarm"]["state"] for b in receiver.bodies] == ["active"]
    receiver.default = 503  # the receiver is down for the whole test
    code = await asyncio.to_thread(main, [*argv[:-1], "1"])
    await receiver.stop()
    assert code == 1
    out = capsys.readouterr().out
    assert "not delivered within 1 s; withdrawn from the outbox (nothing is sent later)" in out
    store = Store(tmp_path / "state" / "agent.db")
    try:
        assert store.pending_count() == 0 and store.dead_count() == 0
    finally:
        store.close()


def test_send_test_names_unknown_webhooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send-test", "--config", str(write_config(tmp_path)), "--webhook", "pager"]) == 2
    assert "no webhook 'pager' (known: ilert)" in capsys.readouterr().err
    assert main(["send-test", "--config", str(write_config(tmp_path)), "--webhook", "ilrt"]) == 2
    assert "no webhook 'ilrt'; did you mean 'ilert'?" in capsys.readouterr().err


def test_an_unusable_state_dir_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    path = write_config(tmp_path)
    assert main(["outbox", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"agent.state_dir: cannot use {blocker}: {blocker} is not a directory")
    assert "Traceback" not in err


async def test_a_shelved_alarm_is_notified_when_its_shelf_ends_if_still_active(
    tmp_path: Path, machine: ModbusDeviceSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver()
    await receiver.start()
    path = write_config(tmp_path, CONFIG, port=machine.port, ilert=receiver.url)
    await machine.hold(oil_temp=60.0)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        args = ["--config", str(path)]
        assert main(["shelve", "Oil temperature high", "--for", "2s", *args]) == 0
        state = agent.engine.states[0]
        await wait_for(lambda: state.shelf is not None, what="the agent to take the shelf")
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: state.active, what="the alarm to start, shelved")
        assert receiver.bodies == []
        # the shelf ends, the condition holds: notified then
        await wait_for(lambda: len(receiver.bodies) == 1, timeout=15, what="the start")
        assert receiver.bodies[0]["alarm"]["name"] == "Oil temperature high"
        ended = "'Oil temperature high' shelf time ended: it is active, so it is notified now"
        await wait_for(lambda: ended in caplog.text, what="the log line")
        # shelved again, then unshelved by hand: the end of a notified start always goes
        assert main(["shelve", "Oil temperature high", "--for", "1h", *args]) == 0
        await wait_for(lambda: state.shelf is not None, what="the second shelf")
        assert main(["unshelve", "Oil temperature high", *args]) == 0
        await wait_for(lambda: state.shelf is None, what="the unshelve")
        await machine.hold(oil_temp=60.0)
        await wait_for(lambda: len(receiver.bodies) == 2, what="the end")
    finally:
        await agent.stop()
        await receiver.stop()
