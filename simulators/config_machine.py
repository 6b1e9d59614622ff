"""The user's own machine: every ``modbus-tcp`` and ``modbus-rtu-over-tcp`` source of an
``agent.toml``, served as it says (RTU over TCP: with pymodbus's RTU framer on TCP).

Each (host, port) of the config is one pymodbus server (``free_ports``: each on a port the
OS chooses instead), holding a device per unit id with what the config declares, at any
address 0..65535 (the blocks the agent's planner reads). Every variable is encoded with its
declared type, width, factor/offset, bit and byte order. Values come from an alarm test's
series (repeating), from constants, or are zero, false or empty. Fault switches as for the
packaging machine: ``fault`` (an exception code for every read), ``silent`` (sources that
accept requests and never answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.common.values import BIT_KINDS, Value
from agent.config import Config
from agent.sources.modbus.config import ModbusSource, ModbusVariable
from agent.sources.modbus.decode import encode
from agent.sources.modbus.plan import plan_reads
from agent.tools.alarmtest.spec import default_value

FUNCTION_CODE = {"coil": 1, "discrete_input": 2, "holding": 3, "input": 4}
#: the sources served on TCP: Modbus TCP, and RTU over TCP (a serial device server's)
TCP_PROTOCOLS = frozenset({"modbus-tcp", "modbus-rtu-over-tcp"})
SPACE = 65536  # every address of every table exists


@dataclass
class Served:
    """One variable as the simulator keeps it: where it lives and how it is encoded."""

    key: str
    source: ModbusSource
    variable: ModbusVariable


def _blocks(spans: list[tuple[int, int]], bits: bool) -> list[SimData]:
    """Merged, ordered blocks over ``spans`` [start, end); an empty table gets one address
    (pymodbus wants every table to have a block)."""
    kind = DataType.BITS if bits else DataType.REGISTERS
    merged: list[list[int]] = []
    for start, end in sorted(spans) or [(SPACE - 1, SPACE)]:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [SimData(a, count=b - a, values=False if bits else 0, datatype=kind) for a, b in merged]


@dataclass
class ConfigMachine:
    config: Config
    free_ports: bool = False
    bind: str | None = None  # serve every source on this host instead of its own
    tick: float = 0.05
    values: Callable[[float], dict[str, Value]] = lambda t: {}  # seconds since start -> values
    constants: dict[str, Value] = field(default_factory=dict)
    fault: int | None = None
    silent: set[str] = field(default_factory=set)  # source names that never answer
    offline: Callable[[float], set[str]] = lambda t: set()  # seconds since start -> silent
    servers: dict[tuple[str, int], ModbusTcpServer] = field(default_factory=dict)
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)  # source -> where it is
    current: dict[str, Value] = field(default_factory=dict)
    _registers: dict[tuple[str, int, str, int], int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    started: float = 0.0
    _quiet: set[str] = field(default_factory=set)  # silent now, by ``offline``
    _closed: asyncio.Event = field(default_factory=asyncio.Event)  # set by stop()

    @property
    def sources(self) -> list[ModbusSource]:
        return [
            s
            for s in self.config.sources
            if isinstance(s, ModbusSource) and s.protocol in TCP_PROTOCOLS
        ]

    def served(self) -> Iterable[Served]:
        for source in self.sources:
            for variable in source.variables:
                yield Served(f"{source.name}.{variable.name}", source, variable)

    def _device(self, unit_id: int, names: list[str]) -> SimDevice:
        """A device holding exactly what the agent will read of these sources (its planned
        blocks, gaps included); any other address answers "illegal data address", as a real
        device with a register map does. (pymodbus's check of a table is quadratic in its
        size, so 65536-address tables are not an option.)"""
        spans: dict[str, list[tuple[int, int]]] = {t: [] for t in FUNCTION_CODE}
        for source in self.sources:
            if source.name in names:
                for block in plan_reads(source.variables, source.max_gap):
                    spans[block.table].append((block.address, block.address + block.count))
        simdata = tuple(_blocks(spans[table], table in BIT_KINDS) for table in FUNCTION_CODE)

        async def action(
            function_code: int, _start: int, address: int, count: int,
            _registers: list[int], set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:  # fmt: skip
            if set_values is not None:  # our own writes
                return None
            if (self.silent | self._quiet).intersection(names):
                await self._closed.wait()  # accept, never answer: the client times out
            return ExcCodes(self.fault) if self.fault else None

        return SimDevice(id=unit_id, simdata=simdata, action=action)  # type: ignore[arg-type]

    async def start(self) -> dict[str, tuple[str, int]]:
        """Listen for every (host, port) of the config; returns where each source is."""
        groups: dict[tuple[str, int], dict[int, list[str]]] = {}
        for source in self.sources:
            where = self._where(source)
            groups.setdefault(where, {}).setdefault(source.unit_id, []).append(source.name)
        rtu = {self._where(s) for s in self.sources if s.protocol == "modbus-rtu-over-tcp"}
        for (host, port), units in groups.items():
            devices = [self._device(unit, names) for unit, names in units.items()]
            framer = FramerType.RTU if (host, port) in rtu else FramerType.SOCKET
            server = ModbusTcpServer(
                devices, framer=framer, address=(host, 0 if self.free_ports else port)
            )
            await server.serve_forever(background=True)
            bound = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            self.servers[(host, port)] = server
            for names in units.values():
                for name in names:
                    self.ports[name] = (host, bound)
        self.started = time.monotonic()
        await self.update()
        self._task = asyncio.create_task(self._run(), name="config-machine")
        return self.ports

    async def stop(self) -> None:
        self._closed.set()  # requests held unanswered finish (into closed connections)
        await asyncio.sleep(0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for server in self.servers.values():
            await server.shutdown()  # type: ignore[no-untyped-call]
        self.servers = {}

    def _where(self, source: ModbusSource) -> tuple[str, int]:
        return (self.bind or source.host or "127.0.0.1", source.port)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def update(self) -> None:
        """Write the values of now into the registers (only what changed)."""
        elapsed = self.elapsed()
        self._quiet = self.offline(elapsed)
        now = self.values(elapsed) | self.constants
        for item in self.served():
            value = now.get(item.key, default_value(item.variable))
            if self.current.get(item.key) == value and item.key in self.current:
                continue
            await self._write(item, value)
            self.current[item.key] = value

    async def _write(self, item: Served, value: Value) -> None:
        source, variable = item.source, item.variable
        server = self.servers[self._where(source)]
        code = FUNCTION_CODE[variable.table]
        if variable.table in BIT_KINDS:
            await server.async_setValues(source.unit_id, code, variable.address, [bool(value)])
            return
        if variable.type == "bool" and variable.bit is not None:  # one bit of a register
            slot = (source.name, source.unit_id, variable.table, variable.address)
            word = self._registers.get(slot, 0)
            word = word | (1 << variable.bit) if value else word & ~(1 << variable.bit)
            self._registers[slot] = word
            # the agent reads the register as a 16-bit value in the source's byte order
            as_word = variable.model_copy(
                update={"type": "int", "bit": None, "signed": False, "width": 16}
            )
            registers = encode(as_word, word, source.byte_order)
            await server.async_setValues(source.unit_id, code, variable.address, registers)
            return
        registers = encode(variable, value, source.byte_order)
        await server.async_setValues(source.unit_id, code, variable.address, registers)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self.update()
