"""``ixon-agent demo``: machine simulator -> agent -> ilert stand-in, on loopback, shown live.

The agent runs the normal code path with the repository's ``agent.toml`` (or ``--config``),
redirected to the simulators' free ports: every loopback Modbus source reads the simulated
machine and every loopback webhook posts to the ilert stand-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agent.alarms.rules import AlarmRule
from agent.alarms.states import Transition, describe_values
from agent.common.values import Value
from agent.config import STARTER, Config, Webhook, config_path, load_config
from agent.delivery.deliverer import Result
from agent.observe.logs import setup_logging
from agent.runtime.service import Agent
from agent.sources.base import PollResult
from agent.sources.modbus.config import ModbusSource
from agent.tools.alarmtest.spec import AlarmTest, TestFileError
from agent.tools.alarmtest.spec import load as load_tests
from simulators.ilert import (
    EVENTS_KEY,
    TRIGGER_TYPES,
    ActionConf,
    Alert,
    IlertSimulator,
    recommended,
)
from simulators.machines import Machine, scenario
from simulators.modbus_device import ModbusDeviceSimulator
from simulators.sumo import SumoSimulator
from workbench.wiring import to_stand_ins

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SUMO_CATEGORY = "webhook/ilert"  # the Sumo stand-in's demo source


class _Style:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text


class LiveView:
    """Prints what the chain does as it happens, for a person watching a terminal."""

    def __init__(
        self,
        config: Config,
        ilert: IlertSimulator,
        out: Any = sys.stdout,
        sumo: SumoSimulator | None = None,
    ) -> None:
        self.config = config
        self.ilert = ilert
        self.sumo = sumo
        self.sumo_before = len(sumo.messages) if sumo else 0
        self.out = out
        self.style = _Style(out.isatty() and not os.environ.get("NO_COLOR"))
        self.started = time.monotonic()
        self.counts: Counter[str] = Counter()
        first = [AlarmRule.compile_all(alarm, config)[0] for alarm in config.alarms]
        #: what the alarms read, formulas included; a word's bits are shown in hex
        self.watched = sorted({i.key for rule in first for i in rule.inputs})
        self.words = {rule.variable: rule for rule in first if rule.digits}
        self.units = {key: v.unit for key, _, v in config.variables()}
        self.last_line: str | None = None
        self.last_print = 0.0
        self.values: dict[str, Value] = {}

    def say(self, text: str) -> None:
        stamp = time.monotonic() - self.started
        print(f"{stamp:6.1f}s  {text}", file=self.out, flush=True)

    def polled(self, result: PollResult) -> None:
        self.counts["polls"] += 1
        if result.errors:
            self.counts["failed polls"] += 1
        self.values.update(result.values)
        parts = []
        for key in self.watched:
            if key in self.values:
                value = self.values[key]
                shown = (
                    str(value).lower()
                    if isinstance(value, bool)
                    else f"{value:g}"
                    if isinstance(value, float)
                    else str(self.words[key].shown(value) if key in self.words else value)
                )
                unit = f" {self.units[key]}" if self.units.get(key) else ""
                parts.append(f"{key.partition('.')[2]}={shown}{unit}")
        line = "  ".join(parts)
        now = time.monotonic()
        if line != self.last_line and now - self.last_print >= 1.0:
            self.say(self.style(line, "2"))
            self.last_line, self.last_print = line, now

    def transition(self, t: Transition) -> None:
        self.counts[f"alarm {t.kind}s"] += 1
        values = describe_values(t)
        if t.kind == "start":
            head = self.style(f"ALARM START [{t.rule.severity}]", "1;31")
            self.say(f"{head} {t.rule.name}: {values} ({t.rule.condition_text})")
        else:
            head = self.style("ALARM END", "1;32")
            self.say(f"{head} {t.rule.name}: {values}")

    def delivered(self, result: Result) -> None:
        self.counts[f"messages {result.outcome}"] += 1
        key = result.entry.occurrence_id
        alert = next(
            (a for a in reversed(self.ilert.alerts) if key in (a.occurrence, a.alert_key)), None
        )
        status = f"HTTP {result.status}" if result.status else result.error
        text = f"  -> webhook {result.entry.webhook}: {result.outcome} ({status})"
        if alert is not None:
            text += f"; ilert alert #{alert.id} {alert.status} {alert.priority}: {alert.summary}"
        self.say(self.style(text, "36"))

    def acknowledged(self, alarm: str, by: str, messages: list[Any]) -> None:
        """Someone at the machine acknowledged an occurrence (the agent tells ilert)."""
        self.counts["acknowledged at the machine"] += 1
        told = f"; ACCEPT to {', '.join(m.webhook for m in messages)}" if messages else ""
        self.say(self.style(f"  at the machine: {alarm!r} acknowledged by {by}{told}", "1;35"))

    def from_ilert(
        self, event: str, alarm: str, occurrence: str, who: str, acknowledged: bool
    ) -> None:
        """ilert's alert action reached the agent's /ilert."""
        self.counts["from ilert to the machine"] += 1
        by = f" by {who}" if who else ""
        here = ": acknowledged here" if acknowledged else ""
        if acknowledged:
            self.counts["accepted in ilert, acknowledged here"] += 1
        self.say(self.style(f"    ilert -> agent: {event} of {alarm!r}{by}{here}", "35"))

    def forwarded(self, delivery: dict[str, Any]) -> None:
        """ilert's alert action posted a lifecycle event to the Sumo stand-in."""
        self.counts["lifecycle events"] += 1
        result = f"HTTP {delivery['status']}" if "status" in delivery else delivery.get("error")
        event, alert = delivery["eventType"], delivery["alertId"]
        self.say(self.style(f"    ilert -> Sumo: {event} of alert #{alert} ({result})", "2"))

    def summary(self, elapsed: float) -> str:
        alerts = self.ilert.alerts
        resolved = sum(1 for a in alerts if a.status == "RESOLVED")
        c = self.counts
        lines = [
            f"Summary after {elapsed:.0f}s:",
            f"  polls: {c['polls']} ({c['failed polls']} failed)",
            f"  alarms: {c['alarm starts']} started, {c['alarm ends']} ended",
            f"  webhook messages: {c['messages delivered']} delivered,"
            f" {c['messages retry']} retried, {c['messages rejected']} rejected",
            f"  ilert alerts: {len(alerts)} ({resolved} resolved, {len(alerts) - resolved} open)",
        ]
        lines += [f"    #{a.id} {a.status:<8} {a.priority:<4} {a.summary}" for a in alerts]
        lines += [
            f"  from ilert to the machine: {c['from ilert to the machine']} alert action(s),"
            f" {c['accepted in ilert, acknowledged here']} accept(s) acknowledged here",
            f"  from the machine to ilert: {c['acknowledged at the machine']} acknowledgement(s)",
        ]
        if self.sumo is not None:
            events = Counter(
                json.loads(m["message"]).get("eventType", "?")
                for m in self.sumo.messages[self.sumo_before :]
                if m["category"] == SUMO_CATEGORY
            )
            lines.append(
                f"  Sumo Logic stand-in, source category {SUMO_CATEGORY}:"
                f" {sum(events.values())} lifecycle events, by ilert trigger type"
            )
            kinds = [*TRIGGER_TYPES, *sorted(set(events) - set(TRIGGER_TYPES))]
            lines += [f"    {kind:<24} {events[kind]}" for kind in kinds]
        return "\n".join(lines)


