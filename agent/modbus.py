"""Modbus IO: one connection per source, polled block by block.

Nothing here raises out of a poll: an exception reply, a timeout or a dead device becomes a
``PollResult`` with errors, and the connection is retried with capped exponential backoff
and jitter (the first connect too: pymodbus never retries a failed first connect itself).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from agent.config import Source
from agent.decode import BlockDecoder, Value
from agent.plan import Block, plan_reads

log = logging.getLogger("agent.modbus")

RECONNECT_BASE = 0.5
RECONNECT_CAP = 30.0

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


@dataclass
class PollResult:
    """One cycle of one source: the values read and what went wrong."""

    source: str
    values: dict[str, Value] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    connected: bool = False

    @property
    def ok(self) -> bool:
        return self.connected and not self.errors


class Link:
    """A client plus the lock that serialises its requests (a serial bus is one link)."""

    def __init__(self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, label: str) -> None:
        self.client = client
        self.label = label
        self.lock = asyncio.Lock()
        self.failures = 0
        self.retry_at = 0.0

    async def ensure_connected(self) -> bool:
        """Connect if needed, unless the backoff after a failure has not yet passed."""
        if self.client.connected:
            return True
        now = time.monotonic()
        if now < self.retry_at:
            return False
        if await self.client.connect():
            if self.failures:
                log.info("%s: connected after %d failed attempt(s)", self.label, self.failures)
            self.failures = 0
            return True
        self.broken("connect failed")
        return False

    def broken(self, reason: str) -> None:
        """Drop the connection and wait a growing, jittered while before the next try."""
        self.client.close()
        ceiling = min(RECONNECT_CAP, RECONNECT_BASE * 2 ** min(self.failures, 16))
        delay = random.uniform(ceiling / 2, ceiling)
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        level = (
            logging.WARNING if self.failures in (1, 5) or self.failures % 50 == 0 else logging.DEBUG
        )
        log.log(
            level,
            "%s: %s (failure %d); next try in %.1fs",
            self.label,
            reason,
            self.failures,
            delay,
        )

    def close(self) -> None:
        self.client.close()


def make_link(source: Source) -> Link:
    if source.protocol == "modbus-rtu":
        client: Any = AsyncModbusSerialClient(
            port=source.serial_port or "",
            baudrate=source.baudrate,
            parity=source.parity,
            stopbits=source.stopbits,
            bytesize=source.bytesize,
            timeout=source.timeout,
            retries=0,
            reconnect_delay=0,
        )
        return Link(client, f"source {source.name} ({source.serial_port})")
    client = AsyncModbusTcpClient(
        source.host or "127.0.0.1",
        port=source.port,
        timeout=source.timeout,
        retries=0,
        reconnect_delay=0,
    )
    return Link(client, f"source {source.name}")


class SourcePoller:
    """Reads every block of one source per cycle and decodes them."""

    def __init__(self, source: Source, link: Link | None = None) -> None:
        self.source = source
        self.link = link or make_link(source)
        self.blocks = plan_reads(source.variables)
        self.decoders = [BlockDecoder(b, source.name, source.byte_order) for b in self.blocks]
        self.last_ok: float | None = None

    def _reader(self, block: Block) -> Callable[..., Awaitable[Any]]:
        client = self.link.client
        return {
            "coil": client.read_coils,
            "discrete_input": client.read_discrete_inputs,
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
        }[block.table]

    async def poll(self) -> PollResult:
        result = PollResult(self.source.name)
        async with self.link.lock:
            if not await self.link.ensure_connected():
                result.errors.append("not connected")
                return result
            result.connected = True
            for block, decoder in zip(self.blocks, self.decoders, strict=True):
                if not await self._read_block(block, decoder, result):
                    break
        if result.ok:
            self.last_ok = time.monotonic()
        return result

    async def _read_block(self, block: Block, decoder: BlockDecoder, result: PollResult) -> bool:
        """Read and decode one block; False when the connection is gone."""
        where = f"{block.table} {block.address}+{block.count}"
        result.requests += 1
        try:
            reply = await self._reader(block)(
                block.address, count=block.count, device_id=self.source.unit_id
            )
        except (TimeoutError, ModbusException, OSError) as exc:
            result.errors.append(f"{where}: {type(exc).__name__}: {exc}")
            result.connected = False
            self.link.broken(f"{where}: no reply ({type(exc).__name__})")
            return False
        if reply.isError():
            code = getattr(reply, "exception_code", None)
            name = _EXCEPTION_NAMES.get(code or 0, f"exception {code}")
            result.errors.append(f"{where}: device answered {name}")
            return True
        data = reply.bits if decoder.bits else reply.registers
        try:
            result.values.update(decoder.decode(data))
        except (ValueError, TypeError) as exc:  # short or malformed reply
            result.errors.append(f"{where}: {exc}")
        return True

    def close(self) -> None:
        self.link.close()
