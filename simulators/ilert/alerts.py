"""What ilert holds: alert sources, escalation policies and alerts, with the payloads ilert
sends of an alert (its default webhook body, the variables of a custom template)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pystache  # type: ignore[import-untyped]

from agent.common.times import iso
from simulators.ilert.conf import HeartbeatConf, PolicyConf, SourceConf


def now_iso() -> str:
    return iso(datetime.now(UTC))


# -- the model ----------------------------------------------------------------------------


@dataclass
class AlertSource:
    id: int
    conf: SourceConf | HeartbeatConf

    @property
    def name(self) -> str:
        return self.conf.name

    @property
    def integration_type(self) -> str:
        if isinstance(self.conf, HeartbeatConf):
            return "HEARTBEAT"
        return "IXON" if self.conf.integration == "ixon" else "API"


@dataclass
class Policy:
    id: int
    conf: PolicyConf

    @property
    def name(self) -> str:
        return self.conf.name


@dataclass
class Alert:
    id: int
    source: AlertSource
    summary: str
    details: str
    priority: str
    alert_key: str
    policy: Policy
    status: str = "PENDING"
    report_time: str = field(default_factory=now_iso)
    resolved_on: str | None = None
    level: int = 0
    responders: list[dict[str, Any]] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    severity: int | None = None
    links: list[dict[str, Any]] = field(default_factory=list)
    occurrence: str | None = None  # IXON: the alarm occurrence it was opened for
    created: float = field(default_factory=time.monotonic)
    level_since: float = field(default_factory=time.monotonic)
    escalating: bool = True  # follows its policy's levels (not once assigned to a person)
    escalation_ended: bool = False

    def assigned_to(self) -> dict[str, str] | None:
        """ilert's ``assignedTo``: whoever accepted it, else the first responder."""
        chosen = next((r for r in self.responders if r["status"] == "ACCEPTED"), None)
        chosen = chosen or (self.responders[0] if self.responders else None)
        if chosen is None:
            return None
        user = chosen["user"]
        return {k: user[k] for k in ("username", "email", "firstName", "lastName")}

    def webhook_payload(self, event_type: str) -> dict[str, Any]:
        """ilert's documented default webhook body (PAYLOAD_FIELDS), nothing more."""
        payload: dict[str, Any] = {
            "id": str(self.id),
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
            "reportTime": self.report_time,
            "eventType": event_type,
            "priority": self.priority,
            "alertKey": self.alert_key,
            "alertSource": {"id": self.source.id, "name": self.source.name},
        }
        assigned = self.assigned_to()
        if assigned is not None:
            payload["assignedTo"] = assigned
        payload["responders"] = [
            {"user": dict(r["user"]), "status": r["status"]} for r in self.responders
        ]
        return payload

    def template_variables(self, event_type: str, base_url: str) -> dict[str, Any]:
        """What a custom body template may use (TEMPLATE_VARIABLES)."""
        return {
            "alertId": str(self.id),
            "alertKey": self.alert_key,
            "alertDetails": self.details,
            "alertSummary": self.summary,
            "alertStatus": self.status,
            "alertPriority": self.priority,
            "alertUrl": f"{base_url}/api/alerts/{self.id}",
            "alertSourceId": self.source.id,
            "alertSourceName": self.source.name,
            "escalationPolicyId": self.policy.id,
            "escalationPolicyName": self.policy.name,
            "reportTime": self.report_time,
            "link": next((str(link.get("href", "")) for link in self.links), ""),
            "eventType": event_type,
        }

    def to_json(self) -> dict[str, Any]:
        """The alert API's object (plus this stand-in's channels and timeline)."""
        return {
            "id": self.id,
            "summary": self.summary,
            "details": self.details,
            "status": self.status,
            "priority": self.priority,
            "severity": self.severity,
            "alertKey": self.alert_key,
            "reportTime": self.report_time,
            "resolvedOn": self.resolved_on,
            "alertSource": {
                "id": self.source.id,
                "name": self.source.name,
                "integrationType": self.source.integration_type,
            },
            "escalationPolicy": {"id": self.policy.id, "name": self.policy.name},
            "escalationLevel": self.level + 1,
            "assignedTo": self.assigned_to(),
            "responders": self.responders,
            "links": self.links,
            "channels": self.channels,
            "timeline": self.timeline,
        }


def render(template: str, variables: dict[str, Any]) -> str:
    """Mustache as ilert renders it: dotted names, missing names empty, values not escaped."""
    return str(_MUSTACHE.render(template, variables))


_MUSTACHE = pystache.Renderer(escape=lambda text: text, missing_tags="ignore")


def ixon_details(long_content: dict[str, Any]) -> str:
    lines = []
    if long_content.get("instructions"):
        lines.append(str(long_content["instructions"]))
    for item in long_content.get("extraInformation") or []:
        if isinstance(item, dict) and item.get("type") != "unit":
            lines.append(f"{item.get('key')}: {item.get('value')}")
    return "\n".join(lines)
