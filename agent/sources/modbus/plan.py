"""Read planning: the fewest Modbus requests that cover a source's variables.

Pure: addresses in, blocks out. The shared range coalescing (``agent.sources.coalesce``)
with Modbus's limits: per register kind, holes of up to ``max_gap`` registers (bits for
coils and discrete inputs: ``16 * max_gap``) are bridged, and a block stays within what one
request may read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.common.values import BIT_KINDS
from agent.sources.coalesce import coalesce
from agent.sources.modbus.config import ModbusVariable, RegisterKind

#: Modbus limits per request (registers for 3/4, bits for 1/2), as pymodbus enforces them.
MAX_REGISTERS = 125
MAX_BITS = 2000
KIND_ORDER: tuple[RegisterKind, ...] = ("coil", "discrete_input", "holding", "input")


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` registers (or bits) from ``address``."""

    table: RegisterKind
    address: int
    count: int
    variables: tuple[ModbusVariable, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan_reads(variables: Iterable[ModbusVariable], max_gap: int = 10) -> list[Block]:
    """Coalesce variables into blocks, per register kind, in address order."""
    spans = coalesce(
        variables,
        lambda v: (v.table, v.address, v.address + v.register_count),
        max_gap=lambda kind: max_gap * 16 if kind in BIT_KINDS else max_gap,
        max_span=lambda kind: MAX_BITS if kind in BIT_KINDS else MAX_REGISTERS,
        order=KIND_ORDER.index,
    )
    return [Block(s.group, s.start, s.end - s.start, s.items) for s in spans]


def split(block: Block) -> list[Block]:
    """Two blocks covering ``block``'s variables, cut at the widest hole between them.

    Used when a device refuses a block ("illegal data address") because it has a hole in its
    register map: repeated splitting isolates the refused addresses in O(log n) requests.
    """
    members = sorted(block.variables, key=lambda v: (v.address, v.register_count))
    if len(members) < 2:
        return [block]
    holes = []  # (hole before members[i], -distance from the middle, i)
    end = members[0].address + members[0].register_count
    for index in range(1, len(members)):
        holes.append((members[index].address - end, -abs(2 * index - len(members)), index))
        end = max(end, members[index].address + members[index].register_count)
    cut = max(holes)[2]
    return [_cover(block.table, members[:cut]), _cover(block.table, members[cut:])]


def _cover(table: RegisterKind, members: list[ModbusVariable]) -> Block:
    start = members[0].address
    end = max(v.address + v.register_count for v in members)
    return Block(table, start, end - start, tuple(members))
