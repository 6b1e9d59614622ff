"""What a variable's value is, how a person reads it, and how it goes into JSON."""

from __future__ import annotations

import math
from typing import Any, Final, TypeVar, cast

T = TypeVar("T")

#: a decoded variable's value (IXON's types bool, int, float, str)
Value = bool | int | float | str

#: register tables that hold single bits, not 16-bit words
BIT_KINDS: Final = frozenset({"coil", "discrete_input"})


def show(value: object, unit: str | None = None) -> str:
    """A value as a person reads it: ``true``, ``84.2 degC``."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{text} {unit}" if unit else text


def json_safe(value: T) -> T:
    """``value`` with every NaN or infinite float as None: RFC 8259 has no such numbers, and a
    receiver (ilert, ``jq``, ``JSON.parse``) rejects the whole document for one of them.
    (A tuple comes back as a list, as JSON has it.)"""
    return cast(T, _json_safe(value))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
