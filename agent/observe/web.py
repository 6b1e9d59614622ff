"""One aiohttp app on one listener: the status page's, and each stand-in's (``simulators``).

The listener is the event loop's own ``create_server`` with the app's request handler as its
protocol, so the bound port (port 0: the OS chooses) is read from the socket and a subclass
can decide about each new connection (``_connection``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web


class WebServer:
    backlog = 100  # connections the OS queues before the loop accepts them

    def __init__(
        self, app: web.Application, logger: logging.Logger, keepalive: float = 75.0
    ) -> None:
        self.app = app
        self.logger = logger
        self.keepalive = keepalive
        self.host = "127.0.0.1"
        self.port = 0
        self.scheme = "http"
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> str:
        """Listen (over TLS with ``tls``); an ``OSError`` (the port is taken) leaves nothing
        behind."""
        # a short shutdown: a test receiver may hold a request open on purpose
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=self.keepalive,
            logger=self.logger,
        )
        await runner.setup()
        self._runner = runner
        try:
            listener = await asyncio.get_running_loop().create_server(
                self._connection, host, port, reuse_address=True, backlog=self.backlog, ssl=tls
            )
        except OSError:
            self._runner = None
            await runner.cleanup()
            raise
        self._listener = listener
        self.host, self.port = host, listener.sockets[0].getsockname()[1]
        self.scheme = "https" if tls is not None else "http"
        return self.url

    def _connection(self) -> asyncio.BaseProtocol:
        """The protocol for a new connection: the app's request handler."""
        assert self._runner is not None and self._runner.server is not None
        return self._runner.server()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
