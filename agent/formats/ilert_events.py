"""``format = "ilert-events"``: ilert's Events API (DESIGN.md 5.2).

ALERT on start, RESOLVE on end, grouped by ``alertKey`` (the occurrence id). The integration
key is the webhook's ``integration_key``, added only when sending. ilert allows 50 events a
minute per key, so such a webhook is paced by that key whatever its path (a proxy's too); a
RESOLVE or ACCEPT answered "no open alert with this key" is done.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from agent.alarms.states import Transition, describe_values
from agent.common.times import iso
from agent.config import AgentSection, Webhook
from agent.formats.base import Acknowledged, Answer, http_answer, ilert_key, register

#: ilert's codes for "no open alert with this key" (Events API, and its older v1 paths)
ALREADY_RESOLVED = frozenset({"NO_OPEN_ALERT_WITH_KEY", "NONE_OPEN_FOR_KEY"})


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
    body: dict[str, Any] = {
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
            "value": rule.shown(t.value),
            "unit": rule.unit,
            "threshold": rule.condition_text,
            "severity": rule.severity,
            "alarmId": rule.public_id,
            "occurredOn": iso(t.occurred_on),
        },
        "links": [],
    }
    if rule.bit is not None:
        body["customDetails"]["bit"] = rule.bit
    return body


class IlertEventsFormat:
    name = "ilert-events"

    def build(
        self, agent: AgentSection, webhook: Webhook, t: Transition, now: datetime
    ) -> dict[str, Any]:
        return ilert_event(agent, webhook, t, now)

    def with_secret(self, body: dict[str, Any], webhook: Webhook) -> dict[str, Any]:
        assert webhook.integration_key is not None  # config check: problems()
        return {"integrationKey": webhook.integration_key.get_secret_value(), **body}

    def classify(self, status: int, answer: bytes, body: dict[str, Any]) -> Answer:
        if status == 400 and body.get("eventType") in ("RESOLVE", "ACCEPT"):
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(answer).get("code") in ALREADY_RESOLVED:
                    return "delivered"
        return http_answer(status)

    def rate_key(self, webhook: Webhook) -> str | None:
        """Paced whatever the path: an Events API body is only ever for ilert."""
        if found := ilert_key(webhook):
            return found
        return webhook.integration_key.get_secret_value() if webhook.integration_key else None

    def acknowledgement(
        self, agent: AgentSection, webhook: Webhook, ack: Acknowledged
    ) -> dict[str, Any] | None:
        """ACCEPT on the occurrence's alertKey: the alert is accepted in ilert too."""
        comment = f": {ack.comment}" if ack.comment else ""
        return {
            "eventType": "ACCEPT",
            "summary": f"{ack.alarm} ({agent.name})",
            "details": f"Acknowledged at the machine by {ack.by} at {iso(ack.at)}{comment}",
            "alertKey": ack.occurrence_id,
        }

    def problems(self, webhook: Webhook) -> Iterator[str]:
        if webhook.integration_key is None:
            yield f"integration_key: required for format {self.name!r}"


FORMAT = register(IlertEventsFormat())
