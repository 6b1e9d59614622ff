"""A Sumo Logic HTTP Logs source stand-in: where ilert's lifecycle webhooks end up.

Run ``python -m simulators.sumo [--host 127.0.0.1] [--port 8030] [--code demo]
[--store sumo.ndjson]``.

- ``POST /receiver/v1/http/{code}`` (or ``/receiver/v1/http`` with ``X-Sumo-Token``): each
  non-empty line of the body is one message; ``Content-Encoding: gzip`` or ``deflate``
  accepted; ``X-Sumo-Category``, ``X-Sumo-Name`` and ``X-Sumo-Host`` kept with each message;
  401 for an unknown code; 200 otherwise.
- ``GET /api/messages[?category=C][&name=N][&host=H]``: what was received, as a JSON list of
  ``{message, category, name, host, receivedAt}``.
- Fault switch: ``--fault 429|503`` (``--fault-count``) or ``POST /admin/faults`` with
  ``{"mode": "429", "count": 2}``; during a 429 Sumo drops the data, as the real one does.
- ``--store FILE``: messages are appended to an NDJSON file and loaded again at start, so a
  demo's log survives the process.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators._http import HttpServer, parser, run

DEFAULT_CODE = "demo"


class SumoSimulator(HttpServer):
    def __init__(self, codes: tuple[str, ...] = (DEFAULT_CODE,), store: Path | None = None) -> None:
        self.codes = set(codes)
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
        if code not in self.codes:
            return web.Response(status=401, text="Unauthorized: unknown HTTP source")
        mode, count = self.fault["mode"], self.fault["count"]
        if mode != "none" and count != 0:
            if count is not None:
                self.fault["count"] = count - 1
            if mode == "429":
                text = "You have temporarily exceeded your Sumo Logic quota. Please try again later"
                return web.Response(status=429, text=text)
            return web.Response(status=int(mode) if mode.isdigit() else 503, text="unavailable")
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
            "category": request.headers.get("X-Sumo-Category"),
            "name": request.headers.get("X-Sumo-Name"),
            "host": request.headers.get("X-Sumo-Host"),
            "receivedAt": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        new = [{"message": line, **meta} for line in text.splitlines() if line.strip()]
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
        if mode not in ("none", "429") and not (mode.isdigit() and 500 <= int(mode) <= 599):
            return web.json_response(
                {"error": 'expected {"mode": "none" | "429" | "5xx", "count": N}'}, status=400
            )
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            return web.json_response({"error": "count must be a whole number"}, status=400)
        self.fault = {"mode": mode, "count": count}
        return web.json_response(self.fault)


def main(argv: list[str] | None = None) -> None:
    options = parser("python -m simulators.sumo", __doc__, 8030)
    options.add_argument(
        "--code", action="append", help=f"accepted source code (default {DEFAULT_CODE})"
    )
    options.add_argument("--store", type=Path, help="NDJSON file to keep messages in")
    options.add_argument("--fault", default="none", help="answer 429 or 503 to every POST")
    options.add_argument("--fault-count", type=int, help="requests affected (default: all)")
    args = options.parse_args(argv)
    sim = SumoSimulator(tuple(args.code or [DEFAULT_CODE]), args.store)
    sim.fault = {"mode": args.fault, "count": args.fault_count}
    run(sim, args.host, args.port, "Sumo Logic stand-in")


if __name__ == "__main__":
    main()
