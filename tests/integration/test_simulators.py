"""The ilert and Sumo Logic stand-ins, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.ilert import (
    TRIGGER_TYPES,
    ActionConf,
    HeartbeatConf,
    IlertConf,
    IlertSimulator,
    PolicyConf,
    SourceConf,
)
from simulators.sumo import SumoSimulator
from tests.conftest import CHROMIUM, wait_for
from tests.receiver import Receiver


@pytest.fixture
async def sumo(tmp_path: Path) -> AsyncIterator[SumoSimulator]:
    sim = SumoSimulator(store=tmp_path / "sumo.ndjson")
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def event(**fields: Any) -> dict[str, Any]:
    return {
        "integrationKey": "il1api0demo",
        "eventType": "ALERT",
        "summary": "Pump failed",
    } | fields


# -- Events API ---------------------------------------------------------------------------


async def test_alert_opens_and_appends_by_alert_key_case_insensitive(
    ilert: IlertSimulator, http: httpx.AsyncClient
) -> None:
    first = await http.post(
        f"{ilert.url}/api/events", json=event(alertKey="Pump-1", priority="LOW", details=None)
    )
    assert first.status_code == 202 and first.headers["correlation-id"]
    assert first.json()["alertKey"] == "Pump-1" and first.json()["alertUrl"].endswith(
        "/api/alerts/1"
    )
    again = await http.post(f"{ilert.url}/api/events", json=event(alertKey="PUMP-1"))
    assert again.status_code == 202
    [alert] = ilert.alerts
    assert (alert.summary, alert.priority, alert.status) == ("Pump failed", "LOW", "PENDING")
    assert [t["eventType"] for t in alert.timeline] == ["alert-created", "alert-event-appended"]


async def test_accept_and_resolve_act_on_the_open_alert(
    ilert: IlertSimulator, http: httpx.AsyncClient
) -> None:
    await http.post(f"{ilert.url}/api/events", json=event(alertKey="k1"))
    accepted = await http.post(
        f"{ilert.url}/api/events", json=event(eventType="ACCEPT", alertKey="K1", summary=None)
    )
    assert accepted.status_code == 202 and ilert.alerts[0].status == "ACCEPTED"
    resolved = await http.post(
        f"{ilert.url}/api/events",
        json={"apiKey": "il1api0demo", "eventType": "RESOLVE", "alertKey": "k1"},
    )
    assert resolved.status_code == 202 and ilert.alerts[0].status == "RESOLVED"
    again = await http.post(
        f"{ilert.url}/api/events", json=event(eventType="RESOLVE", alertKey="k1")
    )
    assert again.status_code == 400 and again.json()["code"] == "NO_OPEN_ALERT_WITH_KEY"
    reopened = await http.post(f"{ilert.url}/api/events", json=event(alertKey="k1"))
    assert reopened.status_code == 202 and len(ilert.alerts) == 2  # a resolved alert is not reused


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"eventType": "ALERT", "summary": "x"}, 400, "MISSING_FIELD"),
        (event(eventType=None), 400, "MISSING_FIELD"),
        (event(summary=None), 400, "MISSING_FIELD"),
        (event(eventType="EXPLODE"), 400, "INVALID_EVENT_TYPE"),
        (event(priority="URGENT"), 400, "INVALID_PRIORITY"),
        (event(severity=0), 400, "INVALID_SEVERITY"),
        (event(severity=6), 400, "INVALID_SEVERITY"),
        (event(severity="3"), 400, "INVALID_SEVERITY"),
        (event(severity=2.5), 400, "INVALID_SEVERITY"),
        (event(severity=True), 400, "INVALID_SEVERITY"),
        (event(eventType="ACCEPT", alertKey="nothing"), 400, "NO_OPEN_ALERT_WITH_KEY"),
        (event(integrationKey="il1nosuchkey"), 404, "ALERT_SOURCE_NOT_FOUND"),
        (event(integrationKey="il1ixon0demo"), 404, "ALERT_SOURCE_NOT_FOUND"),
    ],
)
async def test_events_api_errors(
    ilert: IlertSimulator, http: httpx.AsyncClient, body: dict[str, Any], status: int, code: str
) -> None:
    response = await http.post(f"{ilert.url}/api/events", json=body)
    assert response.status_code == status and response.json()["code"] == code
    assert ilert.alerts == []


async def test_events_api_priority_severity_and_key_in_the_path(http: httpx.AsyncClient) -> None:
    conf = IlertConf(sources=[
        SourceConf(name="High source", key="il1high"),
        SourceConf(name="Low source", key="il1low", priority="LOW"),
    ])  # fmt: skip
    sim = IlertSimulator(conf)
    await sim.start()
    try:
        for key, priority, severity in [
            ("il1high", None, 1), ("il1high", "LOW", 5), ("il1low", None, None),
            ("il1low", "HIGH", None),
        ]:  # fmt: skip
            body = event(integrationKey=key, priority=priority, severity=severity)
            assert (await http.post(f"{sim.url}/api/events", json=body)).status_code == 202
        in_path = {"eventType": "ALERT", "summary": "by path", "alertKey": "p"}
        assert (await http.post(f"{sim.url}/api/events/il1low", json=in_path)).status_code == 202
        assert (await http.post(f"{sim.url}/api/events/il1nope", json=in_path)).status_code == 404
    finally:
        await sim.stop()
    # no priority: the source's; a LOW source ignores the event's (as ilert documents)
    assert [(a.source.name, a.priority, a.severity) for a in sim.alerts] == [
        ("High source", "HIGH", 1), ("High source", "LOW", 5), ("Low source", "LOW", None),
        ("Low source", "LOW", None), ("Low source", "LOW", None),
    ]  # fmt: skip


async def test_limits_per_key_in_fixed_one_minute_windows_as_ilert_counts(
    ilert: IlertSimulator, http: httpx.AsyncClient
) -> None:
    now = [6000.0 + 59.0]  # one second before a whole minute of the wall clock
    for limiter in (ilert.events, ilert.pings, ilert.api):
        limiter.clock = lambda: now[0]
    v1 = f"{ilert.url}/api/v1/events/api/il1api0demo"
    ixon = f"{ilert.url}/api/v1/events/ixon/il1ixon0demo"

    async def event(i: int, url: str = v1) -> int:
        if url == ixon:
            body = {"shortContent": {"code": "alarm-active", "alarmName": f"a{i}"}}
            return (await http.post(url, json=body)).status_code
        event = {"eventType": "ALERT", "summary": f"e{i}", "alertKey": f"k{i}"}
        return (await http.post(url, json=event)).status_code

    assert [await event(i) for i in range(52)] == [202] * 50 + [429, 429]
    limited = await http.post(v1, json={"eventType": "ALERT", "summary": "x"})
    assert "Retry-After" not in limited.headers  # ilert says nothing: the next window
    assert await event(0, ixon) == 202  # another key, its own budget
    now[0] += 1.0  # the next window: a whole new budget, however full the last one was
    assert [await event(i) for i in range(50)] == [202] * 50
    assert await event(51) == 429
    beat = f"{ilert.url}/api/heartbeats/il1hbt0demo"
    assert [(await http.get(beat)).status_code for _ in range(6)] == [202] * 5 + [429]
    stats = (await http.get(f"{ilert.url}/admin/stats")).json()
    assert stats["throttled"] == {"events": 4, "heartbeats": 1, "api": 0}
    assert stats["received"] == len(ilert.received) == 101
    assert stats["requests"] == 52 + 1 + 1 + 51 + 6


async def test_the_alert_api_allows_700_requests_a_minute_per_address(
    ilert: IlertSimulator, http: httpx.AsyncClient
) -> None:
    ilert.api.clock = lambda: 6000.0
    ilert.api.limit = 5  # the same counting as 700, in fewer requests
    codes = [(await http.get(f"{ilert.url}/api/alerts")).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    assert (await http.get(f"{ilert.url}/")).status_code == 200  # the page is not the API


@pytest.mark.parametrize("template", ["{{alarm.occurrenceId}}", "{{ alarm.occurrenceId }}"])
async def test_ixon_source_with_an_alert_key_template_groups_a_resend(
    http: httpx.AsyncClient, template: str
) -> None:
    conf = IlertConf(sources=[
        SourceConf(name="IXON Cloud", key="il1ixon0demo", integration="ixon",
                   alert_key_template=template),
    ])  # fmt: skip
    sim = IlertSimulator(conf)
    await sim.start()
    try:
        url = f"{sim.url}/api/v1/events/ixon/il1ixon0demo"
        start = ixon("active", "Occ000000001")
        assert (await http.post(url, json=start)).status_code == 202
        again = await http.post(url, json=start)  # a resend (delivery is at least once)
        assert again.status_code == 202 and again.json() == {
            "alertKey": "Occ000000001",
            "alertId": 1,
        }
        assert (await http.post(url, json=ixon("ended", "Occ000000001"))).status_code == 202
        assert (await http.post(url, json=ixon("active", "Occ000000002"))).status_code == 202
        wrong = await http.post(f"{sim.url}/api/v1/events/ixon/il1wrong", json=start)
        assert wrong.status_code == 404
    finally:
        await sim.stop()
    first, second = sim.alerts
    assert first.summary == "Oil temperature high (Packaging line 3)"
    assert first.details.startswith("Check cooling pump P1.\nOil temperature: 84.2")
    assert (first.alert_key, first.status, first.priority) == ("Occ000000001", "RESOLVED", "HIGH")
    assert [t["eventType"] for t in first.timeline] == [
        "alert-created", "alert-event-appended", "alert-resolved",
    ]  # fmt: skip
    assert (second.alert_key, second.status) == ("Occ000000002", "PENDING")


async def test_ixon_source_without_a_template_opens_an_alert_per_start(
    http: httpx.AsyncClient,
) -> None:
    """As a new ilert IXON source does: a resent start pages twice; the end closes both."""
    ilert = IlertSimulator()  # the stand-in's default: no alert key template
    await ilert.start()
    try:
        url = f"{ilert.url}/api/v1/events/ixon/il1ixon0demo"
        start = ixon("active", "Occ000000001")
        keys = [(await http.post(url, json=start)).json()["alertKey"] for _ in range(2)]
        assert len(set(keys)) == 2 and len(ilert.alerts) == 2
        assert (await http.post(url, json=ixon("ended", "Occ000000001"))).status_code == 202
    finally:
        await ilert.stop()
    assert [a.status for a in ilert.alerts] == ["RESOLVED", "RESOLVED"]


def ixon(
    state: str,
    occurrence: str,
    user: str = "UsrWebhook01",
    label: str = "alarm-high",
    company: str = "1111-2222-3333-4444-5555",
) -> dict[str, Any]:
    code = "alarm-active" if state == "active" else "alarm-ended"
    return {
        "systemLabel": label,
        "shortContent": {"code": code, "alarmName": "Oil temperature high", "agentName": "Packaging line 3"},
        "longContent": {"code": code, "instructions": "Check cooling pump P1.",
                        "extraInformation": [{"type": "value", "key": "Oil temperature", "value": 84.2}]},
        "user": {"publicId": user}, "company": {"publicId": company},
        "alarm": {"occurrenceId": occurrence, "state": state},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("field", "routed", "fallback"),
    [
        (
            "user",
            ixon("active", "o1", user="UsrMaint0001"),
            ixon("active", "o2", user="UsrOther0001"),
        ),
        (
            "system_label",
            ixon("active", "o1", label="alarm-low"),
            ixon("active", "o2", label="alarm-high"),
        ),
        (
            "company",
            ixon("active", "o1", company="2222-0000-0000-0000-0001"),
            ixon("active", "o2", company="9999-0000-0000-0000-0000"),
        ),
    ],
)
async def test_dynamic_routing_by_each_field_with_fallback(
    field: str, routed: dict[str, Any], fallback: dict[str, Any], http: httpx.AsyncClient
) -> None:
    key = {
        "user": "UsrMaint0001",
        "system_label": "alarm-low",
        "company": "2222-0000-0000-0000-0001",
    }[field]
    conf = IlertConf(
        escalation_policies=[
            PolicyConf(name="Default policy"),
            PolicyConf(name="Maintenance", routing_key=key, levels=[["maint"]]),
        ],
        sources=[
            SourceConf(
                name="IXON Cloud", key="il1ixon0demo", integration="ixon", routing_field=field
            )
        ],  # type: ignore[arg-type]
    )
    sim = IlertSimulator(conf)
    await sim.start()
    try:
        for body in (routed, fallback):
            assert (
                await http.post(f"{sim.url}/api/v1/events/ixon/il1ixon0demo", json=body)
            ).status_code == 202
    finally:
        await sim.stop()
    assert [a.policy.name for a in sim.alerts] == ["Maintenance", "Default policy"]
    assert sim.alerts[0].responders[0]["user"]["username"] == "maint"


async def test_heartbeat_missed_opens_an_alert_and_a_ping_resolves_it(
    http: httpx.AsyncClient,
) -> None:
    sim = IlertSimulator(
        IlertConf(heartbeats=[HeartbeatConf(name="Line 3 agent", key="il1hbt0test", interval=0.3)])
    )
    await sim.start()
    try:
        assert (await http.get(f"{sim.url}/api/heartbeats/il1hbt0test")).status_code == 202
        assert (await http.post(f"{sim.url}/api/pings/il1hbt0test")).status_code == 202
        assert (await http.get(f"{sim.url}/api/heartbeats/il1unknown")).status_code == 404
        await wait_for(lambda: sim.alerts, what="the missed-heartbeat alert")
        assert sim.alerts[0].summary == "Heartbeat Line 3 agent missed"
        assert (await http.head(f"{sim.url}/api/v1/heartbeats/il1hbt0test")).status_code == 202
        assert sim.alerts[0].status == "RESOLVED"
    finally:
        await sim.stop()


async def test_fault_switches(ilert: IlertSimulator, http: httpx.AsyncClient) -> None:
    url = f"{ilert.url}/api/events"
    assert (
        await http.post(f"{ilert.url}/admin/faults", json={"mode": "5xx", "count": 2})
    ).status_code == 200
    assert [(await http.post(url, json=event(alertKey="f"))).status_code for _ in range(3)] == [
        503,
        503,
        202,
    ]
    await http.post(f"{ilert.url}/admin/faults", json={"mode": "429", "count": 1, "retry_after": 7})
    limited = await http.post(url, json=event(alertKey="f"))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    await http.post(f"{ilert.url}/admin/faults", json={"mode": "drop", "count": 1})
    with pytest.raises(httpx.HTTPError):
        await http.post(url, json=event(alertKey="f"))
    await http.post(f"{ilert.url}/admin/faults", json={"mode": "delay", "delay": 2.0, "count": 1})
    with pytest.raises(httpx.TimeoutException):
        await http.post(url, json=event(alertKey="f"), timeout=0.3)
    assert (await http.get(f"{ilert.url}/api/alerts")).status_code == 200  # not an inbound path
    assert len(ilert.received) == 1  # the one that got through; the delayed one is still held


# -- lifecycle webhooks to the Sumo stand-in ---------------------------------------------


#: ilert's documented default payload: these keys and no others (``assignedTo`` when assigned)
DOCUMENTED = {"id", "status", "summary", "details", "reportTime", "eventType", "priority",
              "alertKey", "alertSource", "assignedTo", "responders"}  # fmt: skip
USER_KEYS = {"id", "username", "firstName", "lastName", "email"}


def check_documented_payload(e: dict[str, Any]) -> None:
    """One lifecycle webhook body against ilert's documented field list and types."""
    assert set(e) <= DOCUMENTED and DOCUMENTED - {"assignedTo"} <= set(e), sorted(e)
    assert isinstance(e["id"], str) and e["id"].isdigit()
    assert e["status"] in ("PENDING", "ACCEPTED", "RESOLVED") and e["priority"] in ("HIGH", "LOW")
    assert e["eventType"] in TRIGGER_TYPES and e["reportTime"].endswith("Z")
    assert set(e["alertSource"]) == {"id", "name"} and isinstance(e["alertSource"]["id"], int)
    if "assignedTo" in e:
        assert set(e["assignedTo"]) == {"username", "email", "firstName", "lastName"}
    for responder in e["responders"]:
        assert set(responder) == {"user", "status"} and set(responder["user"]) == USER_KEYS


