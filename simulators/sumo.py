"""A Sumo Logic HTTP Logs source stand-in: where ilert's lifecycle webhooks end up.

Run ``python -m simulators.sumo [--host 127.0.0.1] [--port 8030] [--code demo=webhook/ilert]
[--store sumo.ndjson]``.

- ``POST /receiver/v1/http/{code}`` (or ``/receiver/v1/http`` with ``X-Sumo-Token``): 401
  for an unknown code, 200 with an empty body otherwise; ``Content-Encoding: gzip`` or
  ``deflate`` accepted. Each code is one HTTP source with its own source category
  (``--code CODE=CATEGORY``; ``demo`` is ``webhook/ilert``). ``X-Sumo-Category``,
  ``X-Sumo-Name`` and ``X-Sumo-Host`` override the source's settings for one request;
  ``X-Sumo-Fields: k=v,k2=v2`` is kept as fields.
- Message boundaries as Sumo infers them: a body that is one JSON document is one message,
  newlines inside it included; any other body is one message per non-empty line.
- ``GET /api/messages[?category=C][&name=N][&host=H]``: what was received, as a JSON list of
  ``{message, category, name, host, fields, receivedAt}``.
- Fault switch: ``--fault 408|429|5xx`` (``--fault-count``) or ``POST /admin/faults`` with
  ``{"mode": "429", "count": 2}``. Like the real one, the stand-in keeps nothing of a request
  it answers 408, 429 or 5xx: the sender must send it again.
- ``--store FILE``: messages are appended to an NDJSON file and loaded again at start.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.common.times import iso
from simulators._http import HttpServer, parser, run, strict_json

DEFAULT_CODE = "demo"
DEFAULT_SOURCES: dict[str, str | None] = {DEFAULT_CODE: "webhook/ilert"}
FAULT_STATUSES = {"408": "Request Timeout", "429": "Too Many Requests"}


def split_messages(text: str) -> list[str]:
    """Sumo's inferred boundaries: one JSON document is one message, else one per line."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            strict_json(stripped)
        except ValueError:
            pass
        else:
            return [stripped]
    return [line for line in text.splitlines() if line.strip()]


FAULT_MODES = '{"mode": "none" | "408" | "429" | "500".."599"'


def valid_fault(mode: str) -> bool:
    return mode in ("none", *FAULT_STATUSES) or (mode.isdigit() and 500 <= int(mode) <= 599)


def parse_fields(header: str) -> dict[str, str]:
    """``X-Sumo-Fields: k=v,k2=v2``; an entry without ``=`` is ignored, as Sumo does."""
    fields = {}
    for part in header.split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


class SumoSimulator(HttpServer):
    def __init__(
        self, sources: Mapping[str, str | None] | None = None, store: Path | None = None
    ) -> None:
        #: HTTP source code -> its source category
        self.sources = dict(DEFAULT_SOURCES if sources is None else sources)
        self.store = store
        self.messages: list[dict[str, Any]] = []
        self.fault: dict[str, Any] = {"mode": "none", "count": None}
        if store is not None and store.exists():
            with store.open(encoding="utf-8") as lines:
                self.messages = [json.loads(line) for line in lines if line.strip()]
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.add_routes(
            [
                web.post("/receiver/v1/http/{code}", self.receive),
                web.post("/receiver/v1/http", self.receive),
                web.get("/api/messages", self.query),
                web.post("/admin/faults", self.set_fault),
            ]
        )
        super().__init__(app)

    def by_category(self, category: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["category"] == category]

    async def receive(self, request: web.Request) -> web.Response:
        code = request.match_info.get("code") or request.headers.get("X-Sumo-Token", "")
        if code not in self.sources:
            return web.Response(status=401, text="Unauthorized: unknown HTTP source")
        mode, count = self.fault["mode"], self.fault["count"]
        if mode != "none" and count != 0:
            if count is not None:
                self.fault["count"] = count - 1
            if mode == "429":
                text = "You have temporarily exceeded your Sumo Logic quota. Please try again later"
                return web.Response(status=429, text=text)
            return web.Response(status=int(mode), text=FAULT_STATUSES.get(mode, "unavailable"))
        try:
            raw = await request.read()  # aiohttp undoes Content-Encoding gzip and deflate
        except web.HTTPException:
            raise
        except Exception as exc:  # a body that does not decompress: the sender's fault
            encoding = request.headers.get("Content-Encoding", "none")
            text = f"the body cannot be read (Content-Encoding {encoding}): {type(exc).__name__}"
            return web.Response(status=400, text=text)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return web.Response(status=400, text="the body is not UTF-8")
        meta = {
            "category": request.headers.get("X-Sumo-Category") or self.sources[code],
            "name": request.headers.get("X-Sumo-Name"),
            "host": request.headers.get("X-Sumo-Host"),
            "fields": parse_fields(request.headers.get("X-Sumo-Fields", "")),
            "receivedAt": iso(datetime.now(UTC)),
        }
        new = [{"message": message, **meta} for message in split_messages(text)]
        self.messages.extend(new)
        if self.store is not None and new:
            with self.store.open("a", encoding="utf-8") as out:
                out.writelines(json.dumps(m) + "\n" for m in new)
        return web.Response(status=200)

    async def query(self, request: web.Request) -> web.Response:
        wanted = {k: request.query[k] for k in ("category", "name", "host") if k in request.query}
        found = [m for m in self.messages if all(m[k] == v for k, v in wanted.items())]
        return web.json_response(found)

    async def set_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError as exc:
            return web.json_response({"error": f"the body is not JSON: {exc}"}, status=400)
        mode, count = str(body.get("mode", "none")) if isinstance(body, dict) else "", None
        if isinstance(body, dict):
            count = body.get("count")
        if not valid_fault(mode):
            return web.json_response({"error": f'expected {FAULT_MODES}, "count": N'}, status=400)
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            return web.json_response({"error": "count must be a whole number"}, status=400)
        self.fault = {"mode": mode, "count": count}
        return web.json_response(self.fault)


def main(argv: list[str] | None = None) -> None:
    options = parser("python -m simulators.sumo", __doc__, 8030)
    options.add_argument(
        "--code",
        action="append",
        metavar="CODE[=CATEGORY]",
        help=f"an HTTP source and its source category (default {DEFAULT_CODE}=webhook/ilert)",
    )
    options.add_argument("--store", type=Path, help="NDJSON file to keep messages in")
    options.add_argument("--fault", default="none", help="answer 408, 429 or 5xx to every POST")
    options.add_argument("--fault-count", type=int, help="requests affected (default: all)")
    args = options.parse_args(argv)
    if not valid_fault(args.fault):
        options.error(f"--fault {args.fault}: expected none, 408, 429 or 500..599")
    sources = dict(DEFAULT_SOURCES)
    if args.code:
        sources = {}
        for spec in args.code:
            code, _, category = spec.partition("=")
            sources[code] = category or None
    sim = SumoSimulator(sources, args.store)
    sim.fault = {"mode": args.fault, "count": args.fault_count}
    run(sim, args.host, args.port, "Sumo Logic stand-in")


if __name__ == "__main__":
    main()
