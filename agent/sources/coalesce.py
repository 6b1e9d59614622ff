"""Range coalescing: the fewest reads that cover a set of addresses, for every protocol that
reads ranges (Modbus registers and bits, S7 bytes). Each protocol gives its limits.

Pure: items are grouped (a Modbus table; an S7 area and DB), sorted by start, and merged
into one span while the hole before the next item is at most ``max_gap`` and the span stays
within ``max_span``. A span never reads past the end of its last item.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
G = TypeVar("G", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Span(Generic[G, T]):
    """One read: ``[start, end)`` of ``group``, covering ``items``."""

    group: G
    start: int
    end: int
    items: tuple[T, ...]


def coalesce(
    items: Iterable[T],
    place: Callable[[T], tuple[G, int, int]],
    max_gap: Callable[[G], int],
    max_span: Callable[[G], int],
    order: Callable[[G], object] = lambda g: g,
) -> list[Span[G, T]]:
    """Spans over ``items``, each placed by ``place(item) -> (group, start, end)``; groups
    in ``order``, spans in address order within a group."""
    by_group: dict[G, list[tuple[int, int, T]]] = {}
    for item in items:
        group, start, end = place(item)
        by_group.setdefault(group, []).append((start, end, item))
    spans: list[Span[G, T]] = []
    for group in sorted(by_group, key=order):  # type: ignore[arg-type]
        members = sorted(by_group[group], key=lambda m: (m[0], m[1]))
        gap, limit = max_gap(group), max_span(group)
        start, end, first = members[0]
        current = [first]
        for m_start, m_end, item in members[1:]:
            if m_start - end <= gap and max(end, m_end) - start <= limit:
                current.append(item)
                end = max(end, m_end)
                continue
            spans.append(Span(group, start, end, tuple(current)))
            start, end, current = m_start, m_end, [item]
        spans.append(Span(group, start, end, tuple(current)))
    return spans
