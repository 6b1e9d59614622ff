"""One attempt to send one message: the body with its secret, over HTTP, within the
webhook's timeout, and what the answer means. The outbox's deliverer and the last-resort
sending at shutdown (``direct.py``) both send through it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from agent import __version__
from agent.config import Webhook
from agent.delivery.transport import HttpClient, Reply, Target, describe
from agent.formats import format_of

USER_AGENT = f"ixon-agent/{__version__}"

Outcome = Literal["delivered", "retry", "rejected", "expired"]


def make_http_client() -> httpx.AsyncClient:
    """The process's one HTTP client: TLS verified, no redirects followed, named agent; its
    requests go out through aiohttp (``transport.py`` says why)."""
    return HttpClient(USER_AGENT)


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header. An HTTP date is taken relative to the answer's
    own ``Date`` header when it has one, so a wrong clock here does not stretch the wait."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        then = parsedate_to_datetime(value).timestamp()
        now = time.time()
        with contextlib.suppress(TypeError, ValueError, IndexError):
            now = parsedate_to_datetime(date).timestamp() if date else now
        return max(0.0, then - now)
    return None


@dataclass(frozen=True)
class Answer:
    """What one attempt came to."""

    outcome: Outcome
    status: int | None  # None: no answer (a network error, a timeout)
    error: str | None  # ``HTTP 503``, ``ConnectError: connection refused``; never a URL
    retry_after: float | None
    text: str  # what the receiver said (not yet redacted)
    latency: float


class Poster:
    """Sends a body to a webhook through the process's HTTP client; per webhook, the parsed
    URL and (on aiohttp's direct path) the complete request headers are made once."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        #: per webhook, made once: its parsed URL and, for ``direct``, the request headers
        self._targets: dict[str, tuple[httpx.URL, Target | None]] = {}
        #: the aiohttp transport under the client, if it is ours: sends skip httpx's client
        self.direct = client.direct if isinstance(client, HttpClient) else None

    def _target(self, webhook: Webhook) -> tuple[httpx.URL, Target | None]:
        url = httpx.URL(webhook.url.get_secret_value())
        direct = None
        if self.direct is not None:
            headers = [("User-Agent", USER_AGENT), ("Accept", "*/*")]
            headers.append(("Content-Type", "application/json"))
            if url.userinfo:  # as httpx's client does: the URL's credentials, basic auth
                pair = f"{url.username}:{url.password}".encode()
                headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode()))
            direct = self.direct.target(url, headers, webhook.timeout)
        self._targets[webhook.name] = (url, direct)
        return url, direct

    async def post(self, webhook: Webhook, stored: Mapping[str, Any]) -> Answer:
        """One attempt: ``stored`` is the body as the outbox holds it (no secret)."""
        fmt = format_of(webhook)
        body = fmt.with_secret(dict(stored), webhook)
        url, direct = self._targets.get(webhook.name) or self._target(webhook)
        started = time.monotonic()
        response: Reply | httpx.Response
        try:
            # the whole attempt within ``timeout`` (httpx's is per phase), so it never
            # outlives its lease and no other process sends the same message meanwhile
            async with asyncio.timeout(webhook.timeout):
                if self.direct is not None and direct is not None:
                    # the bytes httpx's ``json=`` would send
                    text = json.dumps(
                        body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
                    )
                    response = await self.direct.post(direct, text.encode())
                else:
                    response = await self.client.post(url, json=body, timeout=webhook.timeout)
        except (httpx.HTTPError, TimeoutError) as exc:
            # never the exception's text: it may name the host
            return Answer("retry", None, describe(exc), None, "", time.monotonic() - started)
        status = response.status_code
        outcome = fmt.classify(status, response.content, body)
        headers = response.headers
        return Answer(
            outcome,
            status,
            None if outcome == "delivered" else f"HTTP {status}",
            parse_retry_after(headers.get("Retry-After"), headers.get("Date")),
            "" if outcome == "delivered" else response.text,
            time.monotonic() - started,
        )
