"""Rules: a configured alarm compiled for evaluation (its inputs, trigger and hold
predicates, ids), and the built-in offline alarm of each source."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from agent.alarms.conditions import Predicate, compare, describe_condition
from agent.alarms.formula import compile_formula
from agent.common.ids import short_id
from agent.config import Alarm, Config, Source, bit_name


@dataclass(frozen=True, slots=True)
class Input:
    """One value an alarm reads, with what a person needs to make sense of it."""

    key: str  # "<source>.<variable>"
    label: str
    unit: str | None = None

    @property
    def source(self) -> str:
        return self.key.partition(".")[0]


@dataclass(frozen=True, slots=True)
class Rate:
    """How a ``rate_of_change`` alarm turns samples into a rate."""

    per: float  # seconds the rate is given per (60: per minute)
    window: float  # seconds between the two samples it is taken from, at least

    def __call__(
        self, samples: deque[tuple[float, float]], now: float, value: float
    ) -> float | None:
        """Add the sample, return the rate; None while the samples do not span ``window``,
        or span a hole more than twice as long (the agent was held up: not a rate)."""
        samples.append((now, value))
        horizon = now - self.window
        while len(samples) > 2 and samples[1][0] <= horizon:
            samples.popleft()  # keep one sample at or before the window's start
        then, old = samples[0]
        span = now - then
        if then > horizon or span > 2 * self.window:
            return None
        return float(f"{(value - old) / span * self.per:.4g}")  # as a person reads it


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """A configured alarm, compiled for evaluation.

    A ``variable`` alarm's predicates take the variable's value (for a rate of change, the
    rate: ``rate`` is set); a ``formula`` alarm's take the tuple of its inputs' values; an
    ``offline`` alarm's take "online"/"offline". One ``error_bits`` alarm compiles to a rule
    per bit.
    """

    name: str
    public_id: str
    inputs: tuple[Input, ...]
    severity: Literal["low", "medium", "high"]
    on_delay: float
    off_delay: float
    instructions: str
    condition_text: str
    triggers: Predicate
    holds: Predicate  # while active: true until the condition is gone (past the deadband)
    kind: Literal["variable", "formula", "offline"] = "variable"
    max_notifications: int = 0  # 0: no flapping control
    flap_window: float = 3600.0
    #: error_bits and bit_pattern: the word's hex digits, to show its value in hex
    digits: int = 0
    bit: int | None = None  # error_bits: the bit this rule watches
    rate: Rate | None = None

    @property
    def source(self) -> str:
        return self.inputs[0].source if self.inputs else ""

    @property
    def variable(self) -> str:
        return self.inputs[0].key if self.inputs else ""

    @property
    def label(self) -> str:
        return self.inputs[0].label if self.inputs else self.name

    @property
    def unit(self) -> str | None:
        return self.inputs[0].unit if self.inputs else None

    def shown(self, value: Any) -> Any:
        """A value as a message gives it: a word (error_bits, bit_pattern) in hex, ``0x0009``,
        as the bit tables of device manuals are; anything else as it is."""
        return in_hex(value, self.digits) or value

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(i.source for i in self.inputs)

    @classmethod
    def synthetic(
        cls,
        name: str,
        public_id: str,
        severity: Literal["low", "medium", "high"],
        instructions: str,
        condition_text: str,
        inputs: tuple[Input, ...] = (),
    ) -> AlarmRule:
        """A rule that no condition drives: a test message, a removed alarm's end."""
        return cls(
            name=name,
            public_id=public_id,
            inputs=inputs,
            severity=severity,
            on_delay=0.0,
            off_delay=0.0,
            instructions=instructions,
            condition_text=condition_text,
            triggers=bool,
            holds=bool,
        )

    @classmethod
    def compile_all(cls, alarm: Alarm, config: Config) -> list[AlarmRule]:
        """The alarm's rules: one per bit of an ``error_bits`` alarm, else just one."""
        if alarm.form != "error_bits":
            return [cls.compile(alarm, config)]
        assert alarm.variable is not None and alarm.bits is not None
        variable = config.variable(alarm.variable)
        width = variable.width or 16
        common = _common(alarm, config)
        rules = []
        for bit, spec in sorted(alarm.bits.items()):
            name = bit_name(alarm.name, spec.text)
            rules.append(
                cls(
                    **common
                    | {
                        "name": name,
                        "public_id": short_id(
                            config.agent.agent_id, "alarm", alarm.name, f"bit {bit}"
                        ),
                        "severity": spec.severity or alarm.severity,
                        "instructions": alarm.instructions
                        if spec.instructions is None
                        else spec.instructions,
                    },
                    inputs=(Input(alarm.variable, variable.display_name, variable.unit),),
                    condition_text=f"bit {bit} set",
                    triggers=_bit_set(bit),
                    holds=_bit_set(bit),
                    digits=width // 4,
                    bit=bit,
                )
            )
        return rules

    @classmethod
    def compile(cls, alarm: Alarm, config: Config) -> AlarmRule:
        """The rule of an alarm that has one (every form but ``error_bits``)."""
        common = _common(alarm, config)
        if alarm.form == "formula":
            assert alarm.formula is not None
            formula = compile_formula(alarm.formula, config.variable_types())
            inputs = []
            for key in formula.inputs:
                variable = config.variable(key)
                inputs.append(Input(key, variable.display_name, variable.unit))
            predicate = formula.evaluate
            return cls(
                inputs=tuple(inputs),
                condition_text=f"formula {alarm.formula}",
                triggers=predicate,
                holds=predicate,
                kind="formula",
                **common,
            )
        if alarm.form == "error_bits":
            raise ValueError(f"alarm {alarm.name!r} has a rule per bit: use compile_all")
        assert alarm.variable is not None
        variable = config.variable(alarm.variable)
        if alarm.form == "bit_pattern":
            assert alarm.mask is not None and alarm.pattern is not None
            digits = (variable.width or 16) // 4
            mask, pattern = alarm.mask, alarm.pattern
            matches: Predicate = lambda v: v & mask == pattern  # noqa: E731
            return cls(
                inputs=(Input(alarm.variable, variable.display_name, variable.unit),),
                condition_text=f"& {hex_word(mask, digits)} == {hex_word(pattern, digits)}",
                triggers=matches,
                holds=matches,
                digits=digits,
                **common,
            )
        assert alarm.condition and alarm.threshold is not None
        triggers = compare(alarm.condition, alarm.threshold)
        holds = (
            compare(alarm.condition, alarm.threshold, alarm.deadband)
            if alarm.deadband
            else triggers
        )
        condition = describe_condition(alarm.condition, alarm.threshold)
        if alarm.form == "rate_of_change":
            assert alarm.per is not None and alarm.window is not None
            named = _PER.get(alarm.per)  # degC/min; else degC per 30 s
            unit = (
                f"{variable.unit or ''}/{named}"
                if named
                else f"{variable.unit or ''} per {alarm.per:g} s".strip()
            )
            return cls(
                inputs=(Input(alarm.variable, f"{variable.display_name} rate", unit),),
                condition_text=f"rate {condition} {unit} (over {alarm.window:g} s)",
                triggers=triggers,
                holds=holds,
                rate=Rate(alarm.per, alarm.window),
                **common,
            )
        return cls(
            inputs=(Input(alarm.variable, variable.display_name, variable.unit),),
            condition_text=condition,
            triggers=triggers,
            holds=holds,
            **common,
        )