@dataclass(frozen=True)
class Step:
    """One thing the scripted operator does at ilert, on an open alert for which ``when``."""

    method: str
    action: str
    body: dict[str, str] | None
    when: Callable[[Alert], bool]


def _has_responder(name: str) -> Callable[[Alert], bool]:
    return lambda alert: any(r["user"]["username"] == name for r in alert.responders)


#: with the stand-in's own timers (escalation, the not-resolved reminder) and the agent's
#: alerts and ends, these make every one of ilert's trigger types appear
OPERATOR_STEPS = (
    Step("PUT", "accept", None, lambda a: a.status == "PENDING"),
    Step("POST", "comments", {"content": "On my way to line 3."}, lambda a: True),
    Step("POST", "responders", {"user": "maint"}, lambda a: not _has_responder("maint")(a)),
    Step("DELETE", "responders/maint", None, _has_responder("maint")),
    Step("PUT", "assign", {"user": "maint"}, lambda a: True),
    Step("POST", "channels", {"name": "line3-ops"}, lambda a: "line3-ops" not in a.channels),
    Step("DELETE", "channels/line3-ops", None, lambda a: "line3-ops" in a.channels),
    Step("PUT", "raise", None, lambda a: a.priority == "LOW"),  # last: waits for a LOW alert
)


