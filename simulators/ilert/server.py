"""The stand-in's HTTP side: the inbound endpoints ilert's integrations offer (IXON
source, Events API, heartbeats) within ilert's limits, the alert API an operator's actions
go through, fault switches for tests, and the page."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from simulators._http import HttpServer, parser, read_json, run
from simulators.ilert.alerts import Alert, ixon_details, now_iso, render
from simulators.ilert.conf import (
    OPEN,
    STATUSES,
    FaultConf,
    HeartbeatConf,
    IlertConf,
    SourceConf,
    load,
)
from simulators.ilert.lifecycle import Lifecycle
from simulators.ilert.limits import FixedWindows
from simulators.ilert.page import render_page

#: the endpoints the agent calls (the fault switches and the request count apply to them)
INBOUND = ("/api/events", "/api/v1/", "/api/heartbeats", "/api/pings")


class Inbound(NamedTuple):
    """An accepted event: when (monotonic, and wall time), its source's key, its body."""

    at: float
    key: str
    body: dict[str, Any]
    wall: float


def _summary(body: dict[str, Any]) -> dict[str, Any]:
    """What a bench needs of an accepted event: which alarm, which state, since when."""
    alarm = body.get("alarm")
    if isinstance(alarm, dict):  # IXON
        keys = ("occurrenceId", "severity", "state", "occurredOn", "name")
        return {k: alarm.get(k) for k in keys}
    details = body.get("customDetails")
    details = details if isinstance(details, dict) else {}
    state = {"ALERT": "active", "RESOLVE": "ended"}.get(body.get("eventType") or "", "other")
    return {
        "occurrenceId": body.get("alertKey"),
        "severity": details.get("severity"),
        "state": state,
        "occurredOn": details.get("occurredOn"),
        "name": body.get("summary"),
    }


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"status": status, "code": code, "message": message}, status=status)


class IlertSimulator(Lifecycle, HttpServer):
    """In-process ilert: tests read ``alerts``, ``received`` and ``deliveries`` directly."""

    def __init__(self, conf: IlertConf | None = None, forward: str | None = None) -> None:
        Lifecycle.__init__(self, conf, forward)
        self.last_ping: dict[str, float] = {}
        self.faults = self.conf.faults.model_copy()
        self.received: list[dict[str, Any]] = []  # every accepted inbound body, in order
        # the same, with when and the alert source's key
        self.inbound: list[Inbound] = []
        self.arrivals: list[float] = []  # wall time of every inbound request, 429s included
        limits = self.conf.limits
        self.events = FixedWindows(limits.events, limits.window)  # per alert source key
        self.pings = FixedWindows(limits.heartbeats, limits.window)  # per heartbeat key
        self.api = FixedWindows(limits.api, limits.window)  # per client address
        self.requests = 0  # inbound requests answered, 429s included
        app = web.Application(middlewares=[self._count, self._api_limit, self._fault_middleware])
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
                web.get("/admin/stats", self.get_stats),
            ]
        )
        for prefix in ("/api/heartbeats", "/api/v1/heartbeats", "/api/pings"):
            app.router.add_route("*", prefix + "/{key}", self.heartbeat)
        HttpServer.__init__(self, app)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.url

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> str:
        url = await HttpServer.start(self, host, port, tls)
        self.start_actions()
        return url

    async def stop(self) -> None:
        await self.stop_actions()
        await HttpServer.stop(self)

    # -- limits -----------------------------------------------------------------------------

    def _throttled(self, kind: str, per: str) -> web.Response:
        """ilert's answer past a limit: 429, and no ``Retry-After``."""
        limits = self.conf.limits
        limit = {"events": limits.events, "heartbeats": limits.heartbeats, "api": limits.api}
        window = f"{limits.window:g} s" if limits.window != 60 else "minute"
        return _error(429, "TOO_MANY_REQUESTS", f"more than {limit[kind]} {kind} a {window} {per}")

    @web.middleware
    async def _count(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(INBOUND):
            self.requests += 1
            self.arrivals.append(time.time())
        return await handler(request)

    @web.middleware
    async def _api_limit(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """700 requests a minute per client address on the REST API (alerts and actions)."""
        if request.path.startswith("/api/alerts") and not self.api.allow(request.remote or ""):
            return self._throttled("api", "from this address")
        return await handler(request)

    async def get_stats(self, request: web.Request) -> web.Response:
        """What a bench reads from a stand-in in another process."""
        since = float(request.query.get("since", 0))
        return web.json_response(
            {
                "requests": self.requests,
                "received": len(self.received),
                "throttled": {
                    "events": self.events.refused,
                    "heartbeats": self.pings.refused,
                    "api": self.api.refused,
                },
                "arrivals": [t for t in self.arrivals if t >= since],
                "messages": [
                    {"key": m.key, "at": m.wall, **_summary(m.body)}
                    for m in self.inbound
                    if m.wall >= since
                ],
            }
        )

    # -- faults -----------------------------------------------------------------------------

    @web.middleware
    async def _fault_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        f = self.faults
        inbound = request.path.startswith(INBOUND)
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
        if not self.events.allow(source.conf.key):
            return self._throttled("events", "for this key")
        self.received.append(body)
        self.inbound.append(Inbound(time.monotonic(), source.conf.key, body, time.time()))
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
                {"eventType": "alert-event-appended", "timestamp": now_iso(), "note": ""}
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
            ixon_details(long_),
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
        if not self.events.allow(key):
            return self._throttled("events", "for this key")
        self.received.append(body)
        self.inbound.append(Inbound(time.monotonic(), key, body, time.time()))
        alert_key = str(body.get("alertKey") or uuid.uuid4().hex)
        existing = self.open_alert(source, alert_key)
        if event_type == "ALERT":
            if existing is not None:
                existing.timeline.append(
                    {"eventType": "alert-event-appended", "timestamp": now_iso(), "note": ""}
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
        if not self.pings.allow(beat.conf.key):
            return self._throttled("heartbeats", "for this heartbeat key")
        self.last_ping[beat.conf.key] = time.monotonic()
        missed = self.open_alert(beat, beat.conf.key)
        if missed is not None:
            self.resolve(missed, "heartbeat received again")
        return web.Response(status=202)

    def tick(self, now: float) -> None:
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


def main(argv: list[str] | None = None) -> None:
    from simulators import ilert  # the package's docstring is the help

    options = parser("python -m simulators.ilert", ilert.__doc__, 8025)
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