async def test_every_trigger_type_reaches_sumo_as_ilerts_default_payload(
    sumo: SumoSimulator, http: httpx.AsyncClient
) -> None:
    sumo.sources["created"] = "only/created"
    conf = IlertConf(alert_actions=[
        ActionConf(name="sumo", url=f"{sumo.url}/receiver/v1/http/demo", not_resolved_delay=0.05),
        ActionConf(name="created-only", url=f"{sumo.url}/receiver/v1/http/created",
                   event_types=["alert-created"]),
    ])  # fmt: skip
    sim = IlertSimulator(conf)
    await sim.start()
    try:
        await http.post(
            f"{sim.url}/api/events",
            json=event(alertKey="life", priority="LOW", details="Motor M2 tripped"),
        )
        await wait_for(
            lambda: any(t["eventType"] == "v-alert-not-resolved" for t in sim.alerts[0].timeline),
            what="the not-resolved reminder",
        )
        base = f"{sim.url}/api/alerts/1"
        for method, path, body in [
            ("PUT", "accept", None), ("POST", "comments", {"content": "On my way"}),
            ("PUT", "raise", None), ("PUT", "escalate", None), ("PUT", "escalate", None),
            ("PUT", "assign", {"user": "maint"}),
            ("POST", "responders", {"user": "lead"}), ("DELETE", "responders/lead", None),
            ("POST", "channels", {"name": "#line3"}), ("DELETE", "channels/%23line3", None),
            ("PUT", "resolve", None),
        ]:  # fmt: skip
            response = await http.request(method, f"{base}/{path}", json=body)
            assert response.status_code == 200, (path, response.text)
        await sim.settle()
    finally:
        await sim.stop()
    received = sumo.by_category("webhook/ilert")  # the Sumo source's own category
    events = [json.loads(m["message"]) for m in received]
    assert [e["eventType"] for e in events] == [
        "alert-created", "v-alert-not-resolved", "alert-acknowledged", "alert-comment-added",
        "alert-raised", "alert-auto-escalated", "alert-escalation-ended", "alert-assigned",
        "alert-responder-added", "alert-responder-removed", "alert-channel-attached",
        "alert-channel-detached", "alert-resolved",
    ]  # fmt: skip
    assert sorted(e["eventType"] for e in events) == sorted(TRIGGER_TYPES)
    for e in events:
        check_documented_payload(e)
        assert (e["id"], e["summary"], e["details"]) == ("1", "Pump failed", "Motor M2 tripped")
        assert e["alertKey"] == "life" and e["alertSource"] == {
            "id": 2,
            "name": "Edge agent events",
        }
    by_type = {e["eventType"]: e for e in events}
    created = by_type["alert-created"]
    assert (created["status"], created["priority"]) == ("PENDING", "LOW")
    assert created["assignedTo"] == {
        "username": "oncall", "email": "oncall@example.com", "firstName": "Olivia",
        "lastName": "Oncall",
    }  # fmt: skip
    assert created["responders"] == [
        {"user": {"id": created["responders"][0]["user"]["id"], "username": "oncall",
                  "firstName": "Olivia", "lastName": "Oncall", "email": "oncall@example.com"},
         "status": "PENDING"}
    ]  # fmt: skip
    acknowledged = by_type["alert-acknowledged"]
    assert (
        acknowledged["status"] == "ACCEPTED"
        and acknowledged["responders"][0]["status"] == "ACCEPTED"
    )
    assert by_type["alert-raised"]["priority"] == "HIGH"
    assert by_type["alert-auto-escalated"]["assignedTo"]["username"] == "lead"
    assert by_type["alert-assigned"]["assignedTo"]["username"] == "maint"
    assert [r["user"]["username"] for r in by_type["alert-responder-added"]["responders"]] == [
        "maint", "lead",
    ]  # fmt: skip
    assert by_type["alert-resolved"]["status"] == "RESOLVED"
    assert {(m["name"], m["host"]) for m in received} == {(None, None)}  # no X-Sumo-* headers
    assert [json.loads(m["message"])["eventType"] for m in sumo.by_category("only/created")] == [
        "alert-created"
    ]


