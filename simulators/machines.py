"""The user's own machine whatever its protocols: every source of a config served on
loopback, Modbus on pymodbus's server (``config_machine``), OPC UA on asyncua's
(``opcua_server``, loaded only when the config has such a source). What ``test --live``
and ``demo --config`` run."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.common.values import Value
from agent.config import Config
from agent.tools.alarmtest.spec import AlarmTest, TestFileError, coerce
from agent.tools.alarmtest.spec import load as load_tests
from simulators.config_machine import ConfigMachine

if TYPE_CHECKING:
    from simulators.opcua_server import OpcUaMachine
    from simulators.s7_server import S7Machine


def constants(config: Config, settings: list[str]) -> dict[str, Value]:
    """``--set plc.oil_temp=85``: a TOML value (or bare text for a string variable)."""
    variables = {key: variable for key, _, variable in config.variables()}
    found: dict[str, Value] = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or key not in variables:
            known = ", ".join(sorted(variables))
            raise SystemExit(f"--set {setting}: expected <source>.<variable>=value ({known})")
        try:
            raw = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            raw = text
        value = coerce(raw, variables[key])
        if isinstance(value, str) and variables[key].type != "str":
            raise SystemExit(f"--set {setting}: {value}")
        found[key] = value
    return found


def scenario(test: AlarmTest) -> Callable[[float], dict[str, Value]]:
    """A test's series as the machine's values, repeating every ``duration``."""
    return lambda t: {k: s.at(t % test.duration) for k, s in test.series.items()}


def from_args(
    args: Any,
) -> tuple[Config, dict[str, Value], Callable[[float], dict[str, Value]] | None]:
    """``--config``, ``--set`` and ``--scenario FILE --test NAME``, as every simulator of a
    config takes them: the config, its constants, and the values of a test's series."""
    from agent.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    values = None
    if args.scenario is not None:
        try:
            tests = {t.name: t for t in load_tests(Path(args.scenario)).tests}
        except TestFileError as exc:
            raise SystemExit(str(exc)) from None
        if args.test not in tests:
            raise SystemExit(
                f"--test: no test {args.test!r} in {args.scenario} ({', '.join(tests)})"
            )
        values = scenario(tests[args.test])
    return config, constants(config, args.set or []), values


@dataclass
class Machine:
    config: Config
    free_ports: bool = False
    bind: str | None = None
    values: Callable[[float], dict[str, Value]] = lambda t: {}  # seconds since start -> values
    offline: Callable[[float], set[str]] = lambda t: set()  # seconds since start -> silent
    constants: dict[str, Value] = field(default_factory=dict)
    parts: list[ConfigMachine | OpcUaMachine | S7Machine] = field(default_factory=list)
    started: float = 0.0

    async def start(self) -> dict[str, tuple[str, int]]:
        """Serve every source; returns where each is (host, port)."""
        modbus = ConfigMachine(self.config, free_ports=self.free_ports, bind=self.bind)
        self.parts = [modbus] if modbus.sources else []
        if any(s.protocol == "opcua" for s in self.config.sources):
            from simulators.opcua_server import OpcUaMachine

            self.parts.append(OpcUaMachine(self.config, free_ports=self.free_ports))
        if any(s.protocol == "s7" for s in self.config.sources):
            from simulators.s7_server import S7Machine

            self.parts.append(S7Machine(self.config, free_ports=self.free_ports))
        where: dict[str, tuple[str, int]] = {}
        for part in self.parts:
            part.values, part.offline, part.constants = self.values, self.offline, self.constants
            where.update(await part.start())
        # one clock for every part: a series runs from when the last server is up (asyncua's
        # takes a second to start), not from when each began
        self.started = time.monotonic()
        for part in self.parts:
            part.started = self.started
        return where

    async def stop(self) -> None:
        for part in self.parts:
            await part.stop()
        self.parts = []
