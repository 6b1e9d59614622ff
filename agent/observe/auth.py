"""The status listener's login, in the way of Prometheus's exporter-toolkit: users with
bcrypt hashes, HTTP basic auth (over TLS when ``tls_cert`` is given).

- ``/healthz`` and ``/readyz`` stay open: they carry nothing, and health checks must work.
- A password that checked once is remembered, by a salted SHA-256 of user and password,
  so bcrypt's ~70 ms (run off the event loop) is paid once per password, not per request.
- Failed logins are counted per client address: past ``MAX_FAILURES`` in ``WINDOW`` seconds
  that address gets 429 until the window passes, so a password cannot be guessed at
  bcrypt's speed. Each failure is logged (the 1st, 10th, 100th... and now and then), with
  the user name tried and the address, never the password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import bcrypt
from aiohttp import web

from agent.common.retry import Throttle

log = logging.getLogger("agent.status")

OPEN = frozenset({"/healthz", "/readyz"})
#: who is logged in, for the handlers (acknowledgements name who did them)
USER = web.RequestKey("user", str)
REALM = 'Basic realm="ixon-agent", charset="UTF-8"'
MAX_FAILURES = 5
WINDOW = 60.0
#: passwords remembered as checked; past this many the memory starts again
MAX_REMEMBERED = 1000
#: addresses whose failures are counted at once (older ones are forgotten past this)
MAX_ADDRESSES = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash for ``[status.users]``."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


class Login:
    def __init__(
        self, users: Mapping[str, str], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.users = {name: hashed.encode() for name, hashed in users.items()}
        self.clock = clock
        self._salt = os.urandom(16)  # the memory of checked passwords means nothing elsewhere
        self._checked: set[bytes] = set()
        self._failures: dict[str, list[float]] = {}  # address -> times of recent failures
        self._throttle = Throttle(600.0)
        self.bcrypt_checks = 0  # (for tests and the bench)

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def _key(self, user: str, password: str) -> bytes:
        return hashlib.sha256(self._salt + user.encode() + b"\0" + password.encode()).digest()

    async def check(self, user: str, password: str) -> bool:
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = self._key(user, password)
        if key in self._checked:
            return True
        self.bcrypt_checks += 1
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        if ok:
            if len(self._checked) >= MAX_REMEMBERED:
                self._checked.clear()
            self._checked.add(key)
        return ok

    def _blocked(self, address: str) -> float:
        """Seconds this address must wait, 0 when it may try."""
        now = self.clock()
        recent = [t for t in self._failures.get(address, []) if now - t < WINDOW]
        self._failures[address] = recent
        if not recent:
            del self._failures[address]
        if len(recent) >= MAX_FAILURES:
            return WINDOW - (now - recent[0])
        return 0.0

    def _failed(self, address: str, user: str) -> None:
        now = self.clock()
        if len(self._failures) >= MAX_ADDRESSES:  # many addresses: forget the quiet ones
            self._failures = {a: t for a, t in self._failures.items() if now - t[-1] < WINDOW}
        self._failures.setdefault(address, []).append(now)
        if self._throttle.hit():
            log.warning(
                "status: failed login for user %r from %s (%d such failure(s) so far)",
                user[:64],
                address,
                self._throttle.count,
            )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.enabled or request.path in OPEN:
            return await handler(request)
        address = request.remote or "?"
        wait = self._blocked(address)
        if wait > 0:
            return web.Response(
                status=429, text="too many failed logins; try later\n",
                headers={"Retry-After": str(int(wait) + 1)},
            )  # fmt: skip
        credentials = _credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            return _ask()
        user, password = credentials
        if not await self.check(user, password):
            self._failed(address, user)
            return _ask()
        request[USER] = user
        return await handler(request)


def _ask() -> web.Response:
    return web.Response(status=401, text="login required\n", headers={"WWW-Authenticate": REALM})


def _credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The listener's TLS from ``tls_cert`` and ``tls_key``; None: plain HTTP. A pair that
    cannot be loaded is an ``OSError``: the listener then stays closed rather than take
    passwords in the clear."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise OSError(f"tls_cert/tls_key: {exc.reason or exc}") from None
    return context