async def test_custom_body_template_and_basic_auth_from_the_url(
    receiver: Receiver, http: httpx.AsyncClient
) -> None:
    template = (
        '{"text": "{{alertSummary}} is {{alertStatus}} ({{eventType}})", "id": "{{alertId}}",'
        ' "key": "{{alertKey}}", "details": "{{alertDetails}}", "priority": "{{alertPriority}}",'
        ' "url": "{{alertUrl}}", "source": [{{alertSourceId}}, "{{alertSourceName}}"],'
        ' "policy": [{{escalationPolicyId}}, "{{escalationPolicyName}}"],'
        ' "reported": "{{reportTime}}", "link": "{{link}}", "unknown": "{{nothing}}"}'
    )
    hook = f"http://ilert%40hook:p%3Ass@127.0.0.1:{receiver.port}/hook"
    conf = IlertConf(alert_actions=[
        ActionConf(name="custom", url=hook, body_template=template, headers={"X-Token": "t1"},
                   event_types=["alert-created", "alert-resolved"]),
    ])  # fmt: skip
    sim = IlertSimulator(conf)
    await sim.start()
    try:
        links = [{"href": "http://hmi.local/line3", "text": "HMI"}]
        body = event(alertKey="k", summary="Oil & <hot>", details="d", priority="LOW", links=links)
        await http.post(f"{sim.url}/api/events", json=body)
        await http.put(f"{sim.url}/api/alerts/1/resolve")
        await wait_for(lambda: len(receiver.bodies) == 2, what="two webhooks")
    finally:
        await sim.stop()
    created, resolved = receiver.bodies
    assert created == {
        "text": "Oil & <hot> is PENDING (alert-created)", "id": "1", "key": "k", "details": "d",
        "priority": "LOW", "url": f"{sim.url}/api/alerts/1", "source": [2, "Edge agent events"],
        "policy": [1, "Default policy"], "reported": sim.alerts[0].report_time,
        "link": "http://hmi.local/line3", "unknown": "",
    }  # fmt: skip
    assert resolved["text"] == "Oil & <hot> is RESOLVED (alert-resolved)"
    for headers in receiver.request_headers:
        expected = "Basic " + base64.b64encode(b"ilert@hook:p:ss").decode()
        assert headers["Authorization"] == expected and headers["X-Token"] == "t1"
        assert not [h for h in headers if h.lower().startswith("x-sumo")]
    assert all("p:ss" not in str(d) and "p%3Ass" not in str(d) for d in sim.deliveries)


