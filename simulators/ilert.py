"""An ilert stand-in: the IXON Cloud alert source, the Events API and an alert list.

Run ``python -m simulators.ilert [--host 127.0.0.1] [--port 8025]``. With no config it has an
IXON alert source with key ``il1ixon0demo`` and an Events API source with key ``il1api0demo``.

- ``POST /api/v1/events/ixon/{key}``: an IXON Cloud Notify message. The start of an alarm
  occurrence opens an alert (summary from ``shortContent``, details from ``longContent``);
  the end message of the same occurrence resolves it.
- ``POST /api/events`` and ``POST /api/v1/events/{type}/{key}``: ilert events (ALERT,
  ACCEPT, RESOLVE) grouped by ``alertKey``, case-insensitive; 202 with ``correlation-id``.
- ``GET /api/alerts[?status=PENDING]`` and ``GET /api/alerts/{id}``.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from simulators._http import HttpServer, parser, run

IXON_KEY = "il1ixon0demo"
EVENTS_KEY = "il1api0demo"
STATUSES = ("PENDING", "ACCEPTED", "RESOLVED")
OPEN = ("PENDING", "ACCEPTED")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class AlertSource:
    id: int
    name: str
    key: str
    integration_type: str  # "IXON" or "API"
    escalation_policy: str = "Default policy"


@dataclass
class Alert:
    id: int
    source: AlertSource
    summary: str
    details: str
    priority: str
    alert_key: str
    status: str = "PENDING"
    report_time: str = field(default_factory=_now)
    resolved_on: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def log(self, event: str, text: str) -> None:
        self.timeline.append({"eventType": event, "timestamp": _now(), "text": text})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "summary": self.summary,
            "details": self.details,
            "status": self.status,
            "priority": self.priority,
            "alertKey": self.alert_key,
            "reportTime": self.report_time,
            "resolvedOn": self.resolved_on,
            "alertSource": {
                "id": self.source.id,
                "name": self.source.name,
                "integrationType": self.source.integration_type,
            },
            "escalationPolicy": {"name": self.source.escalation_policy},
            "timeline": self.timeline,
        }


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"status": status, "code": code, "message": message}, status=status)


class IlertSimulator(HttpServer):
    """In-process ilert: tests read ``alerts`` and ``received`` directly."""

    def __init__(self) -> None:
        self.sources = {
            IXON_KEY: AlertSource(1, "IXON Cloud", IXON_KEY, "IXON"),
            EVENTS_KEY: AlertSource(2, "Edge agent events", EVENTS_KEY, "API"),
        }
        self.alerts: list[Alert] = []
        self.received: list[dict[str, Any]] = []  # every accepted request body, in order
        self._ids = itertools.count(1)
        app = web.Application()
        app.add_routes(
            [
                web.post("/api/v1/events/ixon/{key}", self.ixon_event),
                web.post("/api/events", self.api_event),
                web.post("/api/v1/events/{type}/{key}", self.api_event),
                web.get("/api/alerts", self.list_alerts),
                web.get("/api/alerts/{id}", self.get_alert),
            ]
        )
        super().__init__(app)

    def open_alert(self, source: AlertSource, key: str) -> Alert | None:
        """The last open alert of ``source`` with ``key`` (case-insensitive), as ilert does."""
        for alert in reversed(self.alerts):
            if alert.source is source and alert.alert_key.lower() == key.lower():
                return alert if alert.status in OPEN else None
        return None

    async def ixon_event(self, request: web.Request) -> web.Response:
        source = self.sources.get(request.match_info["key"])
        if source is None or source.integration_type != "IXON":
            return _error(404, "ALERT_SOURCE_NOT_FOUND", "no IXON alert source with this key")
        try:
            body = await request.json()
            short, long_ = body["shortContent"], body.get("longContent") or {}
            code = short.get("code") or long_.get("code")
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "INVALID_INPUT", "not an IXON message")
        self.received.append(body)
        alarm = body.get("alarm") or {}
        key = alarm.get("occurrenceId") or body.get("publicId") or uuid.uuid4().hex
        existing = self.open_alert(source, key)
        if code == "alarm-ended":
            if existing is not None:
                self._resolve(existing, "resolved by the IXON end message")
            return web.json_response({"alertKey": key}, status=202)
        if existing is not None:
            existing.log("alert-event-appended", "IXON message appended")
            return web.json_response({"alertKey": key}, status=202)
        summary = f"{short.get('alarmName') or short.get('name')} ({short.get('agentName')})"
        alert = self._create(source, key, summary, _ixon_details(long_), body.get("systemLabel"))
        return web.json_response({"alertKey": key, "alertId": alert.id}, status=202)

    async def api_event(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return _error(400, "INVALID_INPUT", "body is not a JSON object")
        key = request.match_info.get("key") or body.get("integrationKey") or body.get("apiKey")
        if not key:
            return _error(400, "MISSING_FIELD", "integrationKey is required")
        source = self.sources.get(key)
        if source is None or source.integration_type == "IXON":
            return _error(404, "ALERT_SOURCE_NOT_FOUND", "no alert source with this key")
        event_type = body.get("eventType")
        if event_type not in ("ALERT", "ACCEPT", "RESOLVE", "COMMENT"):
            return _error(400, "INVALID_EVENT_TYPE", "eventType must be ALERT, ACCEPT or RESOLVE")
        if body.get("priority") not in (None, "HIGH", "LOW"):
            return _error(400, "INVALID_PRIORITY", "priority must be HIGH or LOW")
        if not body.get("summary") and event_type == "ALERT":
            return _error(400, "MISSING_FIELD", "summary is required")
        self.received.append(body)
        alert_key = str(body.get("alertKey") or uuid.uuid4().hex)
        existing = self.open_alert(source, alert_key)
        headers = {"correlation-id": str(uuid.uuid4())}
        if event_type == "ALERT":
            if existing is not None:
                existing.log("alert-event-appended", body["summary"])
            else:
                existing = self._create(
                    source,
                    alert_key,
                    body["summary"],
                    body.get("details") or "",
                    priority=body.get("priority") or "HIGH",
                )
        elif existing is None:
            return _error(400, "NO_OPEN_ALERT_WITH_KEY", f"no open alert with key {alert_key}")
        elif event_type == "ACCEPT":
            existing.status = "ACCEPTED"
            existing.log("alert-accepted", "accepted by event")
        elif event_type == "RESOLVE":
            self._resolve(existing, "resolved by event")
        payload = {"alertKey": alert_key, "alertUrl": f"{self.url}/api/alerts/{existing.id}"}
        return web.json_response(payload, status=202, headers=headers)

    async def list_alerts(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status and status not in STATUSES:
            return _error(400, "INVALID_STATUS", f"status must be one of {', '.join(STATUSES)}")
        alerts = [a.to_json() for a in self.alerts if not status or a.status == status]
        return web.json_response(alerts)

    async def get_alert(self, request: web.Request) -> web.Response:
        for alert in self.alerts:
            if str(alert.id) == request.match_info["id"]:
                return web.json_response(alert.to_json())
        return _error(404, "ALERT_NOT_FOUND", "no such alert")

    def _create(
        self,
        source: AlertSource,
        key: str,
        summary: str,
        details: str,
        system_label: str | None = None,
        priority: str | None = None,
    ) -> Alert:
        if priority is None:
            priority = "HIGH" if system_label in ("alarm-high", None) else "LOW"
        alert = Alert(next(self._ids), source, summary, details, priority, key)
        alert.log("alert-created", f"created from {source.name}")
        self.alerts.append(alert)
        return alert

    def _resolve(self, alert: Alert, text: str) -> None:
        alert.status, alert.resolved_on = "RESOLVED", _now()
        alert.log("alert-resolved", text)


def _ixon_details(long_content: dict[str, Any]) -> str:
    lines = []
    if long_content.get("instructions"):
        lines.append(str(long_content["instructions"]))
    for item in long_content.get("extraInformation") or []:
        if isinstance(item, dict):
            lines.append(f"{item.get('key')}: {item.get('value')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parser("python -m simulators.ilert", __doc__, 8025).parse_args(argv)
    run(IlertSimulator(), args.host, args.port, "ilert stand-in")


if __name__ == "__main__":
    main()