def _common(alarm: Alarm, config: Config) -> dict[str, Any]:
    return {
        "name": alarm.name,
        "public_id": short_id(config.agent.agent_id, "alarm", alarm.name),
        "severity": alarm.severity,
        "on_delay": alarm.on_delay,
        "off_delay": alarm.off_delay,
        "instructions": alarm.instructions,
        "max_notifications": alarm.max_notifications,
        "flap_window": alarm.flap_window,
    }


def hex_word(value: int, digits: int) -> str:
    """``0x00F0``: a word as device manuals print it (a negative int as its bits)."""
    return f"0x{value & ((1 << 4 * digits) - 1):0{digits}X}"


def in_hex(value: Any, digits: int) -> str | None:
    """``value`` as a word in hex when ``digits`` says it is one and it is an int; else None."""
    if digits and isinstance(value, int) and not isinstance(value, bool):
        return hex_word(value, digits)
    return None


def _bit_set(bit: int) -> Predicate:
    return lambda v: (v >> bit) & 1 == 1


#: a rate's ``per`` with a unit of its own: seconds -> its name
_PER = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}


def offline_rule(source: Source, agent_id: str) -> AlarmRule:
    """IXON's connection monitoring: an alarm when a source has not answered for a while."""
    after = f"{source.offline_after:g} s"
    return AlarmRule(
        name=f"Source {source.name} offline",
        public_id=short_id(agent_id, "offline", source.name),
        inputs=(Input(source.name, "Connection"),),
        severity=source.offline_severity,
        on_delay=source.offline_after,
        off_delay=0.0,
        instructions=(
            f"No answer from {source.describe} for {after}: check the"
            " device's power and its network or serial connection. Its alarms are on hold"
            " until it answers again."
        ),
        condition_text=f"no answer for {after}",
        triggers=lambda v: v == "offline",
        holds=lambda v: v == "offline",
        kind="offline",
    )