async def test_escalation_by_timeout_its_end_and_the_not_resolved_reminder(
    sumo: SumoSimulator, http: httpx.AsyncClient
) -> None:
    conf = IlertConf(
        escalation_policies=[PolicyConf(name="Default policy", escalation_timeout=0.2)],
        alert_actions=[ActionConf(name="sumo", url=f"{sumo.url}/receiver/v1/http/demo",
                                  escalation_ended_delay=0.3, not_resolved_delay=0.5)],
    )  # fmt: skip
    sim = IlertSimulator(conf)
    await sim.start()
    try:
        for key in ("resolved", "accepted", "ignored"):
            await http.post(f"{sim.url}/api/events", json=event(alertKey=key))
        await http.put(f"{sim.url}/api/alerts/1/resolve")
        await http.put(f"{sim.url}/api/alerts/2/accept")

        def types(alert_id: str) -> list[str]:
            return [
                e["eventType"] for e in map(json.loads, (m["message"] for m in sumo.messages))
                if e["id"] == alert_id
            ]  # fmt: skip

        await wait_for(
            lambda: {"alert-escalation-ended", "v-alert-not-resolved"} <= set(types("3")),
            what="the ignored alert's escalation end and reminder",
        )
    finally:
        await sim.stop()
    ignored = types("3")
    assert ignored[:2] == ["alert-created", "alert-auto-escalated"]
    assert sorted(ignored[2:]) == ["alert-escalation-ended", "v-alert-not-resolved"]
    assert sim.alerts[2].responders[0]["user"]["username"] == "lead"
    assert types("2") == ["alert-created", "alert-acknowledged", "v-alert-not-resolved"]
    assert types("1") == ["alert-created", "alert-resolved"]  # resolved: no reminder


