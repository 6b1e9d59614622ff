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

import ssl
import urllib.request

import aiohttp
import httpx
from yarl import URL

#: headers aiohttp sets itself from the URL and the body
_OWN = frozenset({b"host", b"content-length", b"transfer-encoding"})


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

    async def post_json(
        self, url: httpx.URL, body: bytes, headers: list[tuple[str, str]], seconds: float
    ) -> httpx.Response:
        """A POST without httpx's client around it (cookies, auth flow, redirects, event
        hooks: none of which a webhook uses), for delivery's hot path: about 0.2 ms of CPU
        less per message. ``headers`` are complete (agent, content type, credentials);
        ``seconds``: to connect, and between bytes read, as httpx's ``timeout``."""
        request = httpx.Request(
            "POST",
            url,
            headers=headers,
            content=body,
            extensions={"timeout": {"connect": seconds, "read": seconds}},
        )
        return await self.handle_async_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = self._urls.get(request.url)
        if url is None:
            plain = request.url
            if plain.userinfo:  # httpx made an Authorization header of them already
                plain = plain.copy_with(username=None, password=None)
            if len(self._urls) > 64:
                self._urls.clear()
            url = self._urls[request.url] = URL(str(plain), encoded=True)
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
                request.method, url, headers=headers, data=body or None,
                allow_redirects=False, timeout=limits,
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
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(
                str(exc) or "server disconnected", request=request
            ) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc

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
