"""What the runtime and ``check`` use of the S7 kind."""

from __future__ import annotations

from collections.abc import Sequence

from agent.sources.base import Poller
from agent.sources.drivers import Plan
from agent.sources.s7.config import S7Source
from agent.sources.s7.plan import plan_reads
from agent.sources.schema import SourceBase


def open_pollers(sources: Sequence[SourceBase]) -> dict[str, Poller]:
    from agent.sources.s7.poller import S7Poller

    return {s.name: S7Poller(s) for s in sources if isinstance(s, S7Source)}


def plan(source: SourceBase) -> Plan:
    """The reads at the PDU asked for (planned again at connect if the PLC grants less)."""
    assert isinstance(source, S7Source)
    reads = plan_reads(source.variables, source.pdu, source.max_gap)
    lines = []
    for read in reads:
        ranges = "; ".join(f"{r}: {', '.join(v.name for v in r.variables)}" for r in read)
        lines.append(f"read of {len(read)} item(s): {ranges}")
    note = f" (PDU {source.pdu}; a request per variable would be {len(source.variables)})"
    return Plan(len(reads), note, lines)
