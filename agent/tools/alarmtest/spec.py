"""Alarm test files (DESIGN.md 9.1): TOML, read into checked objects, every problem located.

A test file names the config under test and holds tests: value series per variable, windows
in which a source does not answer, and the notifications expected, each with its time.
"""

from __future__ import annotations

import bisect
import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from agent.alarms.rules import AlarmRule, offline_rule
from agent.common.values import Value
from agent.config import Config, ConfigError, Duration, Variable, load_config, parse_duration

Scalar = StrictBool | StrictInt | StrictFloat | StrictStr


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OfflineSpec(_Spec):
    source: str
    start: Duration = Field(alias="from", ge=0)
    to: Duration


class ExpectSpec(_Spec):
    alarm: str
    start: Duration = Field(ge=0)
    end: Duration | None = None  # None: still active when the test ends
    tolerance: Duration | None = Field(default=None, ge=0)
    value: Scalar | None = None
    webhooks: list[str] | None = None


class TestSpec(_Spec):
    name: str = Field(min_length=1)
    duration: Duration = Field(gt=0)
    values: dict[str, Any] = Field(default_factory=dict)  # checked against the config
    offline: list[OfflineSpec] = Field(default_factory=list)
    expect: list[ExpectSpec] = Field(default_factory=list)


class FileSpec(_Spec):
    config: str = "agent.toml"
    tests: list[TestSpec] = Field(min_length=1)


class TestFileError(Exception):
    """A test file that cannot run: each problem names its place (exit 2)."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(path, problems)
        self.path, self.problems = path, problems

    def __str__(self) -> str:
        return "\n".join(f"{self.path}: {p}" for p in self.problems)


def place(loc: tuple[str | int, ...]) -> str:
    """``('tests', 1, 'values', 'plc.oil_tmp')`` -> ``tests[1].values."plc.oil_tmp"``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = f'"{part}"' if "." in part or " " in part else part
            text += f".{name}" if text else name
    return text or "(top level)"


@dataclass(frozen=True)
class Series:
    """A variable's value over simulated time: held between points, or linear."""

    times: tuple[float, ...]
    values: tuple[Value, ...]
    linear: bool = False

    def at(self, t: float) -> Value:
        i = bisect.bisect_right(self.times, t) - 1
        if i < 0:
            return self.values[0]
        if not self.linear or i + 1 >= len(self.times):
            return self.values[i]
        t0, t1 = self.times[i], self.times[i + 1]
        v0, v1 = self.values[i], self.values[i + 1]
        assert not isinstance(v0, str | bool) and not isinstance(v1, str | bool)
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def changes_after(self, t: float) -> float | None:
        """The first time after ``t`` at which the value may differ (linear: always)."""
        if self.linear and self.times[0] <= t < self.times[-1]:
            return t
        i = bisect.bisect_right(self.times, t)
        return self.times[i] if i < len(self.times) else None


@dataclass(frozen=True)
class Expectation:
    alarm: str
    start: float
    end: float | None
    tolerance: float
    value: Value | None
    webhooks: tuple[str, ...] | None


@dataclass(frozen=True)
class AlarmTest:
    name: str
    duration: float
    series: dict[str, Series]  # "<source>.<variable>" -> series
    offline: dict[str, tuple[tuple[float, float], ...]]  # source -> windows [from, to)
    expect: tuple[Expectation, ...]


@dataclass(frozen=True)
class TestFile:
    path: Path
    config_path: Path
    config: Config
    tests: tuple[AlarmTest, ...]


_DEFAULTS: dict[str, Value] = {"bool": False, "int": 0, "float": 0.0, "str": ""}


def default_value(variable: Variable) -> Value:
    """What a variable without a series holds: zero, false or empty."""
    return _DEFAULTS[variable.type]


def coerce(value: Any, variable: Variable) -> Value | str:
    """The value as the alarm sees it, or why it cannot be one (a str)."""
    kind = variable.type
    scaled = variable.factor != 1.0 or variable.offset != 0.0
    if kind == "bool":
        return value if isinstance(value, bool) else f"{value!r} is not true/false"
    if kind == "str":
        return value if isinstance(value, str) else f"{value!r} is not a string"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is not a number"
    if kind == "int" and not scaled:
        return int(value) if float(value).is_integer() else f"{value!r} is not a whole number"
    return float(value)


def rules(config: Config) -> dict[str, AlarmRule]:
    """Every alarm by the name its messages carry, the built-in offline ones included."""
    found = {
        rule.name: rule for alarm in config.alarms for rule in AlarmRule.compile_all(alarm, config)
    }
    agent_id = config.agent.agent_id
    for source in config.sources:
        if source.offline_after:
            rule = offline_rule(source, agent_id)
            found[rule.name] = rule
    return found


