"""Rules: a configured alarm compiled for evaluation (its inputs, trigger and hold
predicates, ids), and the built-in offline alarm of each source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agent.alarms.conditions import Predicate, compare, describe_condition
from agent.alarms.formula import compile_formula
from agent.common.ids import short_id
from agent.config import Alarm, Config, Source


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
class AlarmRule:
    """A configured alarm, compiled for evaluation.

    A ``variable`` alarm's predicates take the variable's value; a ``formula`` alarm's take
    the tuple of its inputs' values; an ``offline`` alarm's take "online"/"offline".
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
    def compile(cls, alarm: Alarm, config: Config) -> AlarmRule:
        agent_id = config.agent.agent_id
        common: dict[str, Any] = {
            "name": alarm.name,
            "public_id": short_id(agent_id, "alarm", alarm.name),
            "severity": alarm.severity,
            "on_delay": alarm.on_delay,
            "off_delay": alarm.off_delay,
            "instructions": alarm.instructions,
            "max_notifications": alarm.max_notifications,
            "flap_window": alarm.flap_window,
        }
        if alarm.formula is not None:
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
        assert alarm.variable and alarm.condition and alarm.threshold is not None
        variable = config.variable(alarm.variable)
        triggers = compare(alarm.condition, alarm.threshold)
        holds = (
            compare(alarm.condition, alarm.threshold, alarm.deadband)
            if alarm.deadband
            else triggers
        )
        return cls(
            inputs=(Input(alarm.variable, variable.display_name, variable.unit),),
            condition_text=describe_condition(alarm.condition, alarm.threshold),
            triggers=triggers,
            holds=holds,
            **common,
        )


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
            f"No answer from {source.address} (unit {source.unit_id}) for {after}: check the"
            " device's power and its network or serial connection. Its alarms are on hold"
            " until it answers again."
        ),
        condition_text=f"no answer for {after}",
        triggers=lambda v: v == "offline",
        holds=lambda v: v == "offline",
        kind="offline",
    )
