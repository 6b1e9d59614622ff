"""A scriptable webhook receiver on 127.0.0.1, for delivery fault tests.

Each request takes the next step of ``script`` (then ``default``): an HTTP status to answer
with (2xx records the body), "reset" (close the connection without an answer), or "hang"
(never answer). Headers for a step go in ``headers``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from simulators._http import HttpServer

Step = int | str


class Receiver(HttpServer):
    def __init__(self, script: list[Step] | None = None, default: Step = 200) -> None:
        self.script = list(script or [])
        self.default: Step = default
        self.decide: Callable[[dict[str, Any]], Step | None] | None = None  # per-body override
        self.headers: dict[str, str] = {}
        self.bodies: list[dict[str, Any]] = []  # accepted, in arrival order
        self.attempts: list[tuple[float, dict[str, Any]]] = []  # every request, with its time
        self.pings: list[tuple[str, str]] = []  # (method, path) of non-POST requests
        self.request_headers: list[dict[str, str]] = []  # of every POST, in arrival order
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.ping)
        super().__init__(app)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.request_headers.append(dict(request.headers))
        body = await request.json()
        self.attempts.append((time.monotonic(), body))
        step = self.decide(body) if self.decide else None
        if step is None:
            step = self.script.pop(0) if self.script else self.default
        if step == "hang":
            await asyncio.Event().wait()
        if step == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        status = int(step)
        if 200 <= status < 300:
            self.bodies.append(body)
        payload: dict[str, Any] = {"status": status}
        if status == 400:
            payload["code"] = "NO_OPEN_ALERT_WITH_KEY"
        return web.json_response(payload, status=status, headers=self.headers)

    async def ping(self, request: web.Request) -> web.Response:
        self.pings.append((request.method, request.path))
        return web.Response(status=202)
