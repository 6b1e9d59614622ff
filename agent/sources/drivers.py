"""What the runtime and the command line use of a kind of source, found by its folder:
``agent/sources/<kind>/driver.py``. Imported only when a config has such a source, so a
kind's library (asyncua) loads only where it is used."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from agent.sources.base import Poller
from agent.sources.schema import SourceBase


@dataclass
class Plan:
    """How a source is read each cycle, as ``check`` prints it."""

    #: requests (Read calls) per cycle; None: known only once connected
    requests: int | None
    #: what to say after the count, e.g. "(the server's MaxNodesPerRead, read at connect)"
    note: str = ""
    lines: list[str] = field(default_factory=list)


class Driver(Protocol):
    def open_pollers(self, sources: Sequence[SourceBase]) -> dict[str, Poller]: ...

    def plan(self, source: SourceBase) -> Plan: ...


def driver(kind: str) -> Driver:
    return cast(Driver, importlib.import_module(f"agent.sources.{kind}.driver"))


def open_pollers(sources: Iterable[SourceBase]) -> dict[str, Poller]:
    """A poller for every configured source, by its kind, in the config's order."""
    sources = list(sources)
    pollers: dict[str, Poller] = {}
    for kind in dict.fromkeys(s.KIND for s in sources):
        pollers.update(driver(kind).open_pollers([s for s in sources if kind == s.KIND]))
    return {s.name: pollers[s.name] for s in sources}
