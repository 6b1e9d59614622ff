"""The user's own machine on S7: every ``s7`` source of an ``agent.toml`` on python-snap7's
server, each variable encoded at its address with its declared type.

Run ``python -m simulators.s7_server --config agent.toml [--port 0] [--scenario FILE --test
NAME] [--set press.oil_temp=85] [--missing-db press:10] [--silent press]``. Each source is
one server on its port (``--port 0``: free ports, printed) on 127.0.0.1, with every DB the
config names (sized to its last variable), and the M, I and Q areas. Values come from an
alarm test's series (repeating), from constants, or are zero, false or empty.

Fault switches: a DB left out (``missing``: "object does not exist" for its items), a
source that accepts connections and never answers (``silent``), the CPU's mode (``stop``),
and a source switched off and on (``down`` / ``up``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from snap7.server import Server
from snap7.type import SrvArea

from agent.common.values import Value
from agent.config import Config
from agent.sources.s7.config import S7Source, S7Variable
from agent.sources.s7.decode import encode
from agent.tools.alarmtest.spec import default_value

AREAS = {"DB": SrvArea.DB, "M": SrvArea.MK, "I": SrvArea.PE, "Q": SrvArea.PA}
AREA_SIZE = 1024  # bytes of M, I and Q beyond the last variable's


class ModeServer(Server):
    """python-snap7's server, answering the CPU's mode (SZL 0x0424) as a PLC does: 3.3's
    own server does not serve that list, and its client reports RUN whatever the mode."""

    requests = 0  # read requests (PDUs) answered; the read events count their items

    def _handle_read_area(self, request: dict[str, Any], client_address: tuple[str, int]) -> bytes:
        self.requests += 1
        return super()._handle_read_area(request, client_address)

    def _get_szl_data(self, szl_id: int, szl_index: int) -> bytes | None:
        if szl_id == 0x0424:
            mode = 0x08 if self.cpu_state == 8 else 0x04  # RUN, else STOP
            record = struct.pack(">HBB", 0x4303, 0xFF, mode) + bytes(16)
            return struct.pack(">HH", len(record), 1) + record
        return super()._get_szl_data(szl_id, szl_index)


class Silent:
    """A TCP listener that accepts and never answers: a hung PLC."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_server(("127.0.0.1", port))
        self.port = int(self.socket.getsockname()[1])
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.socket.accept()[0])

    def close(self) -> None:
        self.socket.close()
        for held in self.held:
            held.close()


@dataclass
class Served:
    source: S7Source
    server: ModeServer | Silent
    port: int
    memory: dict[tuple[str, int], bytearray]
    reads: list[tuple[int, int, int, int]] = field(default_factory=list)  # area, db, start, size


def _memory(source: S7Source, missing: set[int]) -> dict[tuple[str, int], bytearray]:
    ends: dict[tuple[str, int], int] = {}
    for variable in source.variables:
        where = variable.where
        ends[where.group] = max(ends.get(where.group, 0), where.byte + variable.size)
    for area in ("M", "I", "Q"):
        ends[(area, 0)] = max(ends.get((area, 0), 0), AREA_SIZE)
    return {g: bytearray(n) for g, n in ends.items() if not (g[0] == "DB" and g[1] in missing)}


