"""Shared fixtures: real simulators on 127.0.0.1 (OS-chosen ports) and config files."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from agent.delivery.post import make_http_client
from simulators.ilert import IlertSimulator, recommended
from simulators.modbus_device import ModbusDeviceSimulator
from tests.receiver import Receiver

# a slow or busy CI machine must not turn a property into a timing test
settings.register_profile("ci", deadline=None)
settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
#: a headless browser for the page tests, if this machine has one
CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)

#: A small config against the simulated machine; {port} and {ilert} are filled in.
CONFIG = """
[agent]
name = "Test line"
public_id = "TestLine0001"
company_id = "1111-2222-3333-4444-5555"
company_name = "ACME Machines"
state_dir = "state"

[[sources]]
name = "plc"
host = "127.0.0.1"
port = {port}
poll_interval = "{poll}"
timeout = "1s"

  [[sources.variables]]
  name = "oil_temp"
  label = "Oil temperature"
  register = "holding"
  address = 100
  type = "float"
  unit = "degC"

  [[sources.variables]]
  name = "pressure"
  register = "holding"
  address = 102
  type = "int"
  factor = 0.01
  unit = "bar"

  [[sources.variables]]
  name = "motor_running"
  register = "coil"
  address = 0
  type = "bool"

[[alarms]]
name = "Oil temperature high"
variable = "plc.oil_temp"
condition = ">"
threshold = 80.0
severity = "high"
on_delay = "{on_delay}"
instructions = "Check cooling pump P1."

[[webhooks]]
name = "ilert"
url = "{ilert}/api/v1/events/ixon/il1ixon0demo"
user_id = "UsrWebhook01"
notify_ended = true

[status]
port = 0
"""


def ilert_webhook(url: str) -> str:
    """A ``[[webhooks]]`` to the ilert stand-in's IXON source at ``url``, and the status
    listener on a free port: the tail of a test's config."""
    return f"""
[[webhooks]]
name = "ilert"
url = "{url}/api/v1/events/ixon/il1ixon0demo"
user_id = "UsrWebhook01"

[status]
port = 0
"""


def write_config(directory: Path, text: str = CONFIG, **fields: Any) -> Path:
    values = {"port": 5020, "ilert": "http://127.0.0.1:8025", "poll": "100ms", "on_delay": "0s"}
    values.update(fields)
    path = directory / "agent.toml"
    path.write_text(text.format(**values))
    return path


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A command run in-process sets up logging for the process; undo it after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {
        name: logging.getLogger(name).level
        for name in ("httpx", "pymodbus", "apscheduler", "asyncua", "snap7")
    }
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture
async def machine() -> AsyncIterator[ModbusDeviceSimulator]:
    sim = ModbusDeviceSimulator(scenario="idle")
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A scriptable webhook receiver (``tests.receiver``)."""
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The agent's own HTTP client, as delivery uses it."""
    async with make_http_client() as client:
        yield client


@pytest.fixture
async def ilert() -> AsyncIterator[IlertSimulator]:
    """ilert set up as the README recommends (the IXON source groups by occurrence)."""
    sim = IlertSimulator(recommended())
    await sim.start()
    yield sim
    await sim.stop()
