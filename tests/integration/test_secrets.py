"""No part of a webhook secret, in any encoding, leaves the agent: not in logs (text or
JSON), command output, metrics, the status page, nor in any file under ``state_dir``.

The receiver here is hostile in the most common way: it refuses the message (401) and
echoes everything it got, URL, query, decoded path and ``Authorization`` header included.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from agent.observe.logs import Redactor
from simulators._http import HttpServer
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config

PASSWORD = "pa55w0rd-Secret"
KEY = "Key/With/Slash-12345"  # percent-encoded in the URL: Key%2FWith%2FSlash-12345
TOKEN = "tok3nValue-99"
INTEGRATION_KEY = "il1api0SECRET42"


def url(base: str) -> str:
    host = base.removeprefix("http://")
    return f"http://alice:{PASSWORD}@{host}/hook/Key%2FWith%2FSlash-12345?token={TOKEN}&x=1"


def forms() -> list[str]:
    """Every way the secrets may be written (independent of the code under test)."""
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    encoded = "Key%2FWith%2FSlash-12345"
    return [
        PASSWORD, KEY, encoded, encoded.lower(), TOKEN, basic, INTEGRATION_KEY,
        "Key%252FWith%252FSlash-12345", "Slash-12345",
    ]  # fmt: skip


def leaks(text: str) -> list[str]:
    return [form for form in forms() if form.lower() in text.lower()]


class Echo(HttpServer):
    """Refuses every request with a 401 that echoes what it was sent."""

    def __init__(self) -> None:
        self.requests = 0
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.echo)
        super().__init__(app)

    async def echo(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.text()
        text = (
            f"denied {request.method} {request.url} path={request.path}"
            f" raw={request.raw_path} query={request.query_string}"
            f" auth={request.headers.get('Authorization')} body={body}"
        )
        return web.Response(status=401, text=text)


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    await server.start()
    yield server
    await server.stop()


def secret_config(tmp_path: Path, machine_port: int, echo_url: str) -> Path:
    text = CONFIG.replace(
        '[[webhooks]]\nname = "ilert"\nurl = "{ilert}/api/v1/events/ixon/il1ixon0demo"',
        f'[[webhooks]]\nname = "ilert"\nurl = "{url(echo_url)}"',
    )
    text += f"""
[[webhooks]]
name = "events"
url = "{echo_url}/api/events"
format = "ilert-events"
integration_key = "{INTEGRATION_KEY}"
"""
    path = write_config(tmp_path, text, port=machine_port)
    path.chmod(0o600)
    return path


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def test_the_redactor_covers_every_encoding() -> None:
    redact = Redactor([url("http://127.0.0.1:9"), INTEGRATION_KEY])
    for form in forms():
        assert redact(f"<{form}>") == "<***>", form
    assert redact("POST /hook ok, user alice, 12345") == "POST /hook ok, user alice, 12345"


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_part_of_a_secret_reaches_logs_output_metrics_pages_or_files(
    tmp_path: Path, machine: ModbusDeviceSimulator, echo: Echo, log_format: str
) -> None:
    config = secret_config(tmp_path, machine.port, echo.url)
    await machine.hold(oil_temp=95.0)
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(config), "--verbose",
            "--log-format", log_format, stdout=log, stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        await wait_for(
            lambda: "rejected with HTTP 401" in log_path.read_text()
            and log_path.read_text().count("dead-lettered") >= 2,
            timeout=30, what="both webhooks refused",
        )  # fmt: skip
        port = re.search(r"health on http://127\.0\.0\.1:(\d+)/", log_path.read_text())
        assert port is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port.group(1)}") as http:
            pages = [(await http.get(p)).text for p in ("/", "/metrics", "/readyz")]
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    log = log_path.read_text()
    assert echo.requests >= 2 and "Traceback" not in log
    if log_format == "json":
        assert all(json.loads(line) for line in log.splitlines())
    code, send_test = await cli("send-test", "--config", str(config), "--timeout", "10")
    assert code == 1 and "rejected" in send_test
    code, outbox = await cli("outbox", "--config", str(config))
    assert code == 0 and "HTTP 401" in outbox and "denied POST" in outbox
    assert "***" in outbox  # the echoed answer is kept, with the secrets cut out
    for name, text in [("log", log), ("send-test", send_test), ("outbox", outbox)] + [
        (f"page {i}", page) for i, page in enumerate(pages)
    ]:
        assert not leaks(text), f"{name} leaks {leaks(text)}:\n{text}"
    for file in (tmp_path / "state").iterdir():
        data = file.read_bytes().decode("latin-1")
        assert not leaks(data), f"{file.name} holds {leaks(data)}"


HOST = "k3y0sub.receiver.example"  # some receivers put their key in a subdomain


async def test_an_unreachable_webhook_is_named_and_its_host_never_shown(
    tmp_path: Path,
    machine: ModbusDeviceSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The host name resolves to 127.0.0.1 (only the resolver is stood in for: no test may
    ask the network), where nothing listens: a real refused connection, whose library
    error names the host and port."""
    import logging
    import socket

    from agent.cli import main
    from agent.config import load_config
    from agent.runtime.service import Agent

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connection refused
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kw: Any) -> Any:
        return real("127.0.0.1" if host == HOST else host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    caplog.set_level(logging.DEBUG)
    path = write_config(tmp_path, port=machine.port, ilert=f"http://{HOST}:{port}")
    path.chmod(0o600)
    await machine.hold(oil_temp=95.0)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await wait_for(lambda: agent.store.pending() and agent.store.pending()[0].attempts,
                       what="a failed attempt")  # fmt: skip
        [entry] = agent.store.pending()
        assert entry.last_error == "ConnectError: connection refused"
        async with httpx.AsyncClient(base_url=agent.status.url if agent.status else "") as http:
            page = (await http.get("/")).text
    finally:
        await agent.stop()
    assert "webhook ilert: start of 'Oil temperature high'" in caplog.text
    assert main(["outbox", "--config", str(path)]) == 0
    # a command's own event loop: in a thread of its own
    assert (
        await asyncio.to_thread(main, ["send-test", "--config", str(path), "--timeout", "2"]) == 1
    )
    out = capsys.readouterr()
    assert "webhook ilert: not delivered within 2 s" in out.out
    texts = [("log", caplog.text), ("page", page), ("commands", out.out + out.err)]
    texts += [(f.name, f.read_bytes().decode("latin-1")) for f in (tmp_path / "state").iterdir()]
    for name, text in texts:
        for part in (HOST, "k3y0sub", f":{port}"):
            assert part not in text, f"{name} shows {part}"
