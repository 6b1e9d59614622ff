"""Modbus IO: one connection per source (one per serial port), polled block by block.

Nothing here raises out of a poll: an exception reply, a timeout, a short reply or a dead
device becomes a ``PollResult`` with errors and a count in ``SourceStats``. Connecting is
retried with capped exponential backoff and jitter, the first connect too (pymodbus never
retries a failed first connect itself). A device that stops answering is backed off the
same way, so a dead unit on a shared serial bus does not hold the bus every cycle.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from agent.config import Source
from agent.decode import BlockDecoder, Value
from agent.plan import Block, plan_reads, split

log = logging.getLogger("agent.modbus")

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
ILLEGAL_ADDRESS = 2
_READERS = {
    "coil": "read_coils",
    "discrete_input": "read_discrete_inputs",
    "holding": "read_holding_registers",
    "input": "read_input_registers",
}

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def jittered_backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: capped exponential, jittered."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(failures, 16))
    return random.uniform(ceiling / 2, ceiling)


@dataclass
class PollResult:
    """One cycle of one source: the values read and what went wrong."""

    source: str
    values: dict[str, Value] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    answered: bool = False  # the device replied at all (an exception reply counts)

    @property
    def ok(self) -> bool:
        return self.answered and not self.errors


@dataclass
class SourceStats:
    """Counters per source, for logs, metrics and the status page."""

    cycles: int = 0
    failed: int = 0  # cycles that did not read every block
    values: int = 0  # values decoded
    requests: int = 0
    replies: int = 0
    splits: int = 0
    skipped: int = 0  # scheduled cycles skipped because the previous one was still running
    errors: Counter[str] = field(default_factory=Counter)
    last_answer: float | None = None  # monotonic
    last_read: float | None = None  # wall-clock time of the last complete read


class Link:
    """A client plus the lock that serialises its requests; a serial bus is one link."""

    def __init__(self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, label: str) -> None:
        self.client = client
        self.label = label
        self.lock = asyncio.Lock()
        self.sources = ""  # the names of the sources using this link, for log fields
        self.failures = 0
        self.retry_at = 0.0

    async def ensure_connected(self) -> bool:
        """Connect if needed, unless the backoff after a failure has not yet passed."""
        if self.client.connected:
            return True
        if time.monotonic() < self.retry_at:
            return False
        if await self.client.connect():
            if self.failures:
                log.info("%s: connected after %d failed attempt(s)", self.label, self.failures)
            self.failures = 0
            return True
        self.broken("cannot connect")
        return False

    def broken(self, reason: str) -> None:
        """Drop the connection and wait a growing, jittered while before the next try."""
        self.client.close()
        delay = jittered_backoff(self.failures)
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        _log_failure(self.label, reason, self.failures, delay, {"source": self.sources})

    def close(self) -> None:
        self.client.close()


def _log_failure(
    label: str, reason: str, failures: int, delay: float, about: dict[str, str]
) -> None:
    # the 1st, 5th and every 50th failure in a row: visible, but no flood from a dead device
    level = logging.WARNING if failures in (1, 5) or failures % 50 == 0 else logging.DEBUG
    text = "%s: %s (failure %d in a row); next try in %.1fs"
    log.log(level, text, label, reason, failures, delay, extra=about)


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
        return Link(client, f"serial port {source.serial_port}")
    client = AsyncModbusTcpClient(
        source.host or "127.0.0.1",
        port=source.port,
        timeout=source.timeout,
        retries=0,
        reconnect_delay=0,
    )
    return Link(client, f"source {source.name} ({source.address})")


def make_links(sources: Iterable[Source]) -> dict[str, Link]:
    """One link per source, except that sources on one serial port share it."""
    links: dict[str, Link] = {}
    by_bus: dict[str, Link] = {}
    for source in sources:
        if source.bus not in by_bus:
            by_bus[source.bus] = make_link(source)
        link = links[source.name] = by_bus[source.bus]
        link.sources = ",".join(filter(None, [link.sources, source.name]))
    return links


class SourcePoller:
    """Reads every block of one source per cycle and decodes them."""

    def __init__(self, source: Source, link: Link | None = None) -> None:
        self.source = source
        if link is None:
            link = make_link(source)
            link.sources = source.name
        self.link = link
        self.stats = SourceStats()
        self.failures = 0  # cycles in a row with no answer from the device
        self.retry_at = 0.0
        self.plan: list[tuple[Block, BlockDecoder]] = [
            (block, self._decoder(block)) for block in plan_reads(source.variables, source.max_gap)
        ]

    def _decoder(self, block: Block) -> BlockDecoder:
        return BlockDecoder(block, self.source.name, self.source.byte_order)

    @property
    def blocks(self) -> list[Block]:
        return [block for block, _ in self.plan]

    async def poll(self) -> PollResult:
        """One cycle. Never raises for anything the device or the network does."""
        result = PollResult(self.source.name)
        self.stats.cycles += 1
        await self._poll(result)
        stats = self.stats
        if result.answered:
            self.failures = 0
            stats.last_answer = time.monotonic()
        stats.values += len(result.values)
        if result.ok:
            stats.last_read = time.time()
        else:
            stats.failed += 1
        return result

    async def _poll(self, result: PollResult) -> None:
        if time.monotonic() < self.retry_at:
            result.errors.append("no answer recently; waiting to retry")
            return
        async with self.link.lock:
            if not await self.link.ensure_connected():
                result.errors.append("not connected")
                self.stats.errors["not connected"] += 1
                return
            index = 0
            while index < len(self.plan):
                outcome = await self._read(index, result)
                if outcome == "gone":
                    break
                index += 1 if outcome == "next" else 0  # "again": the block was split

    async def _read(self, index: int, result: PollResult) -> str:
        """Read and decode one block: "next", "again" (split, re-read), or "gone"."""
        block, decoder = self.plan[index]
        where = f"{block.table} {block.address}+{block.count}"
        result.requests += 1
        self.stats.requests += 1
        try:
            reply = await self._reader(block)(
                block.address, count=block.count, device_id=self.source.unit_id
            )
        except (TimeoutError, ModbusException, OSError) as exc:
            self._no_answer(f"{where}: no reply ({type(exc).__name__})", result)
            return "gone"
        self.stats.replies += 1
        result.answered = True
        if reply.isError():
            code = getattr(reply, "exception_code", 0) or 0
            if code == ILLEGAL_ADDRESS and len(block.variables) > 1:
                self.plan[index : index + 1] = [(b, self._decoder(b)) for b in split(block)]
                self.stats.splits += 1
                log.info(
                    "source %s: device refused %s (illegal data address); split into %s",
                    self.source.name, where,
                    ", ".join(f"{b.address}+{b.count}" for b, _ in self.plan[index : index + 2]),
                    extra={"source": self.source.name},
                )  # fmt: skip
                return "again"
            name = EXCEPTION_NAMES.get(code, f"exception {code}")
            self.stats.errors[name] += 1
            names = ", ".join(v.name for v in block.variables)
            result.errors.append(f"{where} ({names}): device answered {name}")
            return "next"
        try:
            data = reply.bits if decoder.bits else reply.registers
            decoder.decode_into(data, result.values)
        except Exception as exc:  # a short or malformed reply must not end the cycle
            self.stats.errors["bad reply"] += 1
            result.errors.append(f"{where}: {exc}")
        return "next"

    def _no_answer(self, reason: str, result: PollResult) -> None:
        """The device did not reply: back off, and reconnect a TCP link."""
        self.stats.errors["no reply"] += 1
        result.errors.append(reason)
        if self.source.protocol == "modbus-tcp":
            self.link.broken(reason)  # a TCP stream may be out of step after a timeout
            return
        delay = jittered_backoff(self.failures)
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        label = f"source {self.source.name} (unit {self.source.unit_id})"
        _log_failure(label, reason, self.failures, delay, {"source": self.source.name})

    def _reader(self, block: Block) -> Callable[..., Awaitable[Any]]:
        client = self.link.client
        return getattr(client, _READERS[block.table])  # type: ignore[no-any-return]

    def close(self) -> None:
        self.link.close()
