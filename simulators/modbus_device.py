"""A packaging machine on Modbus TCP: pymodbus's server plus a scripted machine model.

Run ``python -m simulators.modbus_device [--host 127.0.0.1] [--port 5020]``. With
``--config agent.toml [--port 0] [--scenario FILE --test NAME] [--set plc.oil_temp=85]`` it is
the user's own machine instead (``simulators.config_machine``): every Modbus TCP source of
that config on its own host and port (``--port 0``: free ports, printed), values from an
alarm test's series (repeating) or constants, else zero. Otherwise the scenario
repeats every ``--period`` seconds and drives the values across the default alarms'
thresholds and back: the cooling fan's fault bit comes and goes while oil temperature climbs
past 80 degC, fast enough to trip the rate-of-change alarm first, a lubrication fault bit
comes and goes, hydraulic pressure dips below 2 bar, the motor stops briefly.

Register map (unit 1, byte order ABCD; the top-level agent.toml reads exactly this):

    holding 100-101  oil_temp       float32  degC
    holding 102      pressure       int16    x0.01 bar
    holding 103      fault_word     uint16   bit 3 = lubrication, bit 5 = cooling fan
    holding 104-105  cycle_count    uint32
    input   0        motor_current  int16    x0.1 A
    coil    0        motor_running  bool
    discrete 0       guard_closed   bool
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from agent.common.values import BIT_KINDS, Value
from agent.sources.modbus.config import ModbusVariable
from agent.sources.modbus.decode import encode
from simulators._http import parser
from simulators.config_machine import ConfigMachine
from simulators.machines import from_args

FUNCTION_CODE = {"coil": 1, "discrete_input": 2, "holding": 3, "input": 4}
REGISTER_SPACE = 1000  # addresses 0..999 of each kind exist; beyond answers "illegal address"


def _var(name: str, register: str, address: int, type_: str, **extra: object) -> ModbusVariable:
    return ModbusVariable.model_validate(
        {"name": name, "register": register, "address": address, "type": type_, **extra}
    )


MACHINE: dict[str, ModbusVariable] = {
    v.name: v
    for v in (
        _var("oil_temp", "holding", 100, "float", width=32, unit="degC"),
        _var("pressure", "holding", 102, "int", factor=0.01, unit="bar"),
        _var("fault_word", "holding", 103, "int", signed=False),
        _var("cycle_count", "holding", 104, "int", width=32, signed=False),
        _var("motor_current", "input", 0, "int", factor=0.1, unit="A"),
        _var("motor_running", "coil", 0, "bool"),
        _var("guard_closed", "discrete_input", 0, "bool"),
    )
}
LUBE_FAULT_BIT = 3
FAN_FAULT_BIT = 5


def _ramp(t: float, t0: float, t1: float, v0: float, v1: float) -> float:
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def packaging_scenario(t: float, period: float = 30.0) -> dict[str, Value]:
    """The machine's values ``t`` seconds into the scenario (it repeats every ``period``)."""
    phase = (t % period) / period
    if phase < 0.15:
        oil = 65.0
    elif phase < 0.35:
        oil = _ramp(phase, 0.15, 0.35, 65.0, 88.0)
    elif phase < 0.5:
        oil = 88.0
    elif phase < 0.7:
        oil = _ramp(phase, 0.5, 0.7, 88.0, 65.0)
    else:
        oil = 65.0
    running = not 0.85 <= phase < 0.95
    return {
        "oil_temp": round(oil, 1),
        "pressure": 1.5 if 0.6 <= phase < 0.8 else 4.5,
        "fault_word": ((1 << LUBE_FAULT_BIT) if 0.4 <= phase < 0.6 else 0)
        | ((1 << FAN_FAULT_BIT) if 0.1 <= phase < 0.3 else 0),
        "cycle_count": int(t),
        "motor_current": 12.5 if running else 0.0,
        "motor_running": running,
        "guard_closed": not 0.9 <= phase < 0.95,
    }


def idle_scenario(t: float, period: float = 30.0) -> dict[str, Value]:
    """Everything normal, all the time: tests set values themselves."""
    values = packaging_scenario(0.0, period)
    values["cycle_count"] = 0
    return values


SCENARIOS: dict[str, Callable[[float, float], dict[str, Value]]] = {
    "packaging": packaging_scenario,
    "idle": idle_scenario,
}


