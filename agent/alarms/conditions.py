"""Conditions: the comparisons an alarm's trigger makes, and how they read to a person."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config import Threshold

Predicate = Callable[[Any], bool]


def compare(condition: str, threshold: Threshold, margin: float = 0.0) -> Predicate:
    """The trigger predicate; with ``margin`` > 0, the predicate that keeps an alarm active."""
    if condition in ("between", "outside"):
        assert isinstance(threshold, tuple)
        low, high = threshold
        if condition == "between":  # active inside the band; ends once outside it by margin
            return lambda v: low - margin <= v <= high + margin
        return lambda v: v < low + margin or v > high - margin
    t: Any = threshold
    match condition:
        case "==":
            return lambda v: v == t
        case "!=":
            return lambda v: v != t
        case ">" if not margin:
            return lambda v: v > t
        case "<" if not margin:
            return lambda v: v < t
        case ">" | ">=":  # with a deadband: active until the value is below t - margin
            return lambda v: v >= t - margin
        case "<" | "<=":  # with a deadband: active until the value is above t + margin
            return lambda v: v <= t + margin
    raise ValueError(f"unknown condition {condition!r}")


def describe_condition(condition: str, threshold: Threshold) -> str:
    """``> 80.0`` or ``between [10.0, 20.0]``, as shown to the person paged."""
    if isinstance(threshold, tuple):
        return f"{condition} [{threshold[0]}, {threshold[1]}]"
    if isinstance(threshold, bool):
        return f"{condition} {str(threshold).lower()}"
    return f"{condition} {threshold}"
