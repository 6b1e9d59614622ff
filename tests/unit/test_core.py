"""The core step, as ``ixon-agent test`` and ``replay`` will call it: simulated time, no IO."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent.alarms.engine import AlarmEngine
from agent.config import Config
from agent.core import step
from agent.sources.base import PollResult

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def config(**webhook: Any) -> Config:
    return Config.model_validate(
        {
            "agent": {"name": "Line 3", "public_id": "Line30000001"},
            "sources": [{"name": "plc", "host": "127.0.0.1", "offline_after": 30, "variables": [
                {"name": "oil_temp", "label": "Oil temperature", "register": "holding",
                 "address": 0, "type": "float", "unit": "degC"},
            ]}],
            "alarms": [{"name": "Oil hot", "variable": "plc.oil_temp", "condition": ">",
                        "threshold": 80.0, "on_delay": 5, "severity": "medium"}],
            "webhooks": [
                {"name": "ixon", "url": "http://127.0.0.1:1/ixon", "user_id": "UsrWebhook01"},
                {"name": "events", "url": "http://127.0.0.1:1/api/events",
                 "format": "ilert-events", "integration_key": "il1key"} | webhook,
            ],
        }
    )  # fmt: skip


def poll(value: float | None) -> PollResult:
    if value is None:
        return PollResult("plc", errors=["no reply"])
    return PollResult("plc", {"plc.oil_temp": value}, requests=1, answered=True)


def run(cfg: Config, samples: list[tuple[float, float | None]]) -> list[Any]:
    engine = AlarmEngine.from_config(cfg)
    steps, last_answer = [], None
    for at, value in samples:
        last_answer = at if value is not None else last_answer
        steps.append(step(engine, cfg, poll(value), last_answer, at, T0 + timedelta(seconds=at)))
    return steps


def test_a_start_after_its_on_delay_and_an_end_each_give_a_message_per_webhook() -> None:
    steps = run(config(), [(0, 85.0), (4, 86.0), (5, 86.0), (6, 70.0)])
    assert [len(s.transitions) for s in steps] == [0, 0, 1, 1]
    start, end = steps[2], steps[3]
    assert [m.webhook for m in start.messages] == ["ixon", "events"]
    ixon, events = (m.body for m in start.messages)
    assert ixon["shortContent"]["occurredOn"] == "2026-11-23T08:00:05.000Z"
    assert events["eventType"] == "ALERT" and "integrationKey" not in events  # added at send
    assert end.messages[1].body["eventType"] == "RESOLVE"
    assert end.messages[1].occurrence_id == start.messages[1].occurrence_id
    assert [s["active"] for s in start.states] == [True]  # what the store saves
    assert [s["active"] for s in end.states] == [False]


def test_a_webhook_above_the_alarms_severity_gets_nothing() -> None:
    steps = run(config(min_severity="high"), [(0, 85.0), (5, 85.0)])
    assert [m.webhook for m in steps[1].messages] == ["ixon"]


def test_a_silent_source_raises_its_offline_alarm_from_the_step_alone() -> None:
    steps = run(config(), [(0, 60.0), (10, None), (31, None), (40, 60.0)])
    kinds = [(t.rule.kind, t.kind) for s in steps for t in s.transitions]
    assert kinds == [("offline", "start"), ("offline", "end")]
    assert steps[2].messages[0].body["systemLabel"] == "alarm-high"


def test_nothing_changes_nothing_is_saved() -> None:
    steps = run(config(), [(0, 60.0), (1, 61.0)])
    assert [(s.transitions, s.messages) for s in steps] == [([], [])] * 2
