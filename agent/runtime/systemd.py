"""systemd's service protocol (``Type=notify``, ``WatchdogSec=``), without a dependency: a
datagram to ``$NOTIFY_SOCKET``. Outside systemd every call does nothing.

READY=1 goes out once polling runs, so ``systemctl start`` returns when the agent works,
not when the process exists. WATCHDOG=1 goes out only while the poll loop is healthy (the
agent's watch sees every source's cycles start on time): a hung event loop or a dead
scheduler stops the pings, and systemd restarts the agent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("agent")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.socket: socket.socket | None = None
        if self.address:
            try:
                self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError as exc:
                log.warning("systemd: cannot open the notify socket (%s)", exc)
        pid = environ.get("WATCHDOG_PID")
        usec = environ.get("WATCHDOG_USEC", "")
        mine = pid is None or pid == str(os.getpid())
        #: seconds between watchdog pings (a third of systemd's limit); None: no watchdog
        self.interval = int(usec) / 3e6 if usec.isdigit() and int(usec) and mine else None
        self._pinged = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.socket is not None

    def send(self, *fields: str) -> None:
        if self.socket is None:
            return
        with contextlib.suppress(OSError):  # systemd gone: nothing to tell
            self.socket.sendto("\n".join(fields).encode(), self.address)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def healthy(self) -> None:
        """The poll loop is healthy: ping the watchdog, at most once per ``interval``."""
        if self.interval is None or self.socket is None:
            return
        now = time.monotonic()
        if now - self._pinged >= self.interval:
            self._pinged = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
