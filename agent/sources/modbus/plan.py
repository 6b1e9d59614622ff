"""Read planning: the fewest Modbus requests that cover a source's variables.

Pure: addresses in, blocks out. Variables of one register kind are sorted by address and
merged into one block while the hole between them is at most ``max_gap`` registers (bits for
coils and discrete inputs: ``16 * max_gap``) and the block stays within the protocol limit.
A block never reads past the end of its last variable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.common.values import BIT_KINDS
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
    by_kind: dict[str, list[ModbusVariable]] = {}
    for variable in variables:
        by_kind.setdefault(variable.table, []).append(variable)
    blocks: list[Block] = []
    for kind in KIND_ORDER:
        members = sorted(by_kind.get(kind, ()), key=lambda v: (v.address, v.register_count))
        if not members:
            continue
        bits = kind in BIT_KINDS
        limit = MAX_BITS if bits else MAX_REGISTERS
        gap = max_gap * 16 if bits else max_gap
        start = members[0].address
        end = start + members[0].register_count
        current = [members[0]]
        for variable in members[1:]:
            v_end = variable.address + variable.register_count
            if variable.address - end <= gap and max(end, v_end) - start <= limit:
                current.append(variable)
                end = max(end, v_end)
                continue
            blocks.append(Block(kind, start, end - start, tuple(current)))
            start, end, current = variable.address, v_end, [variable]
        blocks.append(Block(kind, start, end - start, tuple(current)))
    return blocks


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