def _points(at: str, spec: Any) -> tuple[list[tuple[float, Any]], bool] | str:
    """A series as written: a constant, ``[[time, value], ...]`` or
    ``{points = [...], interpolate = "step" | "linear"}``; or why it is none of them."""
    linear = False
    if isinstance(spec, dict):
        unknown = set(spec) - {"points", "interpolate"}
        if unknown:
            return f"unknown key {sorted(unknown)[0]!r} (a series has points, interpolate)"
        if spec.get("interpolate", "step") not in ("step", "linear"):
            return 'interpolate must be "step" or "linear"'
        linear = spec.get("interpolate") == "linear"
        spec = spec.get("points")
        if spec is None:
            return "points: missing"
    if not isinstance(spec, list):
        return [(0.0, spec)], False
    points = []
    for n, point in enumerate(spec):
        if not (isinstance(point, list) and len(point) == 2):
            return f"point {n}: expected [time, value], got {point!r}"
        try:
            points.append((parse_duration(point[0]), point[1]))
        except ValueError as exc:
            return f"point {n}: {exc}"
    return (points, linear) if points else "a series needs at least one point"


def _series(at: str, spec: Any, variable: Variable, problems: list[str]) -> Series | None:
    parsed = _points(at, spec)
    if isinstance(parsed, str):
        problems.append(f"{at}: {parsed}")
        return None
    points, linear = parsed
    times = [t for t, _ in points]
    if any(b <= a for a, b in itertools.pairwise(times)):
        problems.append(f"{at}: the points' times must increase")
        return None
    values: list[Value] = []
    for t, raw in points:
        value = coerce(raw, variable)
        if isinstance(value, str) and variable.type != "str":
            problems.append(f"{at}: at {t:g} s: {value} ({variable.type} variable)")
            return None
        values.append(value)
    if linear and variable.type not in ("int", "float"):
        problems.append(f'{at}: interpolate = "linear" needs a number variable')
        return None
    return Series(tuple(times), tuple(values), linear)


def _check(path: Path, spec: FileSpec, config: Config) -> tuple[AlarmTest, ...]:
    problems: list[str] = []
    variables = {key: variable for key, _, variable in config.variables()}
    sources = {s.name for s in config.sources}
    known_rules = rules(config)
    webhooks = {w.name for w in config.webhooks}
    tests = []
    seen: set[str] = set()
    for i, test in enumerate(spec.tests):
        at = f"tests[{i}]"
        if test.name in seen:
            problems.append(f"{at}.name: {test.name!r} is used by an earlier test")
        seen.add(test.name)
        series: dict[str, Series] = {}
        for key, raw in test.values.items():
            where = f"{at}.values.{place((key,))}"
            if key not in variables:
                near = ", ".join(sorted(variables)) or "none"
                problems.append(f"{where}: no such variable (known: {near})")
                continue
            made = _series(where, raw, variables[key], problems)
            if made is not None:
                series[key] = made
        for key, variable in variables.items():
            series.setdefault(key, Series((0.0,), (default_value(variable),)))
        offline: dict[str, list[tuple[float, float]]] = {}
        for j, window in enumerate(test.offline):
            where = f"{at}.offline[{j}]"
            if window.source not in sources:
                problems.append(f"{where}.source: no source {window.source!r}")
            elif window.to <= window.start:
                problems.append(f"{where}.to: must be after from")
            else:
                offline.setdefault(window.source, []).append((window.start, window.to))
        expects = []
        for j, expect in enumerate(test.expect):
            where = f"{at}.expect[{j}]"
            rule = known_rules.get(expect.alarm)
            if rule is None:
                names = ", ".join(repr(n) for n in known_rules)
                problems.append(f"{where}.alarm: no alarm {expect.alarm!r} (known: {names})")
                continue
            if expect.end is not None and expect.end < expect.start:
                problems.append(f"{where}.end: before its start")
            for name in expect.webhooks or []:
                if name not in webhooks:
                    problems.append(f"{where}.webhooks: no webhook {name!r}")
            polls = [s.poll_interval for s in config.sources if s.name in rule.sources] or [1.0]
            tolerance = expect.tolerance if expect.tolerance is not None else max(polls)
            webhook_names = tuple(expect.webhooks) if expect.webhooks is not None else None
            expects.append(
                Expectation(
                    expect.alarm, expect.start, expect.end, tolerance, expect.value, webhook_names
                )
            )
        windows = {k: tuple(sorted(v)) for k, v in offline.items()}
        tests.append(AlarmTest(test.name, test.duration, series, windows, tuple(expects)))
    if problems:
        raise TestFileError(path, problems)
    return tuple(tests)


def load(path: Path) -> TestFile:
    """Read and check a test file and its config; ``TestFileError`` names every problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TestFileError(path, [f"cannot read it: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise TestFileError(path, [f"not valid TOML: {exc}"]) from None
    try:
        spec = FileSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{place(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise TestFileError(path, problems) from None
    config_path = (path.parent / spec.config).resolve()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise TestFileError(path, [f"config: {config_path}: {p}" for p in exc.problems]) from None
    return TestFile(path, config_path, config, _check(path, spec, config))
