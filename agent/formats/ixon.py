"""``format = "ixon"``: an IXON Cloud Notify message (DESIGN.md 5.1), for ilert's IXON source.

Anything that only receives this body can deduplicate a resent message on ``publicId``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.alarms.states import Transition
from agent.common.ids import new_id
from agent.common.times import iso
from agent.config import AgentSection, Webhook
from agent.formats.base import PlainFormat, register


def _info(kind: str, key: str, value: object) -> dict[str, object]:
    return {"type": kind, "toTranslate": False, "key": key, "value": value}


def ixon_message(
    agent: AgentSection, webhook: Webhook, t: Transition, now: datetime
) -> dict[str, Any]:
    """DESIGN.md 5.1: one POST per alarm start, and per end when ``notify_ended``."""
    rule = t.rule
    code = "alarm-active" if t.kind == "start" else "alarm-ended"
    extra = [
        _info("value", i.label, rule.shown(v)) for i, v in zip(rule.inputs, t.values, strict=False)
    ]
    if rule.bit is not None:
        extra.append(_info("bit", "bit", rule.bit))
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


class IxonFormat(PlainFormat):
    name = "ixon"

    def build(
        self, agent: AgentSection, webhook: Webhook, t: Transition, now: datetime
    ) -> dict[str, Any]:
        return ixon_message(agent, webhook, t, now)


FORMAT = register(IxonFormat())
