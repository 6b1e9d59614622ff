"""What the runtime and ``check`` use of the Modbus kinds."""

from __future__ import annotations

from collections.abc import Sequence

from agent.common.values import BIT_KINDS
from agent.sources.base import Poller
from agent.sources.drivers import Plan
from agent.sources.modbus.config import ModbusSource
from agent.sources.modbus.plan import plan_reads
from agent.sources.modbus.poller import SourcePoller, make_links
from agent.sources.schema import SourceBase


def open_pollers(sources: Sequence[SourceBase]) -> dict[str, Poller]:
    """A poller per source; sources on one serial line share its connection and lock."""
    modbus = [s for s in sources if isinstance(s, ModbusSource)]
    links = make_links(modbus)
    return {s.name: SourcePoller(s, links[s.name]) for s in modbus}


def plan(source: SourceBase) -> Plan:
    assert isinstance(source, ModbusSource)
    blocks = plan_reads(source.variables, source.max_gap)
    lines = []
    for block in blocks:
        names = ", ".join(v.name for v in block.variables)
        unit = "bit" if block.table in BIT_KINDS else "register"
        lines.append(f"{block.table:<14} {block.address:>5} +{block.count:<4} {unit}(s): {names}")
    return Plan(len(blocks), lines=lines)
