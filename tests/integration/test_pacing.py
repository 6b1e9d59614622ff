"""Pacing against real receivers: ilert's stand-in counting in fixed windows, and a
scriptable receiver. Where a window would make a test wait, the pacer's clock is injected."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent.config import Webhook, load_config
from agent.delivery.deliverer import Deliverer
from agent.delivery.pacing import Pacer
from agent.outbox.store import Message, Store
from agent.runtime.service import Agent
from simulators.ilert import IlertSimulator, LimitsConf, recommended
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config
from tests.receiver import Receiver

SEVERITIES = ("low", "medium", "high")


def storm_config(alarms: int) -> str:
    """``alarms`` alarms on one variable, all above 80: they start together at 95."""
    head, tail = CONFIG.split("[[alarms]]")
    tail = tail[tail.index("[[webhooks]]") :]
    text = head
    for i in range(alarms):
        text += f"""
[[alarms]]
name = "Storm {i:02d}"
variable = "plc.oil_temp"
condition = ">"
threshold = {80.0 + i / 10}
severity = "{SEVERITIES[i % 3]}"
"""
    return text + tail


@pytest.fixture
async def strict_ilert() -> AsyncIterator[IlertSimulator]:
    """ilert with its limits counted as ilert counts them, in shorter windows: 8 events
    per key in each fixed 2-second window of the wall clock."""
    conf = recommended()
    conf.limits = LimitsConf(events=8, window=2.0)
    sim = IlertSimulator(conf)
    await sim.start()
    yield sim
    await sim.stop()


async def test_a_storm_to_ilerts_ixon_source_is_paced_to_its_limit_with_no_429(
    tmp_path: Path, machine: ModbusDeviceSimulator, strict_ilert: IlertSimulator
) -> None:
    """12 alarms start together and end together: 24 messages to one key that takes 8 a
    window. Everything arrives, in order per occurrence, and nothing is refused."""
    text = storm_config(12).replace(
        'user_id = "UsrWebhook01"', 'user_id = "UsrWebhook01"\nrate_limit = "8/2s"'
    )
    path = write_config(tmp_path, text, port=machine.port, ilert=strict_ilert.url)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: len(list(agent.engine.active())) == 12, what="12 alarms active")
        await machine.hold(oil_temp=70.0)
        await wait_for(lambda: len(strict_ilert.received) == 24, timeout=60, what="all 24")
        # the receiver records a body before it answers: the last few are still in flight
        await wait_for(lambda: agent.store.pending_count() == 0, what="all marked delivered")
        assert agent.store.dead_count() == 0
    finally:
        await agent.stop()
    assert strict_ilert.events.refused == 0  # not one 429: today it was most of them
    seen: dict[str, list[str]] = {}
    for body in strict_ilert.received:
        seen.setdefault(body["alarm"]["occurrenceId"], []).append(body["alarm"]["state"])
    assert sorted(seen.values()) == [["active", "ended"]] * 12
    times = [m.at for m in strict_ilert.inbound]
    assert all(later - first >= 2.0 for first, later in zip(times, times[8:], strict=False))


def message(occurrence: str, kind: str, severity: str, n: int) -> Message:
    label = f"{kind} of {occurrence}"
    return Message("hook", occurrence, kind, severity, label, {"n": n, "occ": occurrence})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "agent.db")


def paced(url: str, rate: str = "5/min", name: str = "hook") -> Webhook:
    return Webhook.model_validate(
        {"name": name, "url": f"{url}/api/v1/events/ixon/il1K", "rate_limit": rate}
    )


async def delivering(
    store: Store, http: httpx.AsyncClient, webhooks: list[Webhook], pacer: Pacer
) -> Deliverer:
    deliverer = Deliverer(store, webhooks, http, pacer=pacer)
    deliverer.start()
    deliverer.wake()
    return deliverer


async def test_a_high_alarm_behind_200_low_messages_takes_its_keys_next_free_slot(
    store: Store, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    clock = FakeClock()
    store.record([], [message(f"L{i:03d}", "start", "low", i) for i in range(200)])
    deliverer = await delivering(store, http, [paced(receiver.url)], Pacer(clock))
    try:
        await wait_for(lambda: len(receiver.bodies) == 5, what="the key's first 5")
        store.record([], [message("H", "start", "high", 999)])
        store.record([], [message("M", "start", "medium", 998)])
        deliverer.wake()
        for _ in range(3):  # the key is full: nothing more, however often delivery looks
            deliverer.wake()
            await wait_for(lambda: not deliverer.in_flight, what="a look at the outbox")
        assert len(receiver.attempts) == 5
        clock.now += 60.0  # a window after the first answers: five slots again
        deliverer.wake()
        await wait_for(lambda: len(receiver.bodies) == 10, what="the next five")
    finally:
        await deliverer.stop()
    assert [b["occ"] for b in receiver.bodies[5:7]] == ["H", "M"]  # then the oldest lows
    assert [b["occ"] for b in receiver.bodies[7:]] == ["L005", "L006", "L007"]
    held = store.pending()
    assert all(e.attempts == 0 and e.last_error is None for e in held)  # waited, untouched


async def test_webhooks_to_one_key_share_its_budget(
    store: Store, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    clock = FakeClock()
    one, two = paced(receiver.url, "3/min", "one"), paced(receiver.url, "3/min", "two")
    store.record([], [Message(w, f"{w}{i}", "start", "low", "x", {"occ": f"{w}{i}"})
                      for w in ("one", "two") for i in range(3)])  # fmt: skip
    deliverer = await delivering(store, http, [one, two], Pacer(clock))
    try:
        await wait_for(lambda: len(receiver.bodies) == 3, what="three sends to the key")
        deliverer.wake()
        await wait_for(lambda: not deliverer.in_flight, what="a look at the outbox")
        assert len(receiver.attempts) == 3 and store.pending_count() == 3
    finally:
        await deliverer.stop()


@pytest.mark.parametrize("retry_after", [None, "7"])
async def test_a_429_closes_the_whole_key_until_the_receivers_next_window(
    store: Store, http: httpx.AsyncClient, receiver: Receiver, retry_after: str | None
) -> None:
    """ilert answers 429 with no ``Retry-After`` until its next one-minute window: the
    message and every other one to that key wait for it (plus jitter), not a second."""
    clock = FakeClock()
    receiver.script = [429]
    if retry_after:
        receiver.headers = {"Retry-After": retry_after}
    store.record([], [message("O0", "start", "high", 0)])
    webhook = paced(receiver.url, "50/min")
    deliverer = await delivering(store, http, [webhook], Pacer(clock))
    try:
        await wait_for(lambda: receiver.attempts, what="the refused attempt")
        await wait_for(lambda: not deliverer.in_flight, what="its answer")
        wall = time.time()
        store.record([], [message(f"O{i}", "start", "high", i) for i in (1, 2)])
        for _ in range(3):
            deliverer.wake()
            await wait_for(lambda: not deliverer.in_flight, what="a look at the outbox")
        assert len(receiver.attempts) == 1  # the other two wait for the key
        [refused] = [e for e in store.pending() if e.attempts]
        wait = refused.next_attempt - store.now()
        budget = deliverer.pacer.budget("hook")
        assert budget is not None
        closed = budget.closed_until - clock.now
        if retry_after:
            assert 6.0 <= wait <= 7.0 and closed == pytest.approx(7.0)
        else:
            boundary = 60.0 - wall % 60.0
            assert boundary - 1.0 <= wait <= boundary + 9.0
            assert boundary + 1.0 <= closed <= boundary + 9.1
        clock.now += closed + 0.001
        deliverer.wake()
        await wait_for(lambda: len(receiver.bodies) == 2, what="the other two, the key open")
    finally:
        await deliverer.stop()


async def test_sending_without_the_outbox_waits_for_a_slot_held_by_a_send_under_way(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """At a stop on a full disk: three occurrences, one slot a short window; the second
    and third wait for the slot (their key's answer says when), they do not give up."""
    from agent.delivery.direct import send_directly
    from agent.delivery.post import Poster

    webhook = paced(receiver.url, "1/200ms")
    pacer = Pacer()
    pacer.configure([webhook])
    messages = [message(f"O{i}", "start", "high", i) for i in range(3)]
    sent = await send_directly(messages, {"hook": webhook}, Poster(http), pacer, within=5.0)
    assert sent == messages and [b["occ"] for b in receiver.bodies] == ["O0", "O1", "O2"]
    times = [at for at, _ in receiver.attempts]
    assert all(later - first >= 0.2 for first, later in itertools.pairwise(times))
