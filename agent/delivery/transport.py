"""httpx's API on aiohttp's connections: the agent speaks httpx (timeouts, errors, the
tests' mock transports), and the bytes go through aiohttp's client.

Why: httpx's own transport spent about 1 ms of CPU per request here, aiohttp about a
quarter of that (``bench/alarms.py``), and a burst of alarms is a burst of requests. The
httpx-aiohttp package does the same but changes what is sent: it hands aiohttp a URL with
its credentials beside httpx's ``Authorization`` header (aiohttp refuses that), re-quotes
an escaped ``/`` in a path (an ilert key may hold one), and calls a refused connection a
``ConnectTimeout``. This one sends the request as httpx built it, byte for byte.
"""

from __future__ import annotations

import os
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from typing import NamedTuple

import aiohttp
import httpx
from yarl import URL

#: headers aiohttp sets itself from the URL and the body
_OWN = frozenset({b"host", b"content-length", b"transfer-encoding"})


class Target(NamedTuple):
    """One webhook, ready for ``AiohttpTransport.post``."""

    url: URL
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout


class Reply(NamedTuple):
    """An answer on the direct path: what delivery reads of one (as of an httpx.Response)."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


def cause(exc: BaseException) -> str:
    """Why a request failed, in words of our own: never the exception's text, which may
    hold the receiver's host name or address (a key may sit in a subdomain). Empty when
    nothing in the chain of causes says more than the exception's kind."""
    node: BaseException | None = exc
    seen: set[int] = set()
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError):
            return "TLS certificate not accepted"
        if isinstance(node, ssl.SSLError | aiohttp.ClientSSLError):
            return "TLS error"
        if isinstance(node, socket.gaierror | aiohttp.ClientConnectorDNSError):
            return "host name not resolved"
        if isinstance(node, TimeoutError | httpx.TimeoutException | aiohttp.ServerTimeoutError):
            return "timed out"
        if isinstance(node, aiohttp.ServerDisconnectedError | httpx.RemoteProtocolError):
            return "server disconnected"
        if isinstance(node, aiohttp.ClientPayloadError):
            return "answer cut short"
        if isinstance(node, OSError) and node.errno:
            return os.strerror(node.errno).lower()  # "connection refused", "no route to host"
        if isinstance(node, aiohttp.ClientConnectorError):
            node = node.os_error
            continue
        node = node.__cause__ or node.__context__
    return ""


def describe(exc: BaseException) -> str:
    """``ConnectError: connection refused``: what delivery stores, logs and shows."""
    why = cause(exc)
    return f"{type(exc).__name__}: {why}" if why else type(exc).__name__


def _httpx_error(exc: aiohttp.ClientError, request: httpx.Request | None) -> httpx.HTTPError:
    """aiohttp's error as the httpx error that means the same (what delivery and the tests
    know); ``request`` for httpx's own API, None on the direct path. Its text is ``cause``'s:
    aiohttp's own names the host and port."""
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ClientOSError)):
        kind = httpx.ReadError
    else:
        kind = httpx.TransportError
    return kind(cause(exc) or "request failed", request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (its connection pool), created on first use in the event loop."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl = ssl_context or httpx.create_ssl_context()  # verified, httpx's CA bundle
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[httpx.URL, URL] = {}  # a webhook's URL, parsed once for aiohttp

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl, limit=100, keepalive_timeout=15),
                cookie_jar=aiohttp.DummyCookieJar(),  # a webhook needs none
                auto_decompress=False,  # httpx decodes, as with its own transport
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
            )
        return self._session

    def target(self, url: httpx.URL, headers: list[tuple[str, str]], seconds: float) -> Target:
        """What the direct path needs for one webhook, made once: the URL as aiohttp takes
        it, the complete headers (agent, content type, credentials) and the timeout
        (``seconds`` to connect, and between bytes read, as httpx's ``timeout``)."""
        return Target(
            self._aiohttp_url(url),
            dict(headers),
            aiohttp.ClientTimeout(sock_connect=seconds, sock_read=seconds),
        )

    async def post(self, target: Target, body: bytes) -> Reply:
        """A POST without httpx's client, request or response around it (cookies, auth
        flow, redirects, event hooks: none of which a webhook uses): delivery's hot path,
        about half the CPU of a send through ``handle_async_request``. Errors are httpx's."""
        try:
            async with self._open().post(
                target.url, headers=target.headers, data=body, allow_redirects=False,
                timeout=target.timeout,
            ) as reply:  # fmt: skip
                return Reply(reply.status, reply.headers, await reply.read())
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, None) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out") from exc

    def _aiohttp_url(self, url: httpx.URL) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            plain = url
            if plain.userinfo:  # httpx made an Authorization header of them already
                plain = plain.copy_with(username=None, password=None)
            if len(self._urls) > 64:
                self._urls.clear()
            parsed = self._urls[url] = URL(str(plain), encoded=True)
        return parsed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = [
            (k.decode(), v.decode()) for k, v in request.headers.raw if k.lower() not in _OWN
        ]
        timeout = request.extensions.get("timeout", {})
        limits = aiohttp.ClientTimeout(
            sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
        )
        body = await request.aread()
        try:
            async with self._open().request(
                request.method, self._aiohttp_url(request.url), headers=headers,
                data=body or None, allow_redirects=False, timeout=limits,
            ) as reply:  # fmt: skip
                content = await reply.read()
                extensions = {"http_version": b"HTTP/1.1"}
                if reply.reason:
                    extensions["reason_phrase"] = reply.reason.encode()
                return httpx.Response(
                    reply.status,
                    headers=list(reply.raw_headers),
                    content=content,
                    request=request,
                    extensions=extensions,
                )
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc, request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out", request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpClient(httpx.AsyncClient):
    """httpx's client on the aiohttp transport. ``direct`` is that transport, for delivery's
    hot path, unless the environment names a proxy (``HTTPS_PROXY`` ...): httpx's client
    routes through it, a direct post would not, so then every send goes through the client.
    """

    def __init__(self, user_agent: str) -> None:
        transport = AiohttpTransport()
        super().__init__(
            headers={"User-Agent": user_agent},
            follow_redirects=False,
            timeout=10.0,
            transport=transport,
        )
        self.direct = None if urllib.request.getproxies() else transport