@dataclass
class ModbusDeviceSimulator:
    """pymodbus server + scenario ticker; values can be pinned with ``hold``.

    Fault switches for tests and for trying an agent config against a difficult device:
    ``holes`` (register ranges the device refuses with "illegal data address"), ``fault``
    (answer every read with this Modbus exception code, e.g. 6 = device busy) and ``hang``
    (accept requests but never answer). ``requests`` logs every read as (function code,
    address, count).
    """

    scenario: str = "packaging"
    period: float = 30.0
    unit_id: int = 1
    tick: float = 0.1
    size: int = REGISTER_SPACE
    holes: list[tuple[str, int, int]] = field(default_factory=list)  # (table, start, count)
    fault: int | None = None
    hang: bool = False
    held: dict[str, Value] = field(default_factory=dict)
    values: dict[str, Value] = field(default_factory=dict)
    requests: list[tuple[int, int, int]] = field(default_factory=list)
    server: ModbusTcpServer | None = None
    port: int = 0
    _task: asyncio.Task[None] | None = None
    _started: float = 0.0

    def device(self) -> SimDevice:
        """The pymodbus device: four tables of ``size`` addresses, minus the holes."""
        bits = [SimData(0, count=self.size, values=False, datatype=DataType.BITS)]
        tables = {
            table: self._registers([(a, n) for t, a, n in self.holes if t == table])
            for table in ("holding", "input")
        }
        simdata = (bits, list(bits), tables["holding"], tables["input"])
        return SimDevice(id=self.unit_id, simdata=simdata, action=self._action)

    def _registers(self, holes: list[tuple[int, int]]) -> list[SimData]:
        blocks, at = [], 0
        for start, count in sorted(holes):
            if start > at:
                blocks.append(SimData(at, count=start - at, values=0, datatype=DataType.REGISTERS))
            blocks.append(SimData(start, count=count, datatype=DataType.INVALID))
            at = start + count
        if at < self.size:
            blocks.append(SimData(at, count=self.size - at, values=0, datatype=DataType.REGISTERS))
        return blocks

    async def _action(
        self,
        function_code: int,
        _start: int,
        address: int,
        count: int,
        _registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None:  # our own writes (async_setValues), not a client's read
            return None
        self.requests.append((function_code, address, count))
        if self.hang:
            await asyncio.Event().wait()  # never answer; the client times out
        return ExcCodes(self.fault) if self.fault else None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen (port 0: the OS chooses) and start the scenario; returns the port."""
        self.server = ModbusTcpServer(self.device(), address=(host, port))
        await self.server.serve_forever(background=True)
        self.port = self.server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._started = time.monotonic()
        self.values = {}  # a new server starts from zeroed registers
        await self.update()
        self._task = asyncio.create_task(self._run(), name="modbus-device-scenario")
        return self.port

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.server:
            await self.server.shutdown()  # type: ignore[no-untyped-call]
            self.server = None

    async def hold(self, **values: Value) -> None:
        """Pin variables to values (overriding the scenario) and write them now."""
        self.held.update(values)
        await self.update()

    async def release(self, *names: str) -> None:
        for name in names or tuple(self.held):
            self.held.pop(name, None)
        await self.update()

    async def update(self) -> None:
        """Write the scenario's current values (held ones win) into the registers."""
        assert self.server is not None
        now = time.monotonic() - self._started
        values = SCENARIOS[self.scenario](now, self.period) | self.held
        for name, value in values.items():
            if self.values.get(name) == value:
                continue
            variable = MACHINE[name]
            data: list[int] | list[bool] = (
                [bool(value)] if variable.table in BIT_KINDS else encode(variable, value)
            )
            code = FUNCTION_CODE[variable.table]
            await self.server.async_setValues(self.unit_id, code, variable.address, data)
            self.values[name] = value

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self.update()


async def _main(args: argparse.Namespace) -> None:
    sim = ModbusDeviceSimulator(scenario=args.scenario, period=args.period, unit_id=args.unit_id)
    port = await sim.start(args.host, args.port)
    print(
        f"Modbus device simulator on {args.host}:{port} (unit {args.unit_id}, "
        f"scenario {args.scenario!r}, period {args.period:g}s)",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


async def _serve_config(args: argparse.Namespace) -> None:
    config, constants, values = from_args(args)
    machine = ConfigMachine(config, free_ports=args.port == 0)
    machine.constants = constants
    machine.fault = args.fault
    machine.silent = set(args.silent or [])
    if values is not None:
        machine.values = values
    where = await machine.start()
    print(f"Modbus simulator of {args.config}:", flush=True)
    for source in machine.sources:  # (the Modbus ones)
        host, port = where[source.name]
        print(f"  {source.name}: {host}:{port} unit {source.unit_id}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await machine.stop()


def main(argv: list[str] | None = None) -> None:
    options = parser("python -m simulators.modbus_device", __doc__, 5020)
    options.add_argument("--unit-id", type=int, default=1)
    options.add_argument(
        "--scenario",
        metavar="NAME|FILE",
        help=f"{' | '.join(sorted(SCENARIOS))} (default packaging); with --config: an alarm"
        " test file whose --test series the machine runs",
    )
    options.add_argument("--period", type=float, default=30.0, help="scenario length in seconds")
    options.add_argument(
        "--config",
        type=Path,
        help="serve this agent.toml's Modbus TCP (and RTU over TCP) sources instead",
    )
    options.add_argument("--test", metavar="NAME", help="the test in --scenario whose series run")
    options.add_argument(
        "--fault",
        type=int,
        metavar="CODE",
        help="with --config: answer every read with this"
        " Modbus exception code (e.g. 6, device busy)",
    )
    options.add_argument(
        "--silent",
        action="append",
        metavar="SOURCE",
        help="with --config: this source accepts requests and never answers",
    )
    options.add_argument(
        "--set", action="append", metavar="SOURCE.VAR=VALUE", help="with --config: a constant"
    )
    args = options.parse_args(argv)
    if args.config is None:
        if args.set or args.test or args.fault or args.silent:
            options.error("--set, --test, --fault and --silent need --config")
        args.scenario = args.scenario or "packaging"
        if args.scenario not in SCENARIOS:
            options.error(f"--scenario {args.scenario}: one of {', '.join(sorted(SCENARIOS))}")
    elif args.scenario is not None and not args.test:
        options.error("--scenario FILE needs --test NAME")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_config(args) if args.config else _main(args))


if __name__ == "__main__":
    main()
