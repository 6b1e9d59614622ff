"""Decoding: a block's registers (or bits) to Python values, in bulk.

Pure and fast enough for a Raspberry Pi. A block is packed to bytes once, in two forms: as
received (big-endian words) and with the bytes of every word swapped. Each of the four byte
orders is then a plain big- or little-endian ``struct`` read of one of those buffers:

    ABCD: big-endian read of the received bytes     (A B C D)
    DCBA: little-endian read of the received bytes  (D C B A)
    BADC: big-endian read of the swapped bytes      (B A D C -> A B C D)
    CDAB: little-endian read of the swapped bytes   (C D A B -> D C B A)

The same rules give DESIGN.md's 64-bit orders (CDAB = registers in reverse order). All
variables that share a buffer and endianness are read by one precompiled ``struct.Struct``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from agent.common.values import BIT_KINDS, Value
from agent.sources.modbus.config import ByteOrder, ModbusVariable
from agent.sources.modbus.plan import Block

_INT_CODES = {8: "h", 16: "h", 32: "i", 64: "q"}
_FLOAT_CODES = {32: "f", 64: "d"}
# byte order -> (use the word-swapped buffer, struct endianness)
_LAYOUT: dict[str, tuple[bool, str]] = {
    "ABCD": (False, ">"),
    "DCBA": (False, "<"),
    "BADC": (True, ">"),
    "CDAB": (True, "<"),
}
# strings have no words to order: their bytes are swapped within each register for these
# orders only (Telegraf's rule), so a CDAB source still reads "PKG-LINE-3" as written
_STRING_SWAPPED = frozenset({"BADC", "DCBA"})


#: _float32's answers: most values do not change from one cycle to the next (bounded)
_SHORT: dict[float, float] = {}
_SHORT_MAX = 100_000


def _float32(value: float) -> float:
    """The shortest decimal that is the same float32, so 84.2 reads as 84.2, not 84.19999694."""
    if not value or value != value:  # 0.0 and -0.0 (equal keys, two values); NaN
        return value
    short = _SHORT.get(value)
    if short is not None:
        return short
    packed = struct.pack("<f", value)
    short = value
    for digits in (6, 7, 8):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            short = candidate
            break
    if len(_SHORT) >= _SHORT_MAX:
        _SHORT.clear()
    _SHORT[value] = short
    return short


#: turns what ``struct`` read (an int, a float or bytes, by the variable's type) into the
#: variable's value
Post = Callable[[Any], Value]


def _bit(mask: int) -> Post:
    return lambda raw: bool(raw & mask)


def _text(length: int) -> Post:
    return lambda raw: raw[:length].split(b"\0", 1)[0].rstrip(b" ").decode("latin-1")


def _scaled(factor: float, offset: float, first: Callable[[Any], float] | None = None) -> Post:
    def scale(raw: Any) -> Value:
        number = first(raw) if first else raw
        return float(f"{number * factor + offset:.12g}")

    return scale


def _int8(signed: bool) -> Callable[[int], int]:
    def narrow(raw: int) -> int:
        low = raw & 0xFF
        return low - 256 if signed and low > 127 else low

    return narrow


def _post(variable: ModbusVariable) -> Post | None:
    """What happens to the raw struct value; None when it is already the final value (most
    ints and 64-bit floats: the hot path picks those out in bulk)."""
    kind, width = variable.type, variable.width
    if kind == "bool":
        return bool if variable.bit is None else _bit(1 << variable.bit)
    if kind == "str":
        return _text(variable.length or 0)
    first: Callable[[Any], float] | None = None
    if kind == "int" and width == 8:
        first = _int8(variable.signed)
    elif kind == "float" and width == 32:
        first = _float32
    if variable.factor != 1.0 or variable.offset != 0.0:
        return _scaled(variable.factor, variable.offset, first)
    return first


def _code(variable: ModbusVariable) -> str:
    if variable.type == "float":
        return _FLOAT_CODES[variable.width or 32]
    if variable.type == "int":
        code = _INT_CODES[variable.width or 16]
        return code if variable.signed or variable.width == 8 else code.upper()
    if variable.type == "str":
        return f"{2 * variable.register_count}s"
    return "H"  # bool from a whole register, or from one of its bits


def _getter(indexes: list[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """``itemgetter`` that always returns a tuple, even for one index."""
    if len(indexes) == 1:
        (only,) = indexes
        return lambda seq: (seq[only],)
    return itemgetter(*indexes)


@dataclass(frozen=True, slots=True)
class _Lane:
    """Variables read by one Struct from one buffer: no two overlap. Values that need no
    post-processing (most ints and 64-bit floats) are picked out in bulk by ``plain_get``."""

    swapped: bool
    reader: struct.Struct
    plain_keys: tuple[str, ...]
    plain_get: Callable[[Sequence[Any]], tuple[Any, ...]]
    posted: tuple[tuple[str, int, Callable[[Any], Value]], ...]

    @classmethod
    def build(cls, swapped: bool, fmt: str, keys: list[str], posts: list[Post | None]) -> _Lane:
        plain = [i for i, post in enumerate(posts) if post is None]
        posted = tuple((keys[i], i, post) for i, post in enumerate(posts) if post is not None)
        return cls(
            swapped,
            struct.Struct(fmt),
            tuple(keys[i] for i in plain),
            _getter(plain) if plain else _getter([0]),
            posted,
        )


class BlockDecoder:
    """Turns one block's response into ``(key, value)`` pairs; built once per block."""

    def __init__(self, block: Block, source_name: str, default_order: ByteOrder = "ABCD") -> None:
        self.block = block
        self.bits = block.table in BIT_KINDS
        self.keys = tuple(f"{source_name}.{v.name}" for v in block.variables)
        self._offsets = tuple(v.address - block.address for v in block.variables)
        self._lanes = () if self.bits else self._build_lanes(block, default_order)
        self._needs_swap = any(lane.swapped for lane in self._lanes)
        self._bit_get = _getter(list(self._offsets))
        self._pack = struct.Struct(f">{block.count}H").pack
        self._pack_swapped = struct.Struct(f"<{block.count}H").pack

    def _build_lanes(self, block: Block, default_order: ByteOrder) -> tuple[_Lane, ...]:
        # group -> list of lanes; a lane is (format parts, next free byte, keys, post)
        groups: dict[tuple[bool, str], list[list[Any]]] = {}
        for key, variable, offset in zip(self.keys, block.variables, self._offsets, strict=True):
            order = variable.byte_order or default_order
            swapped, endian = _LAYOUT[order]
            if variable.type == "str":
                swapped, endian = order in _STRING_SWAPPED, ">"
            start = 2 * offset
            lanes = groups.setdefault((swapped, endian), [])
            lane = next((ln for ln in lanes if ln[1] <= start), None)
            if lane is None:
                lane = [[], 0, [], []]
                lanes.append(lane)
            parts, free, keys, posts = lane
            if start > free:
                parts.append(f"{start - free}x")
            parts.append(_code(variable))
            lane[1] = start + 2 * variable.register_count
            keys.append(key)
            posts.append(_post(variable))
        return tuple(
            _Lane.build(swapped, endian + "".join(parts), keys, posts)
            for (swapped, endian), lanes in groups.items()
            for parts, _free, keys, posts in lanes
        )

    def decode(self, data: Sequence[int] | Sequence[bool]) -> dict[str, Value]:
        """Values of every variable in the block, from a register list or a bit list."""
        values: dict[str, Value] = {}
        self.decode_into(data, values)
        return values

    def decode_into(self, data: Sequence[int] | Sequence[bool], values: dict[str, Value]) -> None:
        """As ``decode``, writing into ``values``: the hot path, no intermediate objects."""
        count = self.block.count
        if len(data) < count:
            raise ValueError(f"short reply: {len(data)} of {count}")
        if self.bits:
            values.update(zip(self.keys, self._bit_get(data), strict=True))
            return
        received = self._pack(*data[:count])
        swapped = self._pack_swapped(*data[:count]) if self._needs_swap else b""
        for lane in self._lanes:
            raws = lane.reader.unpack_from(swapped if lane.swapped else received)
            if lane.plain_keys:
                values.update(zip(lane.plain_keys, lane.plain_get(raws), strict=True))
            for key, index, post in lane.posted:
                values[key] = post(raws[index])


def encode(variable: ModbusVariable, value: Value, default_order: ByteOrder = "ABCD") -> list[int]:
    """Registers holding ``value`` for ``variable``: the inverse of decoding, for simulators
    and tests. Factor and offset are undone; bit variables are not supported here."""
    kind = variable.type
    if kind == "bool":
        return [1 if value else 0]
    order = variable.byte_order or default_order
    swapped, endian = _LAYOUT[order]
    if kind == "str":
        size = 2 * variable.register_count
        raw = str(value).encode("latin-1")[: variable.length].ljust(size, b"\0")
        swapped = order in _STRING_SWAPPED
    else:
        number: Any = value
        if variable.factor != 1.0 or variable.offset != 0.0:
            number = (float(value) - variable.offset) / variable.factor
        if kind == "int":
            number = round(number) & 0xFF if variable.width == 8 else round(number)
        raw = struct.pack(endian + _code(variable), number)
    # decoding read the received bytes (or their word-swapped form) as one struct; undo that
    return list(struct.unpack(f"{'<' if swapped else '>'}{len(raw) // 2}H", raw))
