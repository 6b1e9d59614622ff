"""Webhook payloads: an alarm transition as an IXON Cloud Notify message or an ilert event.

Pure: a transition and the config in, a JSON-ready dict out (DESIGN.md section 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agent.alarms.engine import AlarmRule, Input, Transition
from agent.common.ids import new_id, short_id
from agent.common.times import iso
from agent.common.values import json_safe, show
from agent.config import SEVERITY_RANK, AgentSection, Config, Webhook
from agent.outbox.store import Message


def wanted(webhook: Webhook, transition: Transition) -> bool:
    """Whether this webhook takes this transition (severity floor, ends only if asked)."""
    if SEVERITY_RANK[transition.rule.severity] < SEVERITY_RANK[webhook.min_severity]:
        return False
    return transition.kind == "start" or webhook.notify_ended


def describe_values(t: Transition) -> str:
    """``Oil temperature = 84.2 degC, Pump running = true``."""
    pairs = zip(t.rule.inputs, t.values, strict=False)
    return ", ".join(f"{i.label} = {show(v, i.unit)}" for i, v in pairs)


def _info(kind: str, key: str, value: object) -> dict[str, object]:
    return {"type": kind, "toTranslate": False, "key": key, "value": value}


def ixon_message(
    agent: AgentSection, webhook: Webhook, t: Transition, now: datetime
) -> dict[str, Any]:
    """DESIGN.md 5.1: one POST per alarm start, and per end when ``notify_ended``."""
    rule = t.rule
    code = "alarm-active" if t.kind == "start" else "alarm-ended"
    extra = [_info("value", i.label, v) for i, v in zip(rule.inputs, t.values, strict=False)]
    extra.append(_info("threshold", "condition", rule.condition_text))
    extra.append(_info("source", "source", rule.source))
    if rule.kind == "variable":
        extra.append(_info("variable", "variable", rule.variable))
    if rule.kind == "formula":
        extra += [_info("variable", i.label, i.key) for i in rule.inputs]
    if rule.unit and rule.kind == "variable":
        extra.append(_info("unit", "unit", rule.unit))
    company = (
        {"publicId": agent.company_id, "name": agent.company_name}
        if agent.company_id or agent.company_name
        else None
    )
    return {
        "publicId": new_id(24),
        "createdOn": iso(now),
        "read": False,
        "systemLabel": f"alarm-{rule.severity}",
        "systemResult": [],
        "shortContent": {
            "toTranslate": False,
            "code": code,
            "alarmName": rule.name,
            "agentName": agent.name,
            "name": rule.name,
            "occurredOn": iso(t.at),
            "companyName": agent.company_name,
        },
        "longContent": {
            "toTranslate": False,
            "code": code,
            "name": rule.name,
            "instructions": rule.instructions,
            "extraInformation": extra,
        },
        "user": {"publicId": webhook.user_id} if webhook.user_id else None,
        "company": company,
        "agent": {"publicId": agent.agent_id, "name": agent.name},
        "alarm": {
            "publicId": rule.public_id,
            "occurrenceId": t.occurrence_id,
            "name": rule.name,
            "severity": rule.severity,
            "state": "active" if t.kind == "start" else "ended",
            "occurredOn": iso(t.occurred_on),
            "endedOn": iso(t.at) if t.kind == "end" else None,
        },
    }


def ilert_event(
    agent: AgentSection, webhook: Webhook, t: Transition, now: datetime
) -> dict[str, Any]:
    """DESIGN.md 5.2: ALERT on start, RESOLVE on end, grouped by occurrence id."""
    rule = t.rule
    verb = "started" if t.kind == "start" else "ended"
    details = (
        f"{describe_values(t)} (condition {rule.condition_text}).\n"
        f"Alarm {verb} at {iso(t.at)} on {agent.name}."
    )
    if rule.instructions:
        details += f"\n\nInstructions: {rule.instructions}"
    # integrationKey is added when sending: the outbox holds no secrets
    return {
        "eventType": "ALERT" if t.kind == "start" else "RESOLVE",
        "summary": f"{rule.name} ({agent.name})",
        "details": details,
        "alertKey": t.occurrence_id,
        "priority": "HIGH" if rule.severity == "high" else "LOW",
        "customDetails": {
            "agent": agent.name,
            "agentId": agent.agent_id,
            "source": rule.source,
            "variable": rule.variable,
            "value": t.value,
            "unit": rule.unit,
            "threshold": rule.condition_text,
            "severity": rule.severity,
            "alarmId": rule.public_id,
            "occurredOn": iso(t.occurred_on),
        },
        "links": [],
    }


def build(agent: AgentSection, webhook: Webhook, t: Transition, now: datetime) -> dict[str, Any]:
    builder = ixon_message if webhook.format == "ixon" else ilert_event
    return json_safe(builder(agent, webhook, t, now))  # type: ignore[no-any-return]


def messages_for(
    config: Config, t: Transition, now: datetime, webhooks: Sequence[str] | None = None
) -> list[Message]:
    """One outbox message per webhook that wants this transition."""
    label = f"{t.kind} of {t.rule.name!r} (occurrence {t.occurrence_id})"
    return [
        Message(
            w.name, t.occurrence_id, t.kind, t.rule.severity, label, build(config.agent, w, t, now)
        )
        for w in config.webhooks
        if (webhooks is None or w.name in webhooks) and wanted(w, t)
    ]


def sample_transition(config: Config) -> Transition:
    """A start of a made-up high alarm, for ``ixon-agent send-test``."""
    agent_id = config.agent.agent_id
    rule = AlarmRule.synthetic(
        "Test message from ixon-agent", short_id(agent_id, "alarm", "send-test"), "high",
        "This is a test of the alarm chain; no action is needed.", "test",
        inputs=(Input("agent.test", "Test"),),
    )  # fmt: skip
    now = datetime.now(UTC)
    return Transition(rule, "start", new_id(), (True,), now, now)
