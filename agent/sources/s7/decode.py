"""S7 bytes to values: big-endian, as the PLC stores them. Pure, and untrusting: a STRING
whose header says more than it may hold is no value."""

from __future__ import annotations

import struct

from agent.common.values import Value
from agent.sources.s7.config import S7Variable

_FLOATS = {32: struct.Struct(">f"), 64: struct.Struct(">d")}


def decode(variable: S7Variable, data: bytes, offset: int, bit: int | None = None) -> Value | None:
    """The variable's value from its bytes at ``offset`` of ``data``; None: not a value.
    ``bit``: a bool's bit, when the caller has it at hand (else read from its address)."""
    kind = variable.type
    if kind == "bool":
        return bool((data[offset] >> (bit if bit is not None else variable.where.bit or 0)) & 1)
    if kind == "str":
        maximum, actual = data[offset], data[offset + 1]
        if actual > maximum or actual > (variable.length or 0):
            return None  # a header that does not fit its STRING: not to be believed
        return data[offset + 2 : offset + 2 + actual].decode("latin-1")
    width = variable.width or 16
    raw: float | int
    if kind == "float":
        raw = _FLOATS[width].unpack_from(data, offset)[0]
    else:
        raw = int.from_bytes(data[offset : offset + width // 8], "big", signed=variable.signed)
    if variable.factor != 1.0 or variable.offset != 0.0:
        return float(raw) * variable.factor + variable.offset
    return raw


def encode(variable: S7Variable, value: Value) -> bytes:
    """The bytes that hold ``value`` (scaling undone): what the simulator writes. A bool's
    byte is its bit alone; the caller merges it with the byte's other bits."""
    kind = variable.type
    if kind == "bool":
        return bytes([(1 << (variable.where.bit or 0)) if value else 0])
    if kind == "str":
        text = str(value).encode("latin-1")[: variable.length or 0]
        return bytes([variable.length or 0, len(text)]) + text.ljust(variable.length or 0, b"\0")
    width = variable.width or 16
    number = float(value)
    if variable.factor != 1.0 or variable.offset != 0.0:
        number = (number - variable.offset) / variable.factor
    if kind == "float":
        return _FLOATS[width].pack(number)
    return round(number).to_bytes(width // 8, "big", signed=variable.signed)
