"""Acknowledging at the machine (issue 27): ``ixon-agent ack`` through the state database,
who and when kept on the occurrence, and an ACCEPT to an ilert-events webhook queued after
its ALERT through the outbox, across a restart too; nothing more to an IXON webhook."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.observe.page import render
from agent.runtime.service import Agent
from simulators.ilert import IlertSimulator
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config
from tests.receiver import Receiver

EVENTS = """
[[webhooks]]
name = "events"
url = "{url}/api/events"
format = "ilert-events"
integration_key = "il1api0demo"
"""


def config_text(events_url: str, auto: bool = True) -> str:
    text = CONFIG + EVENTS.replace("{url}", events_url)
    if not auto:
        text = text.replace(
            'instructions = "Check cooling pump P1."',
            'instructions = "Check cooling pump P1."\nauto_acknowledge = false',
        )
    return text


async def ack(path: Path, name: str, *extra: str) -> int:
    return await asyncio.to_thread(main, ["ack", name, "--config", str(path), *extra])


async def test_ack_records_who_and_sends_accept_after_the_alert_to_ilert_events(
    tmp_path: Path,
    machine: ModbusDeviceSimulator,
    ilert: IlertSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(tmp_path, config_text(ilert.url), port=machine.port, ilert=ilert.url)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: len(ilert.received) == 2, what="the IXON start and the ALERT")
        assert await ack(path, "Oil temperature high", "--comment", "on my way") == 0
        out = capsys.readouterr().out
        assert out.startswith("acknowledged: Oil temperature high (occurrence ")
        [events_alert] = [a for a in ilert.alerts if a.source.conf.key == "il1api0demo"]
        await wait_for(lambda: events_alert.status == "ACCEPTED", what="ACCEPTED in ilert")
        [occurrence] = agent.store.history(5)
        assert occurrence.acked_by and occurrence.acked_on is not None
        assert occurrence.ack_comment == "on my way"
        page = render(agent.snapshot(detail=True))
        assert "acknowledged by" in page and "on my way" in page
    finally:
        await agent.stop()
    kinds = [(m.key, m.body.get("eventType") or m.body["alarm"]["state"]) for m in ilert.inbound]
    events = [kind for key, kind in kinds if key == "il1api0demo"]
    assert events == ["ALERT", "ACCEPT"]  # the accept after its alert
    assert [k for k in kinds if k[0] == "il1ixon0demo"] == [("il1ixon0demo", "active")]
    accept = next(m.body for m in ilert.inbound if m.body.get("eventType") == "ACCEPT")
    alert = next(m.body for m in ilert.inbound if m.body.get("eventType") == "ALERT")
    assert accept["alertKey"] == alert["alertKey"] == occurrence.occurrence_id
    assert "on my way" in accept["details"]


async def test_accept_waits_behind_its_alert_across_a_restart(
    tmp_path: Path, machine: ModbusDeviceSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = Receiver(default=503)  # ilert is down: the ALERT waits in the outbox
    await receiver.start()
    try:
        text = config_text(receiver.url)
        path = write_config(tmp_path, text, port=machine.port, ilert=receiver.url)
        agent = Agent(load_config(path, environ={}))
        await agent.start()
        try:
            await machine.hold(oil_temp=95.0)
            await wait_for(lambda: receiver.attempts, what="the first, refused ALERT")
            assert await ack(path, "Oil temperature high") == 0
            await wait_for(
                lambda: any(e.kind == "ack" for e in agent.store.pending(limit=10)),
                what="the ACCEPT queued",
            )
        finally:
            await agent.stop()
        receiver.default = 202  # ilert is back; a new agent takes over the outbox
        again = Agent(load_config(path, environ={}))
        await again.start()
        try:
            await wait_for(
                lambda: any(b.get("eventType") == "ACCEPT" for b in receiver.bodies),
                timeout=30,
                what="the ACCEPT",
            )
        finally:
            await again.stop()
    finally:
        await receiver.stop()
    events = [b.get("eventType") for b in receiver.bodies if "eventType" in b]
    assert events == ["ALERT", "ACCEPT"]  # never the accept of an alert ilert lacks


async def test_auto_acknowledge_false_keeps_an_ended_occurrence_waiting(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    path = write_config(
        tmp_path, config_text(ilert.url, auto=False), port=machine.port, ilert=ilert.url
    )
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: len(agent.store.history(5)) == 1, what="the start")
        await machine.hold(oil_temp=60.0)
        await wait_for(lambda: agent.store.history(5)[0].ended, what="the end")
        assert "not acknowledged" in render(agent.snapshot(detail=True))
        assert await ack(path, "Oil temperature high") == 0  # the last one, ended
        await wait_for(lambda: agent.store.history(5)[0].acked_by is not None, what="acked")
        assert "not acknowledged" not in render(agent.snapshot(detail=True))
        assert await ack(path, "Oil temperature high") == 0  # nothing left to acknowledge
    finally:
        await agent.stop()


async def test_the_page_acknowledges_with_a_login_the_same_origin_and_its_token(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    import re

    import httpx

    from tests.integration.test_login import PASSWORD, with_users

    path = with_users(tmp_path, machine.port)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        assert agent.status is not None
        url = agent.status.url
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: agent.store.history(5), what="the occurrence")
        async with httpx.AsyncClient(auth=("jane", PASSWORD)) as client:
            page = (await client.get(url + "/")).text
            assert 'action="/ack"' in page and "Acknowledge</button>" in page
            token = re.search(r'name="token" value="([0-9a-f]+)"', page)
            alarm = re.search(r'name="alarm" value="([^"]+)"', page)
            assert token and alarm
            form = {"alarm": alarm[1], "token": token[1], "comment": "on it"}
            other = await client.post(
                url + "/ack", data=form, headers={"Origin": "http://evil.example"}
            )
            assert other.status_code == 403  # a form of another site
            stale = await client.post(url + "/ack", data={**form, "token": "0" * 32})
            assert stale.status_code == 403  # no token, no acknowledgement
            async with httpx.AsyncClient() as stranger:
                assert (await stranger.post(url + "/ack", data=form)).status_code == 401
            assert agent.store.history(5)[0].acked_by is None
            done = await client.post(url + "/ack", data=form, headers={"Origin": url})
            assert done.status_code == 303 and done.headers["Location"] == "/"
            [occurrence] = agent.store.history(5)
            assert (occurrence.acked_by, occurrence.ack_comment) == ("jane", "on it")
            page = (await client.get(url + "/")).text
            assert "acknowledged by jane" in page and "Acknowledge</button>" not in page
    finally:
        await agent.stop()


async def test_without_a_login_the_page_has_no_actions(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    import httpx

    path = write_config(tmp_path, port=machine.port)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        assert agent.status is not None
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: agent.store.history(5), what="the occurrence")
        async with httpx.AsyncClient() as client:
            page = (await client.get(agent.status.url + "/")).text
            assert "not acknowledged" in page and "Acknowledge</button>" not in page
            refused = await client.post(agent.status.url + "/ack", data={"alarm": "x"})
            assert refused.status_code == 403
    finally:
        await agent.stop()


async def test_ilert_alert_actions_show_at_the_machine_and_an_accept_acknowledges(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    """The stand-in's alert action posts each lifecycle event to the agent's /ilert, with
    the URL's userinfo as basic auth, as ilert does."""
    import socket

    import httpx

    from simulators.ilert import recommended
    from tests.integration.test_login import PASSWORD, with_users

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        status_port = probe.getsockname()[1]
    forward = f"http://jane:{PASSWORD}@127.0.0.1:{status_port}/ilert"
    ilert = IlertSimulator(recommended(), forward=forward)
    await ilert.start()
    path = with_users(tmp_path, machine.port)
    text = path.read_text().replace("[status]\nport = 0", f"[status]\nport = {status_port}")
    path.write_text(text + EVENTS.replace("{url}", ilert.url))
    text = path.read_text().replace("http://127.0.0.1:8025", ilert.url)
    path.write_text(text)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await machine.hold(oil_temp=95.0)
        await wait_for(lambda: len(ilert.received) == 2, what="the IXON start and the ALERT")
        [occurrence] = agent.store.history(5)
        [alert] = [
            a
            for a in ilert.alerts
            if a.alert_key == occurrence.occurrence_id and a.source.conf.key == "il1api0demo"
        ]
        ilert.accept(alert)  # an operator accepts it in ilert
        await wait_for(lambda: agent.store.history(5)[0].acked_by, what="acknowledged here")
        seen = agent.store.history(5)[0]
        assert seen.acked_by is not None and seen.acked_by.endswith(" in ilert")
        assert seen.ilert is not None and seen.ilert["status"] == "accepted"
        page = render(agent.snapshot(detail=True))
        assert "in ilert" in page and "accepted by" in page
        ilert.resolve(alert, "fixed remotely")  # resolved there, still active here
        await wait_for(
            lambda: (agent.store.history(5)[0].ilert or {}).get("status") == "resolved",
            what="resolved in ilert",
        )
        assert "resolved in ilert" in render(agent.snapshot(detail=True))
        assert "still active here" in render(agent.snapshot(detail=True))
        assigned = {
            "alertKey": occurrence.occurrence_id,
            "eventType": "alert-assigned",
            "assignedTo": {"username": "mia", "firstName": "Mia", "lastName": "Maint"},
        }
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{status_port}/ilert"
            taken = await client.post(url, json=assigned, auth=("jane", PASSWORD))
            assert taken.status_code == 200
        assert (agent.store.history(5)[0].ilert or {})["assigned"] == "Mia Maint"
        assert "assigned to Mia Maint" in render(agent.snapshot(detail=True))
        before = agent.store.history(5)[0]
        url = f"http://127.0.0.1:{status_port}/ilert"
        body = {"alertKey": occurrence.occurrence_id, "eventType": "alert-assigned"}
        async with httpx.AsyncClient() as client:
            assert (await client.post(url, json=body, auth=("jane", "wrong"))).status_code == 401
            auth = ("jane", PASSWORD)
            bad = await client.post(url, content=b"{not json", auth=auth)
            assert bad.status_code == 400
            unknown = await client.post(url, json={**body, "alertKey": "nope"}, auth=auth)
            assert unknown.status_code == 404
            big = await client.post(url, content=b"x" * 70_000, auth=auth)
            assert big.status_code == 413
        assert agent.store.history(5)[0] == before  # the bad ones changed nothing
    finally:
        await agent.stop()
        await ilert.stop()