def demo_ilert(period: float, forward: str, agent: str | None = None) -> IlertSimulator:
    """ilert as the README recommends, with timers short enough for one scenario period:
    a pending alert escalates after period/40 and ends its escalation after as long again;
    an alert open for period/30 gets the not-resolved reminder. Its IXON source's lifecycle
    goes to Sumo; with ``agent``, every alert's goes back to the agent's /ilert too."""
    conf = recommended()
    for policy in conf.escalation_policies:
        policy.escalation_timeout = period / 40
    conf.alert_actions.append(
        ActionConf(name="sumo", url=forward, not_resolved_delay=period / 30, sources=["IXON Cloud"])
    )
    if agent is not None:
        conf.alert_actions.append(ActionConf(name="agent", url=agent))
    return IlertSimulator(conf)


def with_the_loop(config: Config, ilert_url: str, port: int, password: str) -> Config:
    """The demo's config closes the loop: the panel behind a login (which ilert's alert
    action uses to reach /ilert), and an Events API webhook for the high alarms, so that an
    acknowledgement at the machine turns their ilert alerts ACCEPTED."""
    from agent.observe.auth import hash_password

    users = {"demo": hash_password(password, rounds=10)}
    status = config.status.model_copy(update={"port": port, "users": users})
    webhooks = list(config.webhooks)
    if not any(w.format == "ilert-events" for w in webhooks):
        webhooks.append(
            Webhook.model_validate(
                {"name": "ilert-api", "url": f"{ilert_url}/api/events",
                 "format": "ilert-events", "integration_key": EVENTS_KEY,
                 "min_severity": "high"}
            )
        )  # fmt: skip
    return config.model_copy(update={"status": status, "webhooks": webhooks})


async def at_the_machine(agent: Agent, wait: float = 1.0) -> None:
    """A person at the machine acknowledges a high alarm sent to ilert's Events API that
    nobody has taken yet, a moment after its ALERT went out."""
    events = {w.name for w in agent.config.webhooks if w.format == "ilert-events"}

    def untaken() -> Any:
        for o in agent.store.history(20):
            sent = all(d.state == "delivered" for d in o.deliveries if d.webhook in events)
            if o.ended is None and o.acked_by is None and events & set(o.webhooks) and sent:
                return o
        return None

    while True:
        await asyncio.sleep(0.1)
        found = untaken()
        if found is None:
            continue
        await asyncio.sleep(wait)
        if untaken() == found:  # (ilert's operator may have accepted it meanwhile)
            agent.acknowledge(found.alarm_id, "Max at the machine", "checking the pump")
            return


async def operator(ilert: IlertSimulator, view: LiveView, pause: float = 0.4) -> None:
    """A person at ilert's web UI: works through OPERATOR_STEPS on the alerts that come in,
    staying with one alert while it is open; a step the alert no longer allows (it was
    resolved meanwhile) is tried again on the next open alert."""
    steps = list(OPERATOR_STEPS)
    current: Alert | None = None
    async with httpx.AsyncClient(timeout=5.0) as http:
        while steps:
            step = steps[0]
            fits = [a for a in ilert.alerts if a.status != "RESOLVED" and step.when(a)]
            target = current if current in fits else (fits[0] if fits else None)
            if target is None:
                await asyncio.sleep(0.05)
                continue
            await asyncio.sleep(pause)
            response = await http.request(
                step.method, f"{ilert.url}/api/alerts/{target.id}/{step.action}", json=step.body
            )
            if response.status_code == 200:
                what = " ".join([step.action.replace("/", " "), *(step.body or {}).values()])
                view.say(
                    view.style(f"  operator: {step.method} {what} on alert #{target.id}", "35")
                )
                steps.pop(0)
                current = target


