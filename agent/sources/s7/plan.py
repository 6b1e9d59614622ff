"""Read planning for S7: the shared range coalescing (``agent.sources.coalesce``) over bytes,
per area and DB, within what one item of a PDU may carry; then the ranges packed, up to 20
items, into multi-variable reads that fit the PDU both ways. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.sources.coalesce import coalesce
from agent.sources.s7.config import S7Variable

#: bytes of a read reply around one item's data: S7 header 12, function and count 2, the
#: item's return code, transport size and length 4
ITEM_OVERHEAD = 18
HEADER = 14  # S7 header 12, function and item count 2
ITEM_REQUEST = 12  # one item's address specification
ITEM_REPLY = 4  # one item's return code, transport size and bit length
#: items per read, as the S7 protocol allows (python-snap7's MAX_VARS)
MAX_ITEMS = 20


@dataclass(frozen=True, slots=True)
class Range:
    """One item: ``size`` bytes from ``start`` of an area (``db`` for a data block)."""

    area: str
    db: int
    start: int
    size: int
    variables: tuple[S7Variable, ...]

    def __str__(self) -> str:
        where = f"DB{self.db}" if self.area == "DB" else self.area
        return f"{where} {self.start}+{self.size}"


def max_range(pdu: int) -> int:
    """The most bytes one item may carry in a reply of ``pdu`` bytes."""
    return pdu - ITEM_OVERHEAD


def plan_ranges(variables: Iterable[S7Variable], pdu: int, max_gap: int) -> list[Range]:
    spans = coalesce(
        variables,
        lambda v: (v.where.group, v.where.byte, v.where.byte + v.size),
        max_gap=lambda _group: max_gap,
        max_span=lambda _group: max_range(pdu),
        order=lambda group: (group[0] != "DB", group[0], group[1]),
    )
    return [Range(s.group[0], s.group[1], s.start, s.end - s.start, s.items) for s in spans]


def pack(ranges: list[Range], pdu: int) -> list[tuple[Range, ...]]:
    """Ranges in reads of up to MAX_ITEMS items whose request and reply both fit the PDU
    (first fit, in address order)."""
    reads: list[list[Range]] = []
    room: list[int] = []  # reply bytes left in each read
    for item in ranges:
        need = ITEM_REPLY + item.size + item.size % 2  # an odd item is padded
        for index, read in enumerate(reads):
            fits_request = HEADER + ITEM_REQUEST * (len(read) + 1) <= pdu
            if len(read) < MAX_ITEMS and fits_request and need <= room[index]:
                read.append(item)
                room[index] -= need
                break
        else:
            reads.append([item])
            room.append(pdu - HEADER - need)
    return [tuple(read) for read in reads]


def plan_reads(variables: Iterable[S7Variable], pdu: int, max_gap: int) -> list[tuple[Range, ...]]:
    """The reads of one cycle: the fewest requests for these variables at this PDU size."""
    return pack(plan_ranges(variables, pdu, max_gap), pdu)
