"""Each format's body for a transition, its secret, its rate key and its config problems:
pure functions, no receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from agent.alarms.rules import AlarmRule
from agent.alarms.states import Transition
from agent.config import NO_LIMIT, Config, Rate, Webhook
from agent.formats import FORMATS, build, messages_for, sample_transition

T0 = datetime(2026, 11, 23, 8, 0, 5, 120000, tzinfo=UTC)
CONFIG = Config.model_validate(
    {
        "agent": {"name": "Line 3", "public_id": "Line30000001", "company_id": "1111-2222-3333-4444-5555",
                  "company_name": "ACME"},
        "sources": [{"name": "plc", "host": "127.0.0.1", "variables": [
            {"name": "oil_temp", "label": "Oil temperature", "register": "holding",
             "address": 0, "type": "float", "unit": "degC"}]}],
        "alarms": [{"name": "Oil hot", "variable": "plc.oil_temp", "condition": ">",
                    "threshold": 80.0, "severity": "high", "instructions": "Check pump P1."}],
        "webhooks": [
            {"name": "ixon", "url": "http://127.0.0.1:1/ixon", "user_id": "UsrWebhook01"},
            {"name": "events", "url": "http://127.0.0.1:1/api/events", "format": "ilert-events",
             "integration_key": "il1secret"},
        ],
    }
)  # fmt: skip
IXON, EVENTS = CONFIG.webhooks
RULE = AlarmRule.compile(CONFIG.alarms[0], CONFIG)


def transition(kind: str = "start", value: Any = 84.2) -> Transition:
    at = T0 if kind == "start" else T0 + timedelta(minutes=3)
    return Transition(RULE, kind, "Occ000000001", (value,), T0, at)  # type: ignore[arg-type]


def test_ixon_message_start_and_end() -> None:
    start = build(CONFIG.agent, IXON, transition(), T0)
    assert (start["systemLabel"], start["shortContent"]["code"]) == ("alarm-high", "alarm-active")
    assert start["createdOn"] == start["shortContent"]["occurredOn"] == "2026-11-23T08:00:05.120Z"
    assert start["user"] == {"publicId": "UsrWebhook01"}
    assert start["company"] == {"publicId": "1111-2222-3333-4444-5555", "name": "ACME"}
    assert start["alarm"]["publicId"] == RULE.public_id and start["alarm"]["endedOn"] is None
    info = {i["type"]: i["value"] for i in start["longContent"]["extraInformation"]}
    assert info["value"] == 84.2 and info["threshold"] == "> 80.0" and info["unit"] == "degC"
    end = build(CONFIG.agent, IXON, transition("end", 70.0), T0)
    assert (
        end["alarm"]["state"] == "ended" and end["alarm"]["endedOn"] == "2026-11-23T08:03:05.120Z"
    )
    assert end["publicId"] != start["publicId"] and len(end["publicId"]) == 24


def test_ilert_event_start_and_end() -> None:
    start = build(CONFIG.agent, EVENTS, transition(), T0)
    assert start["eventType"] == "ALERT" and start["priority"] == "HIGH"
    assert start["alertKey"] == "Occ000000001" and start["summary"] == "Oil hot (Line 3)"
    assert "Instructions: Check pump P1." in start["details"]
    end = build(CONFIG.agent, EVENTS, transition("end", 70.0), T0)
    assert end["eventType"] == "RESOLVE" and end["alertKey"] == "Occ000000001"


def test_a_body_is_strict_json_whatever_the_value() -> None:
    for webhook in (IXON, EVENTS):
        body = build(CONFIG.agent, webhook, transition(value=float("inf")), T0)
        json.dumps(body, allow_nan=False)  # raises for NaN or infinity


def test_the_secret_is_added_only_when_sent_and_is_the_rate_key() -> None:
    events, ixon = FORMATS["ilert-events"], FORMATS["ixon"]
    body = build(CONFIG.agent, EVENTS, transition(), T0)
    assert "integrationKey" not in body
    assert events.with_secret(body, EVENTS)["integrationKey"] == "il1secret"
    assert events.rate_key(EVENTS) == "il1secret" and ixon.rate_key(IXON) is None
    assert ixon.with_secret({"a": 1}, IXON) == {"a": 1}


def hook(url: str, **kw: Any) -> Webhook:
    return Webhook.model_validate({"name": "w", "url": url, **kw})


def test_the_rate_key_is_ilerts_whenever_the_path_is_one_of_ilerts_event_paths() -> None:
    ixon, events = FORMATS["ixon"], FORMATS["ilert-events"]
    for host in ("https://api.ilert.com", "http://127.0.0.1:8025", "https://proxy.lan/ilert"):
        assert ixon.rate_key(hook(f"{host}/api/v1/events/ixon/il1ixon0K")) == "il1ixon0K"
        assert events.rate_key(hook(f"{host}/api/events", integration_key="il1K")) == "il1K"
        assert events.rate_key(hook(f"{host}/api/events/il1P", integration_key="x")) == "il1P"
    assert ixon.rate_key(hook("http://h/api/v1/events/ixon/Key%2FSlash/")) == "Key/Slash"
    for other in ("http://h/hook/il1key", "http://h/api/v1/events/ixon", "http://h/api/eventsX"):
        assert ixon.rate_key(hook(other)) is None, other
    # an Events API body is only ever for ilert: paced by its key on any path
    assert events.rate_key(hook("http://relay.lan/x", integration_key="il1K")) == "il1K"


def test_rate_limit_is_sends_per_time_or_none() -> None:
    assert str(hook("http://h/x", rate_limit="50/min").rate_limit) == "50/min"
    assert hook("http://h/x", rate_limit="5/10s").rate_limit == Rate(5, 10.0)
    assert hook("http://h/x", rate_limit="none").rate_limit == NO_LIMIT
    assert hook("http://h/x").rate_limit is None  # the format's default
    for bad in ("50", "0/min", "fast", "50/0s", "-1/min"):
        try:
            hook("http://h/x", rate_limit=bad)
        except ValueError as exc:
            assert "is not a rate: use sends per time, like '50/min'" in str(exc)
        else:
            raise AssertionError(bad)


def test_each_format_names_what_a_webhook_lacks() -> None:
    bare = Webhook(name="w", url=SecretStr("http://127.0.0.1:1/"), format="ilert-events")
    assert list(FORMATS["ilert-events"].problems(bare)) == [
        "integration_key: required for format 'ilert-events'"
    ]
    assert list(FORMATS["ixon"].problems(bare)) == []


def test_messages_for_keeps_the_severity_floor_and_notify_ended() -> None:
    only_high = CONFIG.model_copy(
        update={"webhooks": [IXON.model_copy(update={"notify_ended": False})]}
    )
    assert [m.kind for m in messages_for(only_high, transition(), T0)] == ["start"]
    assert messages_for(only_high, transition("end"), T0) == []
    labels = [m.label for m in messages_for(CONFIG, transition(), T0, webhooks=["events"])]
    assert labels == ["start of 'Oil hot' (occurrence Occ000000001)"]


def test_the_send_test_transition_is_a_high_start() -> None:
    t = sample_transition(CONFIG)
    assert (t.kind, t.rule.severity) == ("start", "high") and len(t.occurrence_id) == 12
