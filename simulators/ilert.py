"""An ilert stand-in: alert sources, escalation policies, alert actions, heartbeats, a web page.

Run ``python -m simulators.ilert [--host 127.0.0.1] [--port 8025] [--config ilert.toml]
[--forward URL]``. With no config it has an IXON alert source (key ``il1ixon0demo``), an
Events API source (key ``il1api0demo``), a heartbeat (key ``il1hbt0demo``), one escalation
policy with two levels, and three users. ``--forward URL`` adds an alert action that sends
every lifecycle event to URL (basic auth from the URL's userinfo, as ilert does; no other
headers: a Sumo source's category is the source's own setting).

Inbound (what the agent calls):
- ``POST /api/v1/events/ixon/{key}``: an IXON Cloud Notify message. A start message opens an
  alert (summary from ``shortContent``: alarm and agent name; details from ``longContent``:
  instructions and values). With the source's ``alert_key_template`` (ilert's
  ``alertKeyTemplate``, e.g. ``{{alarm.occurrenceId}}``) a message whose key matches an open
  alert appends to it instead; without one every start opens an alert. An end message
  resolves the open alert with its key (without a template: its occurrence's alerts). The
  source may route by ``user`` (``user.publicId``), ``system_label`` (``systemLabel``) or
  ``company`` (``company.publicId``) to the policy with that routing key, else its own.
- ``POST /api/events`` (also ``/api/events/{key}`` and ``/api/v1/events/{type}/{key}``):
  ilert events. ALERT appends to the open alert with the same ``alertKey`` (case-insensitive)
  or opens one, with the source's priority when the event has none (a LOW source ignores
  the event's priority, as ilert does); ACCEPT and RESOLVE act on it or answer 400
  ``NO_OPEN_ALERT_WITH_KEY``; 202 with ``correlation-id``; 400 for a missing field, a bad
  enum or a ``severity`` outside 1..5; 404 for an unknown key; 429 past 50 a minute per key.
- ``GET|POST|HEAD /api/heartbeats/{key}`` (also ``/api/v1/heartbeats/{key}``,
  ``/api/pings/{key}``): a heartbeat ping. Silent for longer than its interval: an alert;
  pinged again: resolved.

Alerts (what an operator does): ``GET /api/alerts[?status=]``, ``GET /api/alerts/{id}``, and
``PUT`` or ``POST /api/alerts/{id}/<action>``: ``accept``, ``resolve``, ``raise`` (priority to
HIGH), ``escalate`` (the current level's time runs out now), ``assign`` (``{"user"}`` or
``{"escalationPolicy"}``), ``comments`` (``{"content"}``), ``responders`` (``{"user"}``),
``channels`` (``{"name"}``); ``DELETE .../responders/{user}`` and ``.../channels/{name}``.
A policy with ``escalation_timeout`` escalates a pending alert by itself; past its last level
the escalation ends.

Alert actions POST lifecycle events named by ilert's trigger types (``TRIGGER_TYPES``), in
order, filtered by trigger type and source, as ilert's documented default payload or as the
action's ``body_template`` (Mustache, ilert's variables, values not escaped).
``alert-escalation-ended`` waits ``escalation_ended_delay`` and ``v-alert-not-resolved``
comes ``not_resolved_delay`` after the alert was created, if it is still not resolved.

A config file (``--config``) replaces the defaults; every key is optional::

    [[users]]
    username = "ada"                # first_name, last_name, email
    [[escalation_policies]]
    name = "Night shift"
    levels = [["ada"], ["lead"]]    # who is notified at each level
    escalation_timeout = 900        # seconds a level has to accept; default: never escalates
    routing_key = "UsrWebhook01"    # for a source's routing_field
    [[sources]]
    name = "IXON Cloud"
    key = "il1ixon0demo"
    integration = "ixon"            # or "api" (Events API, the default)
    escalation_policy = "Night shift"
    alert_key_template = "{{alarm.occurrenceId}}"   # ixon: group a resent message
    routing_field = "user"          # ixon: user | system_label | company
    priority = "HIGH"               # api: for an event without one; LOW ignores the event's
    [[alert_actions]]
    name = "sumo"
    url = "http://user:pass@127.0.0.1:8030/receiver/v1/http/demo"
    event_types = ["alert-created", "alert-resolved"]   # default: every trigger type
    body_template = '{"text": "{{alertSummary}} is {{alertStatus}}"}'  # default: ilert's
    not_resolved_delay = 60         # seconds; escalation_ended_delay = 0
    headers = {}                    # ilert's custom headers

Fault switches for the agent's tests (inbound endpoints only): ``--fault 5xx|429|delay|drop``
(with ``--fault-count``, ``--fault-delay``) or ``POST /admin/faults`` with
``{"mode", "count", "status", "delay", "retry_after"}``. ``GET /`` is a read-only page of
the alerts that refreshes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import html
import itertools
import json
import time
import tomllib
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pystache  # type: ignore[import-untyped]
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.common.times import iso
from simulators._http import HttpServer, parser, read_json, run

IXON_KEY = "il1ixon0demo"
EVENTS_KEY = "il1api0demo"
HEARTBEAT_KEY = "il1hbt0demo"
STATUSES = ("PENDING", "ACCEPTED", "RESOLVED")
OPEN = ("PENDING", "ACCEPTED")
#: ilert's ``AlertAction.triggerTypes``: the ``eventType`` of every lifecycle webhook
TRIGGER_TYPES = (
    "alert-created",
    "alert-assigned",
    "alert-auto-escalated",
    "alert-acknowledged",
    "alert-raised",
    "alert-comment-added",
    "alert-escalation-ended",
    "alert-resolved",
    "alert-responder-added",
    "alert-responder-removed",
    "alert-channel-attached",
    "alert-channel-detached",
    "v-alert-not-resolved",
)
#: the fields of ilert's default webhook payload, and nothing else
PAYLOAD_FIELDS = (
    "id",
    "status",
    "summary",
    "details",
    "reportTime",
    "eventType",
    "priority",
    "alertKey",
    "alertSource",
    "assignedTo",
    "responders",
)
#: the variables of a custom body template (ilert's documented list)
TEMPLATE_VARIABLES = (
    "alertId",
    "alertKey",
    "alertDetails",
    "alertSummary",
    "alertStatus",
    "alertPriority",
    "alertUrl",
    "alertSourceId",
    "alertSourceName",
    "escalationPolicyId",
    "escalationPolicyName",
    "reportTime",
    "link",
    "eventType",
)
TICK = 0.05  # how often timers (escalation, delayed events, heartbeats) are looked at
RATE_LIMIT, RATE_WINDOW = 50, 60.0


def _now() -> str:
    return iso(datetime.now(UTC))


# -- configuration ------------------------------------------------------------------------


class _Conf(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserConf(_Conf):
    username: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""


class PolicyConf(_Conf):
    name: str
    routing_key: str | None = None
    levels: list[list[str]] = Field(default_factory=lambda: [["oncall"], ["lead"]])
    #: seconds a level has to accept a pending alert before it escalates (None: never)
    escalation_timeout: float | None = Field(default=None, gt=0)


class SourceConf(_Conf):
    name: str
    key: str
    integration: Literal["ixon", "api"] = "api"
    escalation_policy: str = "Default policy"
    routing_field: Literal["user", "system_label", "company"] | None = None
    priority: Literal["HIGH", "LOW"] = "HIGH"  # for an event without one (Events API)
    alert_key_template: str | None = None  # IXON source: ilert's alertKeyTemplate


class HeartbeatConf(_Conf):
    name: str
    key: str
    interval: float = Field(default=120.0, gt=0)
    escalation_policy: str = "Default policy"


class ActionConf(_Conf):
    name: str
    url: str  # basic auth from its userinfo: http://user:pass@host/path
    event_types: list[str] = Field(default_factory=list)  # trigger types; empty: all of them
    sources: list[str] = Field(default_factory=list)  # empty: every source
    headers: dict[str, str] = Field(default_factory=dict)  # ilert's custom headers
    body_template: str | None = None  # ilert's custom body: Mustache over TEMPLATE_VARIABLES
    escalation_ended_delay: float = Field(default=0.0, ge=0)  # ilert: 0 or 30..7200 s
    not_resolved_delay: float = Field(default=60.0, gt=0)  # ilert: 60..7200 s

    @field_validator("event_types")
    @classmethod
    def _known(cls, types: list[str]) -> list[str]:
        unknown = [t for t in types if t not in TRIGGER_TYPES]
        if unknown:
            raise ValueError(f"unknown {unknown}: ilert's trigger types are {list(TRIGGER_TYPES)}")
        return types

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class FaultConf(_Conf):
    mode: Literal["none", "5xx", "429", "delay", "drop"] = "none"
    count: int | None = None  # requests affected; None: all until switched off
    status: int = 503
    delay: float = 0.0
    retry_after: int = 1


class IlertConf(_Conf):
    users: list[UserConf] = Field(
        default_factory=lambda: [
            UserConf(username=u, first_name=first, last_name=u.title(), email=f"{u}@example.com")
            for u, first in (("oncall", "Olivia"), ("lead", "Liam"), ("maint", "Mia"))
        ]
    )
    escalation_policies: list[PolicyConf] = Field(
        default_factory=lambda: [PolicyConf(name="Default policy")]
    )
    sources: list[SourceConf] = Field(
        default_factory=lambda: [
            SourceConf(name="IXON Cloud", key=IXON_KEY, integration="ixon"),
            SourceConf(name="Edge agent events", key=EVENTS_KEY),
        ]
    )
    heartbeats: list[HeartbeatConf] = Field(
        default_factory=lambda: [HeartbeatConf(name="Edge agent heartbeat", key=HEARTBEAT_KEY)]
    )
    alert_actions: list[ActionConf] = Field(default_factory=list)
    faults: FaultConf = Field(default_factory=FaultConf)
    no_open_alert_code: str = "NO_OPEN_ALERT_WITH_KEY"


#: ilert's alertKeyTemplate for an IXON source that the README recommends: a resent message
#: (delivery is at least once) appends to its open alert instead of paging again
OCCURRENCE_KEY = "{{alarm.occurrenceId}}"


def recommended() -> IlertConf:
    """The default set-up with the IXON source grouping by occurrence, as the README says."""
    conf = IlertConf()
    conf.sources[0].alert_key_template = OCCURRENCE_KEY
    return conf


def load(path: Path | None) -> IlertConf:
    return (
        IlertConf() if path is None else IlertConf.model_validate(tomllib.loads(path.read_text()))
    )


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
    report_time: str = field(default_factory=_now)
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


@dataclass(frozen=True)
class _Outgoing:
    event_type: str
    alert_id: str
    body: bytes


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"status": status, "code": code, "message": message}, status=status)


class IlertSimulator(HttpServer):
    """In-process ilert: tests read ``alerts``, ``received`` and ``deliveries`` directly."""

    def __init__(self, conf: IlertConf | None = None, forward: str | None = None) -> None:
        self.conf = conf or IlertConf()
        if forward:
            self.conf.alert_actions.append(ActionConf(name="forward", url=forward))
        self.users = {u.username: u for u in self.conf.users}
        self.policies = [Policy(i, p) for i, p in enumerate(self.conf.escalation_policies, 1)]
        ids = itertools.count(1)
        self.sources = {s.key: AlertSource(next(ids), s) for s in self.conf.sources}
        self.heartbeats = {h.key: AlertSource(next(ids), h) for h in self.conf.heartbeats}
        self.last_ping: dict[str, float] = {}
        self.faults = self.conf.faults.model_copy()
        self.alerts: list[Alert] = []
        self.received: list[dict[str, Any]] = []  # every accepted inbound body, in order
        # the same, with when (monotonic) and the alert source's key
        self.inbound: list[tuple[float, str, dict[str, Any]]] = []
        self.deliveries: list[dict[str, Any]] = []  # every alert-action POST and its outcome
        self._alert_ids = itertools.count(1)
        self._sent: dict[str, deque[float]] = {}
        self._outgoing: dict[str, asyncio.Queue[_Outgoing]] = {}
        # (due, order, for, alert, event type): events an action gets later, soonest first
        self._delayed: list[tuple[float, int, ActionConf, Alert, str]] = []
        self._order = itertools.count()
        self._escalation_timers = any(
            p.escalation_timeout is not None for p in self.conf.escalation_policies
        )
        self._unsent = 0  # queued alert-action events not yet attempted to the end
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None
        self.on_delivery: Callable[[dict[str, Any]], None] | None = None  # for a live display
        app = web.Application(middlewares=[self._fault_middleware])
        app.add_routes(
            [
                web.get("/", self.page),
                web.post("/api/v1/events/ixon/{key}", self.ixon_event),
                web.post("/api/events", self.api_event),
                web.post("/api/events/{key}", self.api_event),
                web.post("/api/v1/events/{type}/{key}", self.api_event),
                web.get("/api/alerts", self.list_alerts),
                web.get("/api/alerts/{id}", self.get_alert),
                web.put("/api/alerts/{id}/{action}", self.alert_action),
                web.post("/api/alerts/{id}/{action}", self.alert_action),
                web.delete("/api/alerts/{id}/{action}/{name}", self.alert_removal),
                web.get("/admin/faults", self.get_faults),
                web.post("/admin/faults", self.set_faults),
            ]
        )
        for prefix in ("/api/heartbeats", "/api/v1/heartbeats", "/api/pings"):
            app.router.add_route("*", prefix + "/{key}", self.heartbeat)
        super().__init__(app)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await super().start(host, port)
        self._http = httpx.AsyncClient(timeout=10.0, headers={"User-Agent": "ilert-standin"})
        for action in self.conf.alert_actions:
            self._outgoing[action.name] = asyncio.Queue()
            self._tasks.append(
                asyncio.create_task(self._deliver(action), name=f"action:{action.name}")
            )
        self._tasks.append(asyncio.create_task(self._clock(), name="clock"))
        return url

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await super().stop()

    async def settle(self, within: float = 5.0) -> None:
        """Wait until every queued alert-action delivery has been attempted."""
        deadline = time.monotonic() + within
        while self._unsent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    # -- faults -----------------------------------------------------------------------------

    @web.middleware
    async def _fault_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        f = self.faults
        inbound = request.path.startswith(
            ("/api/events", "/api/v1/", "/api/heartbeats", "/api/pings")
        )
        if not inbound or f.mode == "none" or f.count == 0:
            return await handler(request)
        if f.count is not None:
            f.count -= 1
        if f.mode == "delay":
            await asyncio.sleep(f.delay)
            return await handler(request)
        if f.mode == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if f.mode == "429":
            return web.json_response(
                {"status": 429, "code": "TOO_MANY_REQUESTS", "message": "fault switch"},
                status=429,
                headers={"Retry-After": str(f.retry_after)},
            )
        return _error(f.status, "FAULT_SWITCH", "injected by the fault switch")

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.model_dump())

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults = FaultConf.model_validate(await request.json())
        except ValueError as exc:
            return _error(400, "INVALID_INPUT", str(exc))
        return web.json_response(self.faults.model_dump())

    # -- inbound events ---------------------------------------------------------------------

    def _limited(self, key: str) -> bool:
        """ilert's 50 events a minute per integration key."""
        sent = self._sent.setdefault(key, deque())
        now = time.monotonic()
        while sent and now - sent[0] >= RATE_WINDOW:
            sent.popleft()
        if len(sent) >= RATE_LIMIT:
            return True
        sent.append(now)
        return False

    def open_alert(self, source: AlertSource, key: str) -> Alert | None:
        """The last open alert of ``source`` with ``key`` (case-insensitive), as ilert does."""
        for alert in reversed(self.alerts):
            if alert.source is source and alert.alert_key.lower() == key.lower():
                return alert if alert.status in OPEN else None
        return None

    def policy(self, name: str) -> Policy:
        return next((p for p in self.policies if p.name == name), self.policies[0])

    def route(self, source: AlertSource, value: Any) -> Policy:
        """The policy whose routing key matches, else the source's own."""
        if value:
            for policy in self.policies:
                if policy.conf.routing_key and policy.conf.routing_key == str(value):
                    return policy
        return self.policy(source.conf.escalation_policy)

    async def ixon_event(self, request: web.Request) -> web.Response:
        source = self.sources.get(request.match_info["key"])
        if source is None or source.integration_type != "IXON":
            return _error(404, "ALERT_SOURCE_NOT_FOUND", "no IXON alert source with this key")
        assert isinstance(source.conf, SourceConf)
        try:
            body = await read_json(request)
            short, long_ = body["shortContent"], body.get("longContent") or {}
            code = short.get("code") or long_.get("code")
        except (ValueError, KeyError, TypeError, AttributeError):
            return _error(400, "INVALID_INPUT", "not an IXON message")
        if self._limited(source.conf.key):
            return _error(429, "TOO_MANY_REQUESTS", "more than 50 events a minute for this key")
        self.received.append(body)
        self.inbound.append((time.monotonic(), source.conf.key, body))
        alarm = body.get("alarm") if isinstance(body.get("alarm"), dict) else {}
        occurrence = str(alarm.get("occurrenceId") or body.get("publicId") or "")
        template = source.conf.alert_key_template
        key = render(template, body).strip() if template else ""
        if code == "alarm-ended":
            ended = (
                [a for a in [self.open_alert(source, key)] if a is not None]
                if template
                else [
                    a
                    for a in self.alerts
                    if a.source is source
                    and a.status in OPEN
                    and occurrence
                    and a.occurrence == occurrence
                ]
            )
            for alert in ended:
                self.resolve(alert, "resolved by the IXON end message")
            return web.json_response({"alertKey": key or None}, status=202)
        existing = self.open_alert(source, key) if key else None
        if existing is not None:
            existing.timeline.append(
                {"eventType": "alert-event-appended", "timestamp": _now(), "note": ""}
            )
            return web.json_response({"alertKey": key, "alertId": existing.id}, status=202)
        routing = {
            "user": (body.get("user") or {}).get("publicId"),
            "system_label": body.get("systemLabel"),
            "company": (body.get("company") or {}).get("publicId"),
        }.get(source.conf.routing_field or "")
        summary = f"{short.get('alarmName') or short.get('name')} ({short.get('agentName')})"
        priority = "HIGH" if body.get("systemLabel") in ("alarm-high", None) else "LOW"
        alert = self.create(
            source,
            key or uuid.uuid4().hex,
            summary,
            _ixon_details(long_),
            priority,
            self.route(source, routing),
            occurrence=occurrence or None,
        )
        return web.json_response({"alertKey": alert.alert_key, "alertId": alert.id}, status=202)

    async def api_event(self, request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return _error(400, "INVALID_INPUT", "body is not a JSON object")
        key = request.match_info.get("key") or body.get("integrationKey") or body.get("apiKey")
        if not key:
            return _error(400, "MISSING_FIELD", "integrationKey is required")
        source = self.sources.get(key)
        if source is None or source.integration_type == "IXON":
            return _error(404, "ALERT_SOURCE_NOT_FOUND", "no alert source with this key")
        assert isinstance(source.conf, SourceConf)
        event_type = body.get("eventType")
        if not event_type:
            return _error(400, "MISSING_FIELD", "eventType is required")
        if event_type not in ("ALERT", "ACCEPT", "RESOLVE", "COMMENT"):
            return _error(
                400, "INVALID_EVENT_TYPE", "eventType must be ALERT, ACCEPT, RESOLVE or COMMENT"
            )
        if body.get("priority") not in (None, "HIGH", "LOW"):
            return _error(400, "INVALID_PRIORITY", "priority must be HIGH or LOW")
        severity = body.get("severity")
        if severity is not None and (
            not isinstance(severity, int) or isinstance(severity, bool) or not 1 <= severity <= 5
        ):
            return _error(400, "INVALID_SEVERITY", "severity must be a whole number from 1 to 5")
        if not body.get("summary") and event_type == "ALERT":
            return _error(400, "MISSING_FIELD", "summary is required")
        if self._limited(key):
            return _error(429, "TOO_MANY_REQUESTS", "more than 50 events a minute for this key")
        self.received.append(body)
        self.inbound.append((time.monotonic(), key, body))
        alert_key = str(body.get("alertKey") or uuid.uuid4().hex)
        existing = self.open_alert(source, alert_key)
        if event_type == "ALERT":
            if existing is not None:
                existing.timeline.append(
                    {"eventType": "alert-event-appended", "timestamp": _now(), "note": ""}
                )
            else:
                # the event's priority counts only on a HIGH source (ilert: "setting the
                # source to LOW will ignore your event priority field")
                priority = source.conf.priority
                if priority == "HIGH" and body.get("priority"):
                    priority = body["priority"]
                links = [x for x in body.get("links") or [] if isinstance(x, dict)]
                existing = self.create(
                    source,
                    alert_key,
                    body["summary"],
                    body.get("details") or "",
                    priority,
                    self.route(source, body.get("routingKey")),
                    severity=severity,
                    links=links,
                )
        elif existing is None:
            code = self.conf.no_open_alert_code
            return _error(400, code, f"no open alert with key {alert_key}")
        elif event_type == "ACCEPT":
            self.accept(existing)
        elif event_type == "RESOLVE":
            self.resolve(existing, "resolved by event")
        elif event_type == "COMMENT":
            for comment in body.get("comments") or []:
                self.emit(existing, "alert-comment-added", note=str(comment.get("content", "")))
        headers = {"correlation-id": str(uuid.uuid4())}
        payload = {"alertKey": alert_key, "alertUrl": f"{self.url}/api/alerts/{existing.id}"}
        return web.json_response(payload, status=202, headers=headers)

    async def heartbeat(self, request: web.Request) -> web.Response:
        if request.method not in ("GET", "POST", "HEAD"):
            return _error(405, "METHOD_NOT_ALLOWED", "ping with GET, HEAD or POST")
        beat = self.heartbeats.get(request.match_info["key"])
        if beat is None:
            return _error(404, "HEARTBEAT_NOT_FOUND", "no heartbeat with this key")
        self.last_ping[beat.conf.key] = time.monotonic()
        missed = self.open_alert(beat, beat.conf.key)
        if missed is not None:
            self.resolve(missed, "heartbeat received again")
        return web.Response(status=202)

    def _check_heartbeats(self, now: float) -> None:
        """A heartbeat silent for longer than its interval opens an alert (timer starts at
        the first ping, as ilert's does)."""
        for key, last in list(self.last_ping.items()):
            beat = self.heartbeats[key]
            assert isinstance(beat.conf, HeartbeatConf)
            if now - last > beat.conf.interval and self.open_alert(beat, key) is None:
                silent = f"no ping for {beat.conf.interval:g} s"
                self.create(
                    beat,
                    key,
                    f"Heartbeat {beat.name} missed",
                    silent,
                    "HIGH",
                    self.policy(beat.conf.escalation_policy),
                )

    async def _clock(self) -> None:
        """Everything that happens by time: heartbeats, escalation, delayed events."""
        while True:
            now = time.monotonic()
            self._check_heartbeats(now)
            if self._escalation_timers:
                for alert in [a for a in self.alerts if a.escalating and a.status == "PENDING"]:
                    timeout = alert.policy.conf.escalation_timeout
                    if timeout is not None and now - alert.level_since >= timeout:
                        self.escalate(alert)
            while self._delayed and self._delayed[0][0] <= now:
                _, _, action, alert, event_type = heapq.heappop(self._delayed)
                if alert.status != "RESOLVED":  # its timeline has the escalation's end already
                    self.emit(
                        alert,
                        event_type,
                        only=action,
                        record=event_type != "alert-escalation-ended",
                    )
            await asyncio.sleep(TICK)

    # -- alerts and their lifecycle --------------------------------------------------------

    def create(
        self,
        source: AlertSource,
        key: str,
        summary: str,
        details: str,
        priority: str,
        policy: Policy,
        **extra: Any,
    ) -> Alert:
        alert = Alert(
            next(self._alert_ids), source, summary, details, priority, key, policy, **extra
        )
        alert.responders = [self._responder(u) for u in self._level_users(alert)]
        self.alerts.append(alert)
        self.emit(alert, "alert-created")
        for action in self.conf.alert_actions:
            if action.wants("v-alert-not-resolved") and self._for_source(action, alert):
                self._later(action.not_resolved_delay, action, alert, "v-alert-not-resolved")
        return alert

    def _later(self, delay: float, action: ActionConf, alert: Alert, event_type: str) -> None:
        due = time.monotonic() + delay
        heapq.heappush(self._delayed, (due, next(self._order), action, alert, event_type))

    def _level_users(self, alert: Alert) -> list[str]:
        levels = alert.policy.conf.levels
        return levels[min(alert.level, len(levels) - 1)] if levels else []

    def _responder(self, username: str, status: str = "PENDING") -> dict[str, Any]:
        user = self.users.get(username) or UserConf(username=username)
        return {
            "user": {
                "id": abs(hash(username)) % 100_000,
                "username": user.username,
                "firstName": user.first_name,
                "lastName": user.last_name,
                "email": user.email,
            },
            "status": status,
        }

    def accept(self, alert: Alert, username: str | None = None) -> None:
        alert.status = "ACCEPTED"
        for responder in alert.responders:
            if username is None or responder["user"]["username"] == username:
                responder["status"] = "ACCEPTED"
                responder["acceptedAt"] = _now()
                break
        self.emit(alert, "alert-acknowledged")

    def resolve(self, alert: Alert, text: str) -> None:
        alert.status, alert.resolved_on = "RESOLVED", _now()
        self.emit(alert, "alert-resolved", note=text)

    def escalate(self, alert: Alert) -> None:
        """The current level's time ran out: the next level, or past the last, the end."""
        if alert.level + 1 < len(alert.policy.conf.levels):
            alert.level += 1
            alert.level_since = time.monotonic()
            alert.responders = [self._responder(u) for u in self._level_users(alert)]
            self.emit(alert, "alert-auto-escalated", note=f"to level {alert.level + 1}")
            return
        alert.escalating = False
        if alert.escalation_ended:
            return
        alert.escalation_ended = True
        for action in self.conf.alert_actions:
            delay = action.escalation_ended_delay
            if delay and action.wants("alert-escalation-ended"):
                self._later(delay, action, alert, "alert-escalation-ended")
        self.emit(alert, "alert-escalation-ended", delayed=True)

    def _for_source(self, action: ActionConf, alert: Alert) -> bool:
        return not action.sources or alert.source.name in action.sources

    def emit(
        self,
        alert: Alert,
        event_type: str,
        note: str = "",
        only: ActionConf | None = None,
        delayed: bool = False,
        record: bool = True,
    ) -> None:
        """Record a lifecycle event and queue it for every alert action that wants it (or
        for ``only``); ``delayed``: not for actions that wait before they get this one."""
        if record:
            alert.timeline.append({"eventType": event_type, "timestamp": _now(), "note": note})
        for action in [only] if only else self.conf.alert_actions:
            if not action.wants(event_type) or not self._for_source(action, alert):
                continue
            if delayed and only is None and action.escalation_ended_delay:
                continue
            if action.name not in self._outgoing:
                continue
            if action.body_template is None:
                body = json.dumps(alert.webhook_payload(event_type), separators=(",", ":"))
            else:
                body = render(action.body_template, alert.template_variables(event_type, self.url))
            self._unsent += 1
            self._outgoing[action.name].put_nowait(
                _Outgoing(event_type, str(alert.id), body.encode("utf-8"))
            )

    async def _deliver(self, action: ActionConf) -> None:
        """POST one action's events in order, each tried a few times. Basic auth comes from
        the URL's userinfo (httpx sends it as an Authorization header, as ilert does)."""
        queue = self._outgoing[action.name]
        headers = {"Content-Type": "application/json", **action.headers}
        while True:
            item = await queue.get()
            try:
                for attempt in range(1, 4):
                    outcome: dict[str, Any] = {
                        "action": action.name,
                        "eventType": item.event_type,
                        "alertId": item.alert_id,
                        "attempt": attempt,
                    }
                    try:
                        assert self._http is not None
                        response = await self._http.post(
                            action.url, content=item.body, headers=headers
                        )
                        outcome["status"] = response.status_code
                        ok = response.status_code < 300
                    except httpx.HTTPError as exc:
                        outcome["error"], ok = type(exc).__name__, False
                    self.deliveries.append(outcome)
                    if self.on_delivery is not None:
                        self.on_delivery(outcome)
                    if ok:
                        break
                    await asyncio.sleep(0.5 * attempt)
            finally:
                self._unsent -= 1

    # -- the alert API ----------------------------------------------------------------------

    def _find(self, request: web.Request) -> Alert | None:
        return next((a for a in self.alerts if str(a.id) == request.match_info["id"]), None)

    async def list_alerts(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status and status not in STATUSES:
            return _error(400, "INVALID_STATUS", f"status must be one of {', '.join(STATUSES)}")
        return web.json_response(
            [a.to_json() for a in self.alerts if not status or a.status == status]
        )

    async def get_alert(self, request: web.Request) -> web.Response:
        alert = self._find(request)
        return (
            web.json_response(alert.to_json())
            if alert
            else _error(404, "ALERT_NOT_FOUND", "no such alert")
        )

    async def alert_action(self, request: web.Request) -> web.Response:
        alert = self._find(request)
        if alert is None:
            return _error(404, "ALERT_NOT_FOUND", "no such alert")
        body: dict[str, Any] = {}
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json() or {}
        action = request.match_info["action"]
        if alert.status == "RESOLVED" and action not in ("comments",):
            return _error(400, "ALERT_RESOLVED", "the alert is resolved")
        match action:
            case "accept":
                self.accept(alert, body.get("user"))
            case "resolve":
                self.resolve(alert, "resolved by an operator")
            case "raise":
                if alert.priority == "HIGH":
                    return _error(400, "ALREADY_HIGH", "the alert's priority is already HIGH")
                alert.priority = "HIGH"
                self.emit(alert, "alert-raised")
            case "escalate":
                if alert.escalation_ended:
                    return _error(400, "ESCALATION_ENDED", "no escalation level is left")
                self.escalate(alert)
            case "assign":
                if body.get("escalationPolicy"):
                    alert.policy, alert.level = self.policy(body["escalationPolicy"]), 0
                    alert.responders = [self._responder(u) for u in self._level_users(alert)]
                    alert.escalating, alert.escalation_ended = True, False
                    alert.level_since = time.monotonic()
                elif body.get("user"):
                    alert.responders = [self._responder(body["user"])]
                    alert.escalating = False  # a person's now, not the policy's
                else:
                    return _error(400, "MISSING_FIELD", "assign needs user or escalationPolicy")
                self.emit(alert, "alert-assigned")
            case "comments":
                if not body.get("content"):
                    return _error(400, "MISSING_FIELD", "content is required")
                self.emit(alert, "alert-comment-added", note=str(body["content"]))
            case "responders":
                if not body.get("user"):
                    return _error(400, "MISSING_FIELD", "user is required")
                alert.responders.append(self._responder(body["user"]))
                self.emit(alert, "alert-responder-added", note=str(body["user"]))
            case "channels":
                if not body.get("name"):
                    return _error(400, "MISSING_FIELD", "name is required")
                alert.channels.append(body["name"])
                self.emit(alert, "alert-channel-attached", note=str(body["name"]))
            case _:
                return _error(404, "UNKNOWN_ACTION", f"no action {action!r}")
        return web.json_response(alert.to_json())

    async def alert_removal(self, request: web.Request) -> web.Response:
        alert = self._find(request)
        if alert is None:
            return _error(404, "ALERT_NOT_FOUND", "no such alert")
        action, name = request.match_info["action"], request.match_info["name"]
        if action == "responders":
            kept = [r for r in alert.responders if r["user"]["username"] != name]
            if len(kept) == len(alert.responders):
                return _error(404, "RESPONDER_NOT_FOUND", f"{name} is not a responder")
            alert.responders = kept
            self.emit(alert, "alert-responder-removed", note=name)
        elif action == "channels":
            if name not in alert.channels:
                return _error(404, "CHANNEL_NOT_FOUND", f"{name} is not attached")
            alert.channels.remove(name)
            self.emit(alert, "alert-channel-detached", note=name)
        else:
            return _error(404, "UNKNOWN_ACTION", f"no action {action!r}")
        return web.json_response(alert.to_json())

    # -- the page ---------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=render_page(self.alerts), content_type="text/html")


def _ixon_details(long_content: dict[str, Any]) -> str:
    lines = []
    if long_content.get("instructions"):
        lines.append(str(long_content["instructions"]))
    for item in long_content.get("extraInformation") or []:
        if isinstance(item, dict) and item.get("type") != "unit":
            lines.append(f"{item.get('key')}: {item.get('value')}")
    return "\n".join(lines)


def render_page(alerts: list[Alert]) -> str:
    """Server-rendered, read-only, refreshing itself every 2 seconds."""
    e = html.escape
    rows = []
    for a in reversed(alerts):
        responders = ", ".join(r["user"]["username"] for r in a.responders)
        timeline = "".join(
            f"<li><time>{e(t['timestamp'])}</time> {e(t['eventType'])}"
            + (f": {e(t['note'])}" if t.get("note") else "")
            + "</li>"
            for t in a.timeline
        )
        rows.append(
            f'<tr class="alert {e(a.status.lower())}" data-id="{a.id}"><td>#{a.id}</td>'
            f'<td class="status">{e(a.status)}</td><td class="priority">{e(a.priority)}</td>'
            f"<td>{e(a.summary)}<details><summary>timeline ({len(a.timeline)})</summary>"
            f"<ul>{timeline}</ul></details></td><td>{e(a.source.name)}</td>"
            f'<td class="policy">{e(a.policy.name)} (level {a.level + 1})</td>'
            f"<td>{e(responders)}</td><td>{e(a.report_time)}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="8">No alerts yet.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ilert stand-in: alerts</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .4rem; text-align: left; vertical-align: top; }}
.pending .status {{ color: #b00; font-weight: bold; }} .accepted .status {{ color: #b60; }}
.resolved .status {{ color: #070; }} .priority {{ font-weight: bold; }}
</style></head><body>
<h1>ilert stand-in: {len(alerts)} alert(s), {sum(a.status != "RESOLVED" for a in alerts)} open</h1>
<table><thead><tr><th>Id</th><th>Status</th><th>Priority</th><th>Summary</th><th>Source</th>
<th>Escalation policy</th><th>Responders</th><th>Reported</th></tr></thead>
<tbody>{body}</tbody></table></body></html>
"""


def main(argv: list[str] | None = None) -> None:
    options = parser("python -m simulators.ilert", __doc__, 8025)
    options.add_argument("--config", type=Path, help="TOML: sources, policies, users, actions")
    options.add_argument("--forward", metavar="URL", help="send every lifecycle event to URL")
    options.add_argument("--fault", choices=["none", "5xx", "429", "delay", "drop"], default="none")
    options.add_argument("--fault-count", type=int, help="requests affected (default: all)")
    options.add_argument(
        "--fault-delay", type=float, default=5.0, help="seconds, for --fault delay"
    )
    args = options.parse_args(argv)
    conf = load(args.config)
    if args.fault != "none":
        conf.faults = FaultConf(mode=args.fault, count=args.fault_count, delay=args.fault_delay)
    run(IlertSimulator(conf, forward=args.forward), args.host, args.port, "ilert stand-in")


if __name__ == "__main__":
    main()
