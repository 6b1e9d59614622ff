"""Modbus TCP, RTU, and RTU over TCP: request planning (``plan``), decoding (``decode``),
the untrusted wire (``wire``) and the poller with its connections (``poller``)."""

from __future__ import annotations

from collections.abc import Iterable

from agent.config import Source
from agent.sources.modbus.poller import SourcePoller, make_links

PROTOCOLS = frozenset({"modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp"})


def open_pollers(sources: Iterable[Source]) -> dict[str, SourcePoller]:
    """A poller per source; sources on one serial port share its connection and lock."""
    sources = list(sources)
    links = make_links(sources)
    return {s.name: SourcePoller(s, links[s.name]) for s in sources}