async def demo(
    duration: float | None,
    period: float,
    config_file: Path,
    out: Any = sys.stdout,
    own_machine: bool = False,
    series: AlarmTest | None = None,
) -> LiveView:
    """The packaging machine for the repository's config; with ``own_machine``, the config's
    own register map (``simulators.config_machine``), driven by ``series`` if given."""
    base = load_config(config_file)
    sumo = SumoSimulator()  # in memory: the demo writes nothing outside its temporary state
    sumo_url = await sumo.start()
    # the panel behind a login of its own, which ilert's alert action uses too
    password = secrets.token_urlsafe(9)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        status_port = int(probe.getsockname()[1])
    back = f"http://demo:{password}@127.0.0.1:{status_port}/ilert"
    ilert = demo_ilert(period, f"{sumo_url}/receiver/v1/http/demo", back)
    machine: ModbusDeviceSimulator | Machine
    if own_machine:
        machine = Machine(base, free_ports=True, bind="127.0.0.1")
        if series is not None:
            machine.values = scenario(series)
        ports = {name: port for name, (_, port) in (await machine.start()).items()}
        where = ", ".join(f"{name} on 127.0.0.1:{port}" for name, port in ports.items())
        story = (
            f"values from test {series.name!r}, repeating every {series.duration:g}s"
            if series is not None
            else "all values zero (drive them: --scenario FILE --test NAME)"
        )
    else:
        machine = ModbusDeviceSimulator(scenario="packaging", period=period)
        modbus_port = await machine.start()
        ports = {
            s.name: modbus_port
            for s in base.sources
            if isinstance(s, ModbusSource) and s.protocol == "modbus-tcp" and s.host in LOOPBACK
        }
        where = f"the packaging machine on 127.0.0.1:{modbus_port}"
        story = f"scenario repeats every {period:g}s"
    ilert_url = await ilert.start()
    with tempfile.TemporaryDirectory(prefix="ixon-agent-demo-") as state:
        config = with_the_loop(
            to_stand_ins(base, ports, ilert_url, Path(state)), ilert_url, status_port, password
        )
        view = LiveView(config, ilert, out, sumo)
        ilert.on_delivery = view.forwarded
        agent = Agent(config, observer=view)
        print(
            f"ixon-agent demo: {where} -> agent -> ilert stand-in on"
            f" {ilert_url} (open it in a browser) -> Sumo stand-in on {sumo_url}\n"
            f"config {config_file}: {len(config.alarms)} alarm(s) on "
            f"{', '.join(view.watched)}; {story}"
            + (f"; stopping after {duration:g}s" if duration else "; Ctrl-C stops"),
            file=out,
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        started = time.monotonic()
        await agent.start()
        if agent.status is not None and agent.status.port:
            print(
                f"agent status page: http://127.0.0.1:{agent.status.port}/"
                f" (login: demo, password {password})",
                file=out,
                flush=True,
            )
        person = asyncio.create_task(operator(ilert, view, min(0.4, period / 100)), name="operator")
        local = asyncio.create_task(at_the_machine(agent), name="at the machine")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration)
        finally:
            person.cancel()
            local.cancel()
            await asyncio.gather(person, local, return_exceptions=True)
            await agent.deliverer.drain(5.0)  # let the last ends arrive before the summary
            await agent.stop(grace=5.0)
            await ilert.settle()
            await machine.stop()
            await ilert.stop()
            await sumo.stop()
        print(view.summary(time.monotonic() - started), file=out, flush=True)
    return view


def run_demo(
    duration: float | None,
    period: float,
    verbose: bool,
    config: str | None = None,
    scenario_file: Path | None = None,
    test_name: str | None = None,
) -> int:
    """``ixon-agent demo``: the repository's config against the packaging machine, or with
    ``--config`` the user's own config against its own register map."""
    setup_logging(verbose)
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)
    path = config_path(config) if config else STARTER  # the repository's agent.toml
    series = None
    if scenario_file is not None:
        try:
            tests = load_tests(scenario_file).tests
        except TestFileError as exc:
            print(exc, file=sys.stderr)
            return 2
        chosen = [t for t in tests if test_name in (None, t.name)]
        if not chosen:
            print(f"--test: no test {test_name!r} in {scenario_file}", file=sys.stderr)
            return 2
        series = chosen[0]
    own = config is not None or series is not None
    asyncio.run(demo(duration, period, path, own_machine=own, series=series))
    return 0
