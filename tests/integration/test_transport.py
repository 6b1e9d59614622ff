"""The HTTP transport sends what httpx built, byte for byte, and names failures as httpx
does: against a real server on 127.0.0.1."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from agent.delivery.post import make_http_client
from simulators._http import HttpServer


class Recorder(HttpServer):
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        super().__init__(app)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            {"raw_path": request.raw_path, "auth": request.headers.get("Authorization", ""),
             "agent": request.headers.get("User-Agent", ""), "body": await request.text(),
             "type": request.headers.get("Content-Type", "")}
        )  # fmt: skip
        if request.path.endswith("/gzip"):
            body = gzip.compress(b'{"ok": true}')
            return web.Response(body=body, headers={"Content-Encoding": "gzip"}, status=202)
        return web.Response(status=202, text="accepted", headers={"Retry-After": "3"})


async def test_what_is_sent_and_what_comes_back() -> None:
    server = Recorder()
    base = await server.start()
    try:
        async with make_http_client() as http:
            url = base.replace("http://", "http://alice:s3cret@") + "/hook/Key%2FSlash?token=t"
            reply = await http.post(url, json={"a": 1})
            assert reply.status_code == 202 and reply.text == "accepted"
            assert reply.headers["Retry-After"] == "3"
            gz = await http.post(base + "/x/gzip", json={})
            assert gz.json() == {"ok": True}  # decoded, as httpx's own transport does
    finally:
        await server.stop()
    first = server.seen[0]
    assert first["raw_path"] == "/hook/Key%2FSlash?token=t"  # the escaped slash stays escaped
    assert first["auth"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert first["agent"].startswith("ixon-agent/") and first["body"] == '{"a":1}'
    assert first["type"] == "application/json"


async def test_failures_are_named_as_httpx_names_them() -> None:
    server = Recorder()
    base = await server.start()
    await server.stop()  # nothing listens there now
    async with make_http_client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(base + "/hook", json={})


PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


async def test_delivery_sends_the_bytes_httpx_would_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivery posts straight to the transport: the same body bytes, agent, content type
    and basic auth from the URL as httpx's client, and the escaped slash stays escaped."""
    import json

    from agent.config import Webhook
    from agent.delivery.deliverer import Deliverer
    from agent.outbox.store import Message, Store

    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    server = Recorder()
    base = await server.start()
    url = base.replace("http://", "http://alice:s3cret@") + "/hook/Key%2FSlash?token=t"
    webhook = Webhook.model_validate({"name": "w", "url": url})
    body = {"text": "Öltemperatur 84.2 °C", "n": [1, 2.5, None], "ok": True}
    store = Store(tmp_path / "agent.db")
    store.record([], [Message("w", "occ", "start", "high", "start", body)])
    async with make_http_client() as http:
        deliverer = Deliverer(store, [webhook], http)
        assert deliverer.poster.direct is not None  # the fast path is the one under test
        deliverer.start()
        try:
            assert await deliverer.drain(10)
        finally:
            await deliverer.stop()
            await server.stop()
            store.close()
    [seen] = server.seen
    expected = httpx.Request("POST", "http://x/", json=body).content.decode()
    assert seen["body"] == expected and json.loads(seen["body"]) == body
    assert seen["raw_path"] == "/hook/Key%2FSlash?token=t"
    assert seen["auth"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert seen["agent"].startswith("ixon-agent/") and seen["type"] == "application/json"


def test_a_proxy_in_the_environment_sends_everything_through_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An edge box behind a proxy: the direct path would bypass it, so it is not used."""
    from agent.delivery.transport import HttpClient

    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    assert HttpClient("t").direct is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert HttpClient("t").direct is None
