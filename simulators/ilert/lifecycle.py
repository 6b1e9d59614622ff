"""An alert's life in ilert without HTTP in front: created, escalated by its policy,
accepted, assigned, resolved; each event recorded on its timeline and queued for the alert
actions that want it, which POST it in order (ilert's outgoing webhooks)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from simulators.ilert.alerts import Alert, AlertSource, Policy, now_iso, render
from simulators.ilert.conf import OPEN, ActionConf, IlertConf, UserConf

TICK = 0.05  # how often timers (escalation, delayed events, heartbeats) are looked at


@dataclass(frozen=True)
class _Outgoing:
    event_type: str
    alert_id: str
    body: bytes


class Lifecycle:
    """The alert model of one ilert account: users, policies, sources, alerts, and the alert
    actions' outgoing webhooks. ``IlertSimulator`` puts HTTP in front of it."""

    def __init__(self, conf: IlertConf | None = None, forward: str | None = None) -> None:
        self.conf = conf or IlertConf()
        if forward:
            self.conf.alert_actions.append(ActionConf(name="forward", url=forward))
        self.users = {u.username: u for u in self.conf.users}
        self.policies = [Policy(i, p) for i, p in enumerate(self.conf.escalation_policies, 1)]
        ids = itertools.count(1)
        self.sources = {s.key: AlertSource(next(ids), s) for s in self.conf.sources}
        self.heartbeats = {h.key: AlertSource(next(ids), h) for h in self.conf.heartbeats}
        self.alerts: list[Alert] = []
        self.deliveries: list[dict[str, Any]] = []  # every alert-action POST and its outcome
        self.on_delivery: Callable[[dict[str, Any]], None] | None = None  # for a live display
        self._alert_ids = itertools.count(1)
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

    @property
    def base_url(self) -> str:
        """Where alerts are seen (``alertUrl``); the server knows once it listens."""
        return ""

    def start_actions(self) -> None:
        """Start posting alert actions' events, and the timers; inside the event loop."""
        self._http = httpx.AsyncClient(timeout=10.0, headers={"User-Agent": "ilert-standin"})
        for action in self.conf.alert_actions:
            self._outgoing[action.name] = asyncio.Queue()
            self._tasks.append(
                asyncio.create_task(self._deliver(action), name=f"action:{action.name}")
            )
        self._tasks.append(asyncio.create_task(self._clock(), name="clock"))

    async def stop_actions(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def settle(self, within: float = 5.0) -> None:
        """Wait until every queued alert-action delivery has been attempted."""
        deadline = time.monotonic() + within
        while self._unsent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def tick(self, now: float) -> None:
        """What else happens by time (a subclass's heartbeats)."""

    async def _clock(self) -> None:
        """Everything that happens by time: escalation, delayed events, ``tick``."""
        while True:
            now = time.monotonic()
            self.tick(now)
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

    def policy(self, name: str) -> Policy:
        return next((p for p in self.policies if p.name == name), self.policies[0])

    def route(self, source: AlertSource, value: Any) -> Policy:
        """The policy whose routing key matches, else the source's own."""
        if value:
            for policy in self.policies:
                if policy.conf.routing_key and policy.conf.routing_key == str(value):
                    return policy
        return self.policy(source.conf.escalation_policy)

    def open_alert(self, source: AlertSource, key: str) -> Alert | None:
        """The last open alert of ``source`` with ``key`` (case-insensitive), as ilert does."""
        for alert in reversed(self.alerts):
            if alert.source is source and alert.alert_key.lower() == key.lower():
                return alert if alert.status in OPEN else None
        return None

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
                responder["acceptedAt"] = now_iso()
                break
        self.emit(alert, "alert-acknowledged")

    def resolve(self, alert: Alert, text: str) -> None:
        alert.status, alert.resolved_on = "RESOLVED", now_iso()
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
            alert.timeline.append({"eventType": event_type, "timestamp": now_iso(), "note": note})
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
                body = render(
                    action.body_template, alert.template_variables(event_type, self.base_url)
                )
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
