"""The config's shared vocabulary: what every section and every protocol's source uses
(durations, severities, value types, the base model), so a protocol's folder can own its
config model without importing ``agent.config``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86_400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``1.5``, ``"500ms"``, ``"5s"``, ``"2m"`` or ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '500ms', '5s', '2m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(
        f"{value!r} is not a duration: use seconds (1.5) or a string like '500ms', '5s', '2m', '1h'"
    )


Duration = Annotated[float, BeforeValidator(parse_duration)]

Severity = Literal["low", "medium", "high"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}

#: IXON's variable types: what alarms compare
ValueType = Literal["bool", "int", "float", "str"]
INT_WIDTHS = (8, 16, 32, 64)
FLOAT_WIDTHS = (32, 64)


class Model(BaseModel):
    """Every config section: unknown keys are errors, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def item_place(where: str, index: int, item: Any) -> str:
    """``alarms[3] (Oil temperature high)``: the index, and the name a person knows it by."""
    name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
    return f"{where}[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")


def check_width(kind: str | None, value: int | None) -> int | None:
    """An int's or float's width in bits: 16 and 32 by default; nothing else has one.
    (``kind`` None: the type itself was wrong, and that error says enough.)"""
    if kind is None:
        return value
    if value is None:
        return {"int": 16, "float": 32}.get(kind or "")
    allowed = {"int": INT_WIDTHS, "float": FLOAT_WIDTHS}.get(kind or "")
    if allowed is None:
        raise ValueError(f"width does not apply to type {kind!r}")
    if value not in allowed:
        raise ValueError(f"width {value} is not valid for {kind}: use one of {allowed}")
    return value


def check_scaling(kind: str | None, name: str, value: float) -> float:
    """``factor`` and ``offset`` scale numbers only."""
    default = 1.0 if name == "factor" else 0.0
    if value != default and kind in ("bool", "str"):
        raise ValueError(f"{name} applies to int and float variables only")
    return value


def check_length(kind: str | None, value: int | None) -> int | None:
    """A str variable's number of characters: required for it, and for nothing else."""
    if kind is None:
        return value
    if value is not None and kind != "str":
        raise ValueError("length applies to type 'str' only")
    if value is None and kind == "str":
        raise ValueError("a str variable needs length (number of characters)")
    return value
