"""The user's own machine whatever its protocols: every source of a config served on
loopback, Modbus on pymodbus's server (``config_machine``), OPC UA on asyncua's
(``opcua_server``, loaded only when the config has such a source). What ``test --live``
and ``demo --config`` run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.common.values import Value
from agent.config import Config
from simulators.config_machine import ConfigMachine

if TYPE_CHECKING:
    from simulators.opcua_server import OpcUaMachine


@dataclass
class Machine:
    config: Config
    free_ports: bool = False
    bind: str | None = None
    values: Callable[[float], dict[str, Value]] = lambda t: {}  # seconds since start -> values
    offline: Callable[[float], set[str]] = lambda t: set()  # seconds since start -> silent
    constants: dict[str, Value] = field(default_factory=dict)
    parts: list[ConfigMachine | OpcUaMachine] = field(default_factory=list)
    started: float = 0.0

    async def start(self) -> dict[str, tuple[str, int]]:
        """Serve every source; returns where each is (host, port)."""
        modbus = ConfigMachine(self.config, free_ports=self.free_ports, bind=self.bind)
        self.parts = [modbus] if modbus.sources else []
        if any(s.protocol == "opcua" for s in self.config.sources):
            from simulators.opcua_server import OpcUaMachine

            self.parts.append(OpcUaMachine(self.config, free_ports=self.free_ports))
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
