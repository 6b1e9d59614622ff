"""Expected against sent: exact matching, one line per test, a side-by-side diff, JUnit XML."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from agent.common.values import Value, show
from agent.tools.alarmtest.simulate import Sent
from agent.tools.alarmtest.spec import Expectation


@dataclass
class Occurrence:
    """What the webhooks were sent about one alarm occurrence."""

    alarm: str
    occurrence: str
    start: float | None = None
    end: float | None = None
    value: Value | None = None
    webhooks: set[str] = field(default_factory=set)


def occurrences(sent: list[Sent]) -> list[Occurrence]:
    found: dict[str, Occurrence] = {}
    for s in sent:
        o = found.setdefault(s.occurrence, Occurrence(s.alarm, s.occurrence))
        if s.kind == "start":
            if o.start is None:
                o.start, o.value = s.at, s.value
            o.webhooks.add(s.webhook)
        elif s.kind == "end" and o.end is None:
            o.end = s.at
    return sorted(found.values(), key=lambda o: (o.start if o.start is not None else -1, o.alarm))


def _near(actual: float | None, expected: float | None, tolerance: float) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    return abs(actual - expected) <= tolerance + 1e-9


def _same_value(actual: Value | None, expected: Value | None) -> bool:
    if expected is None:
        return True
    if isinstance(actual, str) and actual.startswith("0x") and type(expected) is int:
        return int(actual, 16) == expected  # a fault word, given in hex, expected as a number
    if isinstance(expected, float | int) and not isinstance(expected, bool):
        return isinstance(actual, float | int) and math.isclose(actual, expected, abs_tol=1e-6)
    return actual == expected


def fits(o: Occurrence, e: Expectation) -> bool:
    return (
        o.alarm == e.alarm
        and _near(o.start, e.start, e.tolerance)
        and _near(o.end, e.end, e.tolerance)
        and _same_value(o.value, e.value)
        and (e.webhooks is None or set(e.webhooks) == o.webhooks)
    )


@dataclass
class Outcome:
    name: str
    matched: list[tuple[Expectation, Occurrence]]
    missing: list[Expectation]
    unexpected: list[Occurrence]
    seconds: float = 0.0  # wall time the test took
    detail: str = ""

    @property
    def passed(self) -> bool:
        return not self.missing and not self.unexpected


def compare(name: str, expected: tuple[Expectation, ...], sent: list[Sent]) -> Outcome:
    """Each expectation takes the first unclaimed occurrence that fits it; the rest of both
    sides are the failures."""
    left = occurrences(sent)
    matched, missing = [], []
    for e in sorted(expected, key=lambda e: e.start):
        o = next((o for o in left if fits(o, e)), None)
        if o is None:
            missing.append(e)
        else:
            left.remove(o)
            matched.append((e, o))
    return Outcome(name, matched, missing, left)


def _at(t: float | None) -> str:
    return "-" if t is None else f"{t:g}s"


def describe_expected(e: Expectation) -> str:
    text = f"{e.alarm}: start {_at(e.start)}, end {'(active)' if e.end is None else _at(e.end)}"
    text += f" ±{e.tolerance:g}s"
    if e.value is not None:
        text += f", value {show(e.value)}"
    if e.webhooks is not None:
        text += f", to {', '.join(e.webhooks) or 'none'}"
    return text


def describe_sent(o: Occurrence) -> str:
    text = f"{o.alarm}: start {_at(o.start)}, end {'(active)' if o.end is None else _at(o.end)}"
    if o.value is not None:
        text += f", value {show(o.value)}"
    return text + f", to {', '.join(sorted(o.webhooks)) or 'none'}"


def diff(outcome: Outcome) -> list[str]:
    """Expected and sent side by side: what each missing expectation came closest to, and
    every sent occurrence nobody expected."""
    rows: list[tuple[str, str]] = []
    spare = list(outcome.unexpected)
    for e in outcome.missing:
        close = next((o for o in spare if o.alarm == e.alarm), None)
        if close is not None:
            spare.remove(close)
        rows.append((describe_expected(e), describe_sent(close) if close else "(nothing sent)"))
    rows += [("(nothing expected)", describe_sent(o)) for o in spare]
    width = max([len("expected"), *(len(a) for a, _ in rows)])
    lines = [f"    {'expected':<{width}}  | sent"]
    lines += [f"    {a:<{width}}  | {b}" for a, b in rows]
    return lines


def line(outcome: Outcome, simulated: float) -> str:
    verdict = "PASS" if outcome.passed else "FAIL"
    told = len(outcome.matched) + len(outcome.unexpected)
    return (
        f"{verdict}  {outcome.name}  ({told} occurrence(s) sent, {simulated:g} s in"
        f" {outcome.seconds * 1000:.0f} ms{outcome.detail})"
    )


def junit(path: Path, suites: list[tuple[str, list[Outcome]]]) -> None:
    """JUnit XML, one suite per test file, as CI systems read it."""
    root = ET.Element("testsuites")
    for file_name, outcomes in suites:
        failures = sum(not o.passed for o in outcomes)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=file_name,
            tests=str(len(outcomes)),
            failures=str(failures),
            errors="0",
            time=f"{sum(o.seconds for o in outcomes):.3f}",
        )
        for o in outcomes:
            case = ET.SubElement(
                suite, "testcase", name=o.name, classname=file_name, time=f"{o.seconds:.3f}"
            )
            if not o.passed:
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=f"{len(o.missing)} missing, {len(o.unexpected)} unexpected",
                )
                failure.text = "\n".join(diff(o))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
