"""The whole chain: a real pymodbus server, the agent, a real HTTP receiver, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from agent.config import load_config
from agent.runtime.service import Agent
from simulators.ilert import IlertSimulator, recommended
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import wait_for, write_config

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_register_change_becomes_ixon_webhook_start_and_end(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    path = write_config(tmp_path, port=machine.port, ilert=ilert.url, on_delay="500ms")
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await wait_for(lambda: agent.values.get("plc.oil_temp") == 65.0, what="first poll")
        changed = time.monotonic()
        await machine.hold(oil_temp=85.5)
        await wait_for(lambda: ilert.received, what="start message")
        assert time.monotonic() - changed >= 0.5, "the on-delay was not respected"
        start = ilert.received[0]

        await machine.hold(oil_temp=70.0)
        await wait_for(lambda: len(ilert.received) == 2, what="end message")
        end = ilert.received[1]
    finally:
        await agent.stop()

    assert len(start["publicId"]) == 24 and start["publicId"] != end["publicId"]
    assert ISO_MS.match(start["createdOn"])
    assert start["read"] is False
    assert start["systemLabel"] == "alarm-high"
    assert start["systemResult"] == []
    short = start["shortContent"]
    assert short["toTranslate"] is False
    assert short["code"] == "alarm-active"
    assert short["alarmName"] == short["name"] == "Oil temperature high"
    assert short["agentName"] == "Test line"
    assert short["companyName"] == "ACME Machines"
    assert ISO_MS.match(short["occurredOn"])
    long_ = start["longContent"]
    assert long_["code"] == "alarm-active"
    assert long_["name"] == "Oil temperature high"
    assert long_["instructions"] == "Check cooling pump P1."
    info = {item["type"]: item for item in long_["extraInformation"]}
    assert info["value"] == {
        "type": "value",
        "toTranslate": False,
        "key": "Oil temperature",
        "value": 85.5,
    }
    assert info["threshold"]["value"] == "> 80.0"
    assert info["unit"]["value"] == "degC"
    assert start["user"] == {"publicId": "UsrWebhook01"}
    assert start["company"] == {"publicId": "1111-2222-3333-4444-5555", "name": "ACME Machines"}
    assert start["agent"] == {"publicId": "TestLine0001", "name": "Test line"}
    alarm = start["alarm"]
    assert len(alarm["publicId"]) == 12 and len(alarm["occurrenceId"]) == 12
    assert (alarm["name"], alarm["severity"], alarm["state"]) == (
        "Oil temperature high",
        "high",
        "active",
    )
    assert alarm["occurredOn"] == short["occurredOn"] and alarm["endedOn"] is None

    assert end["shortContent"]["code"] == end["longContent"]["code"] == "alarm-ended"
    assert end["alarm"]["state"] == "ended"
    assert end["alarm"]["publicId"] == alarm["publicId"]
    assert end["alarm"]["occurrenceId"] == alarm["occurrenceId"]
    assert end["alarm"]["occurredOn"] == alarm["occurredOn"]
    assert end["alarm"]["endedOn"] >= alarm["occurredOn"]
    assert {i["type"]: i["value"] for i in end["longContent"]["extraInformation"]}["value"] == 70.0

    [alert] = ilert.alerts  # the stand-in grouped start and end into one alert
    assert alert.status == "RESOLVED" and alert.alert_key == alarm["occurrenceId"]
    assert alert.summary == "Oil temperature high (Test line)" and alert.priority == "HIGH"


async def test_unreachable_plc_does_not_stop_the_agent(
    tmp_path: Path, ilert: IlertSimulator
) -> None:
    machine = ModbusDeviceSimulator(scenario="idle")
    port = await machine.start()
    await machine.stop()  # nothing listens on this port now
    agent = Agent(load_config(write_config(tmp_path, port=port, ilert=ilert.url), environ={}))
    await agent.start()
    try:
        await wait_for(lambda: agent.pollers["plc"].link.failures >= 1, what="a failed connect")
        await machine.start(port=port)  # the PLC comes back on the same port
        await wait_for(lambda: "plc.oil_temp" in agent.values, timeout=15, what="reconnect")
    finally:
        await agent.stop()
        await machine.stop()


async def run_cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_read_json(tmp_path: Path, machine: ModbusDeviceSimulator) -> None:
    await machine.hold(oil_temp=71.5, pressure=3.25, motor_running=True)
    path = write_config(tmp_path, port=machine.port)
    code, out, err = await run_cli("read", "--json", "--config", str(path))
    assert code == 0, err
    assert json.loads(out) == {
        "plc.oil_temp": 71.5,
        "plc.pressure": 3.25,
        "plc.motor_running": True,
    }


async def test_read_reports_an_unreachable_source(tmp_path: Path) -> None:
    machine = ModbusDeviceSimulator(scenario="idle")
    port = await machine.start()
    await machine.stop()
    code, out, err = await run_cli("read", "--config", str(write_config(tmp_path, port=port)))
    assert code == 1
    assert "plc.oil_temp" in out and "(not read)" in out
    assert "source plc: not connected" in err


async def test_run_stops_cleanly_on_sigterm_and_never_logs_the_key(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    path = write_config(tmp_path, port=machine.port, ilert=ilert.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(path), "--verbose",
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    await machine.hold(oil_temp=95.0)
    await wait_for(lambda: ilert.alerts, timeout=30, what="an alert from the agent process")
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log
    assert "webhook ilert: delivered start of 'Oil temperature high'" in log
    assert "agent stopped" in log and "Traceback" not in log
    assert "il1ixon0demo" not in log


async def test_alarm_reaches_sumo_as_ilert_lifecycle_events(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    from simulators.sumo import SumoSimulator

    sumo = SumoSimulator()
    sumo_url = await sumo.start()
    ilert = IlertSimulator(recommended(), forward=f"{sumo_url}/receiver/v1/http/demo")
    await ilert.start()
    agent = Agent(
        load_config(write_config(tmp_path, port=machine.port, ilert=ilert.url), environ={})
    )
    await agent.start()
    try:
        await machine.hold(oil_temp=92.0)
        await wait_for(lambda: ilert.alerts, what="an ilert alert")
        await machine.hold(oil_temp=60.0)
        await wait_for(
            lambda: len(sumo.by_category("webhook/ilert")) == 2, what="two lifecycle events"
        )
    finally:
        await agent.stop()
        await ilert.stop()
        await sumo.stop()
    created, resolved = (json.loads(m["message"]) for m in sumo.by_category("webhook/ilert"))
    assert (created["eventType"], resolved["eventType"]) == ("alert-created", "alert-resolved")
    assert (
        created["summary"] == "Oil temperature high (Test line)" and created["priority"] == "HIGH"
    )
    assert created["alertKey"] == resolved["alertKey"] == ilert.received[0]["alarm"]["occurrenceId"]
    assert resolved["status"] == "RESOLVED" and created["alertSource"]["name"] == "IXON Cloud"


#: the Sumo Logic iLert app's own parse: ``| json "id","summary",...`` (its log query)
SUMO_ILERT_APP_FIELDS = (
    "id", "summary", "details", "reportTime", "status", "eventType", "priority",
    "alertSource.name", "assignedTo.username", "assignedTo.email",
    "responders[0].user.username", "responders[0].user.email",
)  # fmt: skip
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def sumo_json(message: str, paths: tuple[str, ...]) -> dict[str, Any]:
    """Sumo's ``json`` operator: each path (``a.b``, ``a[0].b``) from one JSON message;
    a path that is missing is missing from the result (Sumo then drops the message)."""
    document = json.loads(message)
    found: dict[str, Any] = {}
    for path in paths:
        node: Any = document
        for name, index in _SEGMENT.findall(path):
            if name and isinstance(node, dict) and name in node:
                node = node[name]
            elif index and isinstance(node, list) and int(index) < len(node):
                node = node[int(index)]
            else:
                break
        else:
            found[path] = node
    return found


async def test_demo_runs_the_whole_chain(tmp_path: Path, monkeypatch: Any) -> None:
    import io

    from simulators.ilert import TRIGGER_TYPES
    from tests.conftest import REPO
    from workbench.demo import demo

    monkeypatch.chdir(tmp_path)  # anything the demo wrote outside its temporary state shows
    out = io.StringIO()
    view = await demo(duration=13.0, period=12.0, config_file=REPO / "agent.toml", out=out)
    text = out.getvalue()
    print(text)  # shown with a failure
    assert view.counts["alarm starts"] >= 2 and view.counts["messages delivered"] >= 2
    assert (
        "ALARM START [medium] Machine fault: Lubrication" in text and "operator: PUT accept" in text
    )
    # the loop: ilert's accept acknowledges at the machine, and the machine's acknowledgement
    # of an Events API alarm is an ACCEPT in ilert
    assert re.search(
        r"ilert -> agent: alert-acknowledged of '[^']+' by .+: acknowledged here", text
    )
    assert view.counts["accepted in ilert, acknowledged here"] >= 1
    assert "from ilert to the machine:" in text and "from the machine to ilert:" in text
    assert os.listdir(tmp_path) == []
    assert view.sumo is not None
    received = view.sumo.by_category("webhook/ilert")
    events = [json.loads(m["message"]) for m in received]
    seen = {e["eventType"] for e in events}
    assert seen == set(TRIGGER_TYPES), f"missing: {set(TRIGGER_TYPES) - seen}"
    for kind in TRIGGER_TYPES:  # the summary counts them by ilert's names
        count = sum(e["eventType"] == kind for e in events)
        assert re.search(rf"^    {kind} +{count}$", text, re.M), kind
    for m, e in zip(received, events, strict=True):
        fields = sumo_json(m["message"], SUMO_ILERT_APP_FIELDS)
        # ilert leaves out assignedTo and responders only while nobody is assigned
        expected = set(SUMO_ILERT_APP_FIELDS) if e["responders"] else {
            f for f in SUMO_ILERT_APP_FIELDS if not f.startswith(("assignedTo", "responders"))
        }  # fmt: skip
        assert set(fields) == expected, (e["eventType"], set(expected) - set(fields))
        assert fields["alertSource.name"] == "IXON Cloud" and fields["id"] == e["id"]


async def test_polling_resumes_when_the_wall_clock_is_set_back(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator, caplog: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    agent = Agent(
        load_config(write_config(tmp_path, port=machine.port, ilert=ilert.url), environ={})
    )
    await agent.start()
    try:
        stats = agent.pollers["plc"].stats
        await wait_for(lambda: stats.cycles >= 2, what="polling")
        assert agent.scheduler is not None
        # what APScheduler does after the clock goes back an hour: next run an hour away
        agent.scheduler.modify_job("poll:plc", next_run_time=datetime.now(UTC) + timedelta(hours=1))
        cycles = stats.cycles
        await wait_for(lambda: stats.cycles > cycles + 2, timeout=15, what="polling again")
    finally:
        await agent.stop()
    assert "source plc: no poll cycle for" in caplog.text


def _reject_constant(name: str) -> None:
    raise AssertionError(f"{name} in what should be strict JSON")


async def test_read_json_is_strict_json_with_null_for_nan(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    await machine.hold(oil_temp=float("nan"))
    code, out, err = await run_cli(
        "read", "--json", "--config", str(write_config(tmp_path, port=machine.port))
    )
    assert code == 0, err
    assert json.loads(out, parse_constant=_reject_constant)["plc.oil_temp"] is None
    await machine.hold(oil_temp=float("-inf"))
    code, out, err = await run_cli(
        "read", "--json", "--config", str(write_config(tmp_path, port=machine.port))
    )
    assert json.loads(out, parse_constant=_reject_constant)["plc.oil_temp"] is None


async def test_an_infinite_value_pages_with_null_not_invalid_json(
    tmp_path: Path, machine: ModbusDeviceSimulator, ilert: IlertSimulator
) -> None:
    """An alarm on +inf still reaches ilert: the stand-in parses as strictly as ilert does."""
    agent = Agent(
        load_config(write_config(tmp_path, port=machine.port, ilert=ilert.url), environ={})
    )
    await agent.start()
    try:
        await machine.hold(oil_temp=float("inf"))
        await wait_for(lambda: ilert.received, what="the alarm message")
    finally:
        await agent.stop()
    [value] = [
        i["value"]
        for i in ilert.received[0]["longContent"]["extraInformation"]
        if i["type"] == "value"
    ]
    assert value is None and ilert.alerts[0].status == "PENDING"