@dataclass
class S7Machine:
    config: Config
    free_ports: bool = False
    values: Callable[[float], dict[str, Value]] = lambda t: {}  # seconds since start -> values
    offline: Callable[[float], set[str]] = lambda t: set()  # seconds since start -> silent
    constants: dict[str, Value] = field(default_factory=dict)
    missing: dict[str, set[int]] = field(default_factory=dict)  # source -> DBs left out
    silent: set[str] = field(default_factory=set)  # sources that never answer, from start
    tick: float = 0.05
    served: dict[str, Served] = field(default_factory=dict)
    current: dict[str, Value] = field(default_factory=dict)
    started: float = 0.0
    _task: asyncio.Task[None] | None = None
    _down: dict[str, Served] = field(default_factory=dict)
    _quiet: set[str] = field(default_factory=set)  # switched off by ``offline``, for now

    @property
    def sources(self) -> list[S7Source]:
        return [s for s in self.config.sources if isinstance(s, S7Source)]

    @property
    def ports(self) -> dict[str, tuple[str, int]]:
        return {name: ("127.0.0.1", s.port) for name, s in self.served.items()}

    async def start(self) -> dict[str, tuple[str, int]]:
        for source in self.sources:
            port = 0 if self.free_ports else source.port
            self.served[source.name] = self._serve(source, port)
        self.started = time.monotonic()
        await self.update()
        self._task = asyncio.create_task(self._run(), name="s7-machine")
        return self.ports

    def _serve(self, source: S7Source, port: int) -> Served:
        if source.name in self.silent:
            silent = Silent(port)
            return Served(source, silent, silent.port, {})
        memory = _memory(source, self.missing.get(source.name, set()))
        server = ModeServer(log=False)
        for (area, number), data in memory.items():
            server.register_area(AREAS[area], number, data)
        served = Served(source, server, 0, memory)
        server.set_read_events_callback(
            lambda event: served.reads.append(
                (event.EvtParam1, event.EvtParam2, event.EvtParam3, event.EvtParam4)
            )
        )
        if port == 0:  # python-snap7 binds what it is given: find a free port first
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
        server.start(tcp_port=port)
        served.port = port
        return served

    def stop_cpu(self, name: str, stop: bool = True) -> None:
        """The CPU to STOP (or RUN again): reads still answer, as a real one's do."""
        server = self.served[name].server
        assert isinstance(server, ModeServer)
        server.set_cpu_status(4 if stop else 8)

    def down(self, name: str) -> None:
        """Switch a source's PLC off; ``up`` switches it on again, on the same port."""
        served = self.served.pop(name)
        self._down[name] = served
        _close(served)

    async def up(self, name: str) -> None:
        old = self._down.pop(name)
        self.served[name] = self._serve(old.source, old.port)
        for key in [k for k in self.current if k.startswith(f"{name}.")]:
            del self.current[key]  # new memory holds zeros: write everything again

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for served in [*self.served.values(), *self._down.values()]:
            with contextlib.suppress(Exception):
                _close(served)
        self.served, self._down = {}, {}

    async def update(self) -> None:
        """Write the values of now into the areas (only what changed); a source in one of
        ``offline``'s windows is switched off for it (its connections refused)."""
        elapsed = time.monotonic() - self.started
        quiet = self.offline(elapsed)
        for name in [n for n in self.served if n in quiet]:
            self.down(name)
            self._quiet.add(name)
        for name in [n for n in self._quiet if n not in quiet]:
            self._quiet.discard(name)
            await self.up(name)
        now = self.values(elapsed) | self.constants
        for name, served in list(self.served.items()):
            for variable in served.source.variables:
                key = f"{name}.{variable.name}"
                value = now.get(key, default_value(variable))
                if self.current.get(key) == value and key in self.current:
                    continue
                _write(served.memory, variable, value)
                self.current[key] = value

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self.update()


def _close(served: Served) -> None:
    if isinstance(served.server, ModeServer):
        if served.server.running:
            served.server.stop()
    else:
        served.server.close()


def _write(memory: dict[tuple[str, int], bytearray], variable: S7Variable, value: Value) -> None:
    where = variable.where
    data = memory.get(where.group)
    if data is None:
        return  # a missing DB
    if variable.type == "bool":
        mask = 1 << (where.bit or 0)
        data[where.byte] = data[where.byte] | mask if value else data[where.byte] & ~mask
        return
    raw = encode(variable, value)
    data[where.byte : where.byte + len(raw)] = raw


async def _serve_config(args: argparse.Namespace) -> None:
    from simulators.machines import from_args

    config, constants, values = from_args(args)
    machine = S7Machine(config, free_ports=args.port == 0)
    machine.constants = constants
    machine.silent = set(args.silent or [])
    for text in args.missing_db or []:
        name, _, number = text.partition(":")
        if not number.isdigit():
            raise SystemExit(f"--missing-db {text}: expected SOURCE:NUMBER, as press:10")
        machine.missing.setdefault(name, set()).add(int(number))
    if values is not None:
        machine.values = values
    await machine.start()
    if not machine.served:
        raise SystemExit(f"{args.config}: no s7 source to serve")
    print(f"S7 simulator of {args.config}:", flush=True)
    for name, served in machine.served.items():
        source = served.source
        print(
            f"  {name}: 127.0.0.1:{served.port} rack {source.rack} slot {source.slot}", flush=True
        )
    try:
        await asyncio.Event().wait()
    finally:
        await machine.stop()


def main(argv: list[str] | None = None) -> None:
    options = argparse.ArgumentParser(prog="python -m simulators.s7_server")
    add = options.add_argument
    add("--config", required=True, help="serve this agent.toml's s7 sources")
    add("--port", type=int, default=None, help="0: free ports (printed)")
    add("--scenario", metavar="FILE", help="an alarm test file: its series drive the values")
    add("--test", metavar="NAME", help="the test in --scenario whose series run")
    add("--set", action="append", metavar="SOURCE.VAR=VALUE", help="a constant value")
    add("--missing-db", action="append", metavar="SOURCE:NUMBER", help="a DB left out")
    add("--silent", action="append", metavar="SOURCE", help="accepts, never answers")
    args = options.parse_args(argv)
    if args.scenario is not None and args.test is None:
        options.error("--scenario needs --test NAME")
    logging.getLogger("snap7").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_config(args))


if __name__ == "__main__":
    main()
