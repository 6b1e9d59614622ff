"""Sources: poll a machine once, get values plus health. ``base`` is the protocol; each
protocol is a folder (``modbus/``), so OPC UA or S7 would be a sibling."""

from __future__ import annotations

from collections.abc import Iterable

from agent.config import Source
from agent.sources import modbus
from agent.sources.base import Poller, PollResult, SourceStats

__all__ = ["PollResult", "Poller", "SourceStats", "open_pollers"]


def open_pollers(sources: Iterable[Source]) -> dict[str, Poller]:
    """A poller for every configured source, by protocol."""
    sources = list(sources)
    pollers: dict[str, Poller] = {}
    pollers.update(modbus.open_pollers(s for s in sources if s.protocol in modbus.PROTOCOLS))
    return {s.name: pollers[s.name] for s in sources}