def test_alert_action_names_ilerts_trigger_types() -> None:
    with pytest.raises(ValueError, match="alert-acknowledged"):
        ActionConf(name="old", url="http://127.0.0.1:1/", event_types=["alert-accepted"])


# -- the Sumo stand-in itself ---------------------------------------------------------------


async def test_sumo_lines_encodings_codes_faults_and_queries(
    sumo: SumoSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = f"{sumo.url}/receiver/v1/http/demo"
    headers = {"X-Sumo-Category": "plant/line3", "X-Sumo-Host": "edge-01"}
    assert (await http.post(url, content=b"first\nsecond\n\n", headers=headers)).status_code == 200
    zipped = {**headers, "Content-Encoding": "gzip"}
    assert (
        await http.post(url, content=gzip.compress(b"third"), headers=zipped)
    ).status_code == 200
    deflated = {"X-Sumo-Category": "other", "Content-Encoding": "deflate"}
    assert (
        await http.post(url, content=zlib.compress(b"fourth"), headers=deflated)
    ).status_code == 200
    assert (await http.post(f"{sumo.url}/receiver/v1/http/wrong", content=b"x")).status_code == 401
    token = await http.post(
        f"{sumo.url}/receiver/v1/http", content=b"fifth", headers={"X-Sumo-Token": "demo"}
    )
    assert token.status_code == 200
    await http.post(f"{sumo.url}/admin/faults", json={"mode": "429", "count": 1})
    dropped = await http.post(url, content=b"lost", headers=headers)
    assert dropped.status_code == 429 and "quota" in dropped.text
    listed = (await http.get(f"{sumo.url}/api/messages", params={"category": "plant/line3"})).json()
    assert [m["message"] for m in listed] == ["first", "second", "third"]
    assert {(m["host"], m["name"]) for m in listed} == {("edge-01", None)} and listed[0][
        "receivedAt"
    ]
    assert len((await http.get(f"{sumo.url}/api/messages")).json()) == 5

    again = SumoSimulator(store=tmp_path / "sumo.ndjson")  # a new process, the same file
    assert [m["message"] for m in again.by_category("plant/line3")] == ["first", "second", "third"]


async def test_sumo_source_category_fields_and_json_document_boundaries(
    sumo: SumoSimulator, http: httpx.AsyncClient
) -> None:
    url = f"{sumo.url}/receiver/v1/http/demo"
    document = {"id": "7", "summary": "Oil temperature high", "responders": [{"status": "PENDING"}]}
    pretty = json.dumps(document, indent=2)
    assert pretty.count("\n") >= 5
    fields = {"X-Sumo-Fields": "site=plant-7, line=3,broken,=nokey"}
    assert (await http.post(url, content=pretty.encode(), headers=fields)).status_code == 200
    ndjson = json.dumps({"n": 1}) + "\n" + json.dumps({"n": 2}) + "\n"
    assert (await http.post(url, content=ndjson.encode())).status_code == 200
    lines = "2026-11-23 10:00:00 start\n{not json\n  indented\n"
    assert (await http.post(url, content=lines.encode())).status_code == 200
    received = sumo.by_category("webhook/ilert")  # the code's own category: no header needed
    assert [m["message"] for m in received] == [
        pretty, '{"n": 1}', '{"n": 2}', "2026-11-23 10:00:00 start", "{not json", "  indented",
    ]  # fmt: skip
    assert json.loads(received[0]["message"]) == document
    assert received[0]["fields"] == {"site": "plant-7", "line": "3"}
    assert received[1]["fields"] == {}
    listed = (
        await http.get(f"{sumo.url}/api/messages", params={"category": "webhook/ilert"})
    ).json()
    assert listed[0]["fields"] == {"site": "plant-7", "line": "3"} and len(listed) == 6


@pytest.mark.parametrize("mode", ["408", "429", "503", "504"])
async def test_sumo_fault_answers_keep_nothing(
    sumo: SumoSimulator, http: httpx.AsyncClient, mode: str
) -> None:
    url = f"{sumo.url}/receiver/v1/http/demo"
    assert (
        await http.post(f"{sumo.url}/admin/faults", json={"mode": mode, "count": 1})
    ).status_code == 200
    assert (await http.post(url, content=b"lost")).status_code == int(mode)
    assert (await http.post(url, content=b"kept")).status_code == 200
    assert [m["message"] for m in sumo.messages] == ["kept"]


async def test_sumo_command_line_sources_and_categories() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.sumo", "--port", "0", "--code", "a1=plant/alarms",
        "--code", "b2", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        base = line.split(" on ")[-1].strip()
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.post(f"{base}/receiver/v1/http/a1", content=b"x")).status_code == 200
            assert (await http.post(f"{base}/receiver/v1/http/b2", content=b"y")).status_code == 200
            assert (
                await http.post(f"{base}/receiver/v1/http/demo", content=b"z")
            ).status_code == 401
            listed = (await http.get(f"{base}/api/messages")).json()
        assert [(m["message"], m["category"]) for m in listed] == [
            ("x", "plant/alarms"),
            ("y", None),
        ]
    finally:
        proc.terminate()
        await proc.wait()
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.sumo", "--fault", "teapot", stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(bad.communicate(), 30)
    assert bad.returncode == 2 and b"--fault teapot" in err


