"""The status page as the alarm panel at the machine, in headless Chromium at phone and
desktop sizes: alarms in every state with their values, conditions and instructions, the
history with delivery per webhook, sparklines, local time, and no sideways scrolling.

Set PANEL_SCREENSHOTS=DIR to keep the screenshots (they go to the test's tmp dir anyway).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent import cli
from agent.config import load_config
from agent.runtime import service
from agent.runtime.service import Agent
from simulators.ilert import IlertSimulator
from simulators.modbus_device import ModbusDeviceSimulator
from tests.browser import DESKTOP, PHONE, browser
from tests.conftest import CHROMIUM, CONFIG, wait_for, write_config

PANEL = (
    CONFIG.replace('timeout = "1s"', 'timeout = "5s"')
    + """
[[alarms]]
name = "Pressure low"
variable = "plc.pressure"
condition = "<"
threshold = 2.0
severity = "medium"
on_delay = "1h"
instructions = "Check the supply valve V3 and the filter."

[[alarms]]
name = "Motor stopped"
variable = "plc.motor_running"
condition = "=="
threshold = false
severity = "low"

[[alarms]]
name = "Pressure high"
variable = "plc.pressure"
condition = ">"
threshold = 8.0
severity = "medium"

[[alarms]]
name = "Oil temperature warning"
variable = "plc.oil_temp"
condition = ">"
threshold = 60.0
severity = "low"
enabled = false
"""
)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian package: chromium)")


@pytest.fixture
async def panel(
    tmp_path: Path,
    machine: ModbusDeviceSimulator,
    ilert: IlertSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Agent]:
    """An agent with one alarm in each state and an occurrence in its history."""
    monkeypatch.setattr(service, "TREND_STEP", 0.1)  # sparkline points without waiting
    path = write_config(tmp_path, PANEL, port=machine.port, ilert=ilert.url)
    await machine.hold(oil_temp=90.0, pressure=4.0, motor_running=True)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await wait_for(lambda: len(ilert.received) == 1, what="the first start")
        await machine.hold(oil_temp=70.0)
        await wait_for(lambda: len(ilert.received) == 2, what="its end")
        for temp in (82.0, 86.5, 91.5):
            await machine.hold(oil_temp=temp)
            await wait_for(lambda t=temp: agent.values.get("plc.oil_temp") == t, what=f"{temp}")
        await wait_for(lambda: len(ilert.received) == 3, what="the second start")
        code = cli.main(
            ["shelve", "Motor stopped", "--for", "2h", "--reason", "belt being replaced",
             "--config", str(path)]
        )  # fmt: skip
        assert code == 0
        motor = next(s for s in agent.engine.states if s.rule.name == "Motor stopped")
        await wait_for(lambda: motor.shelf is not None, what="the agent to take the shelf")
        await machine.hold(pressure=1.5, motor_running=False)
        await wait_for(
            lambda: (
                {a.name: a.state.value for a in agent.snapshot().alarms}
                == {
                    "Oil temperature high": "active",
                    "Pressure low": "pending",
                    "Motor stopped": "active",
                    "Pressure high": "normal",
                    "Oil temperature warning": "normal",
                    "Source plc offline": "normal",
                }
            ),
            what="one alarm in each state",
        )
        await wait_for(lambda: agent.store.pending_count() == 0, what="an empty outbox")
        assert len(ilert.received) == 3  # the shelved alarm's start was not sent
        yield agent
    finally:
        await agent.stop()


def save(png: bytes, path: Path) -> None:
    path.write_bytes(png)
    keep = os.environ.get("PANEL_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


async def test_the_panel_at_phone_and_desktop_sizes(panel: Agent, tmp_path: Path) -> None:
    assert panel.status is not None
    url = f"http://127.0.0.1:{panel.status.port}/"
    async with browser(tmp_path / "profile") as page:
        await page.call("Emulation.setTimezoneOverride", timezoneId="Asia/Tokyo")
        for size, name in ((PHONE, "phone"), (DESKTOP, "desktop")):
            await page.open(url, size)
            save(await page.screenshot(), tmp_path / f"panel-{name}.png")
            # nothing scrolls sideways
            width = await page.eval("document.documentElement.scrollWidth")
            assert width <= size[0], f"{name}: the page is {width} px wide in {size[0]} px"
            cards = await page.eval(
                "[...document.querySelectorAll('article.card')].map(c => [c.className,"
                " c.querySelector('h3').firstChild.textContent.trim(), c.innerText])"
            )
            by_name = {title: (cls, text) for cls, title, text in cards}
            heading = await page.eval("document.getElementById('alarms').innerText")
            assert heading == "Alarms: 2 active, 1 pending, 1 shelved"
            # active first, coloured by severity, with its value, condition and instructions
            assert cards[0][1] == "Oil temperature high"
            cls, text = by_name["Oil temperature high"]
            assert "sev-high" in cls and "st-active" in cls
            assert "Oil temperature = 91.5 degC" in text and "condition: > 80" in text
            assert "Check cooling pump P1." in text
            cls, text = by_name["Pressure low"]
            assert "sev-medium" in cls and "st-pending" in cls
            assert "pressure = 1.5 bar" in text and "starts in" in text
            assert "Check the supply valve V3" in text
            cls, text = by_name["Motor stopped"]
            assert "st-active" in cls and "sev-low" in cls
            assert "ACTIVE SHELVED" in text.upper() and "belt being replaced" in text
            assert "Pressure high" not in by_name  # normal: in the folded list
            colours = await page.eval(
                "Object.fromEntries([...document.querySelectorAll('article.card')].map(c =>"
                " [c.querySelector('h3').firstChild.textContent.trim(),"
                " getComputedStyle(c).borderLeftColor]))"
            )
            assert len(set(colours.values())) == 3, colours  # high, medium, low differ
            # a sparkline of the oil temperature's recent values
            points = await page.eval(
                "document.querySelector('article.sev-high polyline').getAttribute('points')"
            )
            assert len(points.split()) >= 3
            out = await page.eval("document.getElementById('oos').innerText")
            assert "Oil temperature warning" in out and "out of service" in out
            # the history: the ended occurrence and the current one, delivered to ilert
            history = await page.eval(
                "[...document.querySelectorAll('#history li')].map(li => li.innerText)"
            )
            oil = [h for h in history if h.startswith("Oil temperature high")]
            assert len(oil) == 2 and len(history) == 2, history  # nothing of the shelved one
            assert "still active" in oil[0] and "ilert: delivered" in oil[0]
            assert " to " in oil[1] and "ilert: delivered" in oil[1]
            # values with labels and a header
            header = await page.eval("document.querySelector('#values thead').innerText")
            assert "Variable" in header and "Value" in header
            # local time: the browser's zone, not UTC
            shown, local = await page.eval(
                "(t => [t.textContent, new Date(t.getAttribute('datetime')).toLocaleString()])"
                "(document.querySelector('#summary time'))"
            )
            assert shown == local and "UTC" not in shown
            assert "il1ixon0demo" not in await page.eval("document.documentElement.outerHTML")
    assert (tmp_path / "panel-phone.png").stat().st_size > 10_000


async def test_login_and_acknowledge_in_a_browser_at_phone_and_desktop_sizes(
    tmp_path: Path, machine: ModbusDeviceSimulator
) -> None:
    """The Acknowledge button on an active alarm's card, behind the login; the card after."""
    import base64

    from tests.integration.test_login import PASSWORD, with_users

    agent = Agent(load_config(with_users(tmp_path, machine.port), environ={}))
    await agent.start()
    try:
        assert agent.status is not None
        url = f"http://127.0.0.1:{agent.status.port}/"
        await machine.hold(oil_temp=91.5)
        await wait_for(lambda: agent.store.history(5), what="the occurrence")
        async with browser(tmp_path / "profile") as page:
            await page.open(url, PHONE)  # no login: 401, and nothing of the machine
            assert "Oil temperature" not in await page.eval("document.body.innerText")
            login = base64.b64encode(f"jane:{PASSWORD}".encode()).decode()
            await page.call("Network.enable")
            await page.call(
                "Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {login}"}
            )
            for size, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
                await page.open(url, size)
                card = "document.querySelector('article.sev-high')"
                assert "not acknowledged" in await page.eval(f"{card}.innerText")
                width = await page.eval("document.documentElement.scrollWidth")
                assert width <= size[0], f"{name}: {width} px wide in {size[0]} px"
                save(await page.screenshot(), tmp_path / f"ack-before-{name}.png")
                if name == "phone":  # acknowledge once, with a comment, by the form
                    await page.eval(
                        f"{card}.querySelector('input[name=comment]').value = 'on my way';"
                        f" {card}.querySelector('form.ack button').click()"
                    )
                    await wait_for(
                        lambda: agent.store.history(5)[0].acked_by == "jane", what="the ack"
                    )
            for size, name in ((PHONE, "phone"), (DESKTOP, "desktop")):
                await page.open(url, size)
                text = await page.eval("document.querySelector('article.sev-high').innerText")
                assert "acknowledged by jane" in text and "on my way" in text
                assert await page.eval("document.querySelector('form.ack')") is None
                save(await page.screenshot(), tmp_path / f"ack-after-{name}.png")
    finally:
        await agent.stop()
