"""Running an aiohttp app on loopback, in-process or from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from agent.observe.logs import one_line_logger
from agent.observe.web import WebServer


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def strict_json(text: str) -> Any:
    """Parse as the real services do: ``NaN`` and ``Infinity`` (Python's extension) fail."""
    return json.loads(text, parse_constant=_no_constant)


async def read_json(request: web.Request) -> Any:
    return strict_json(await request.text())


class HttpServer(WebServer):
    """An aiohttp app bound to ``host:port`` (port 0: the OS chooses)."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(app, one_line_logger(f"simulators.{type(self).__name__}"))


async def serve_forever(server: HttpServer, host: str, port: int, banner: str) -> None:
    url = await server.start(host, port)
    print(f"{banner} on {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def parser(prog: str, doc: str | None, port: int) -> argparse.ArgumentParser:
    """The command line every simulator shares: ``--host`` and ``--port``."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    return p


def run(server: HttpServer, host: str, port: int, banner: str) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(server, host, port, banner))