# -- the page in a real browser -------------------------------------------------------------


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian package: chromium)")
async def test_alert_page_renders_in_headless_chromium(
    ilert: IlertSimulator, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    await http.post(
        f"{ilert.url}/api/events", json=event(alertKey="a", summary="Pump <b>failed</b>")
    )
    await http.post(
        f"{ilert.url}/api/events", json=event(alertKey="b", summary="Guard open", priority="LOW")
    )
    await http.post(f"{ilert.url}/api/alerts/1/accept")
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"{ilert.url}/",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    dom = out.decode()
    assert "ilert stand-in: 2 alert(s), 2 open" in dom
    assert (
        '<tr class="alert accepted" data-id="1">' in dom
        and '<tr class="alert pending" data-id="2">' in dom
    )
    assert "Pump &lt;b&gt;failed&lt;/b&gt;" in dom  # escaped, not markup
    assert "Default policy (level 1)" in dom and "alert-acknowledged" in dom
    assert 'http-equiv="refresh"' in dom


async def test_ilert_standin_reads_its_toml_config(tmp_path: Path, http: httpx.AsyncClient) -> None:
    from simulators.ilert import load

    path = tmp_path / "ilert.toml"
    path.write_text(
        """
[[users]]
username = "ada"
first_name = "Ada"

[[escalation_policies]]
name = "Night shift"
levels = [["ada"]]

[[sources]]
name = "Line 3 events"
key = "il1line3key"
escalation_policy = "Night shift"

[faults]
mode = "5xx"
count = 1
"""
    )
    sim = IlertSimulator(load(path))
    await sim.start()
    try:
        body = {"integrationKey": "il1line3key", "eventType": "ALERT", "summary": "Jam"}
        assert (await http.post(f"{sim.url}/api/events", json=body)).status_code == 503  # the fault
        assert (await http.post(f"{sim.url}/api/events", json=body)).status_code == 202
        missing = {**body, "integrationKey": "il1api0demo"}  # the defaults are replaced
        assert (await http.post(f"{sim.url}/api/events", json=missing)).status_code == 404
    finally:
        await sim.stop()
    [alert] = sim.alerts
    assert alert.policy.name == "Night shift" and alert.responders[0]["user"]["firstName"] == "Ada"


async def test_sumo_answers_bad_bodies_with_400_and_one_log_line(
    sumo: SumoSimulator, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{sumo.url}/receiver/v1/http/demo"
    broken = await http.post(url, content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400 and "Content-Encoding gzip" in broken.text
    for body in (b"{not json", b'{"mode": "teapot"}', b'{"mode": "429", "count": "two"}'):
        answer = await http.post(f"{sumo.url}/admin/faults", content=body)
        assert answer.status_code == 400, body
    assert sumo.fault == {"mode": "none", "count": None}  # nothing changed
    assert not [r for r in caplog.records if r.exc_info or r.exc_text], "a traceback"
    assert (await http.post(url, content=b"fine")).status_code == 200


def test_the_documented_ilert_config_example_is_valid() -> None:
    import tomllib

    import simulators.ilert

    doc = simulators.ilert.__doc__ or ""
    example = doc[doc.index("::\n") + 3 : doc.index("Fault switches for the agent")]
    conf = IlertConf.model_validate(
        tomllib.loads("\n".join(line[4:] for line in example.splitlines()))
    )
    assert conf.sources[0].alert_key_template == "{{alarm.occurrenceId}}"
