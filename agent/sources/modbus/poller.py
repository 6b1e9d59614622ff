"""Modbus IO: one connection per source (one per serial port, or per device server for RTU
over TCP), polled block by block.

Nothing here raises out of a poll: an exception reply, a timeout, a malformed reply or a dead
device becomes a ``PollResult`` with errors and a count in ``SourceStats``. Connecting is
retried with capped exponential backoff and jitter, the first connect too (pymodbus never
retries a failed first connect itself). A device that stops answering is backed off the
same way, so a dead unit on a shared serial bus does not hold the bus every cycle.

A device is untrusted input: every reply is judged against its request (``wire``). One
that does not match is a protocol error, counted per source, never a value and never an
answer. Only a valid reply resets the failure count, so a device that accepts connections
and then talks nonsense backs off like a dead one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from agent.common.retry import Throttle, backoff
from agent.sources.base import PollResult, SourceStats
from agent.sources.modbus.config import ModbusSource
from agent.sources.modbus.decode import BlockDecoder
from agent.sources.modbus.plan import Block, plan_reads, split
from agent.sources.modbus.wire import EXCEPTION_NAMES, REQUESTS, StrictDecoder, judge, reply_data

log = logging.getLogger("agent.modbus")
#: what a Modbus source counts: no answer, a bad frame, or the device's exception reply
KINDS = ("not connected", "no reply", "protocol error", *EXCEPTION_NAMES.values())

BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
ILLEGAL_ADDRESS = 2
#: seconds between log lines about a source that keeps failing (besides the 1st, 10th, ...)
FAILURE_LOG_INTERVAL = 600.0


def jittered_backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: capped exponential, jittered."""
    return backoff(failures, BACKOFF_BASE, BACKOFF_CAP)


class Link:
    """A client plus the lock that serialises its requests; a serial bus is one link.

    ``failures`` counts failures since the last valid reply, across reconnects: a device
    that accepts every connection and then sends garbage backs off as a dead one does.
    """

    def __init__(self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, label: str) -> None:
        self.client = client
        self.client.ctx.framer.decoder = StrictDecoder()
        self.label = label
        self.lock = asyncio.Lock()
        self.sources = ""  # the names of the sources using this link, for log fields
        self.failures = 0
        self.retry_at = 0.0
        self.throttle = Throttle(FAILURE_LOG_INTERVAL)

    async def ensure_connected(self) -> bool:
        """Connect if needed, unless the backoff after a failure has not yet passed."""
        if self.client.connected:
            return True
        if time.monotonic() < self.retry_at:
            return False
        if await self.client.connect():
            return True
        self.broken("cannot connect")
        return False

    def answered(self) -> None:
        """A valid reply: the link is sound again."""
        if self.failures:
            log.info(
                "%s: answering again after %d failure(s)",
                self.label,
                self.failures,
                extra={"source": self.sources},
            )
            self.failures = 0
            self.throttle.clear()

    def broken(self, reason: str) -> None:
        """Drop the connection and wait a growing, jittered while before the next try."""
        self.client.close()
        delay = jittered_backoff(self.failures)
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        _log_failure(self.throttle, self.label, reason, self.failures, delay, self.sources)

    def close(self) -> None:
        self.client.close()


def _log_failure(
    throttle: Throttle, label: str, reason: str, failures: int, delay: float, source: str
) -> None:
    """Visible when it starts and now and then after, never a flood from a broken device."""
    level = logging.WARNING if throttle.hit() else logging.DEBUG
    text = "%s: %s (failure %d in a row); next try in %.1fs"
    log.log(level, text, label, reason, failures, delay, extra={"source": source})


def make_link(source: ModbusSource) -> Link:
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
    rtu = source.protocol == "modbus-rtu-over-tcp"
    client = AsyncModbusTcpClient(
        source.host or "127.0.0.1",
        port=source.port,
        framer=FramerType.RTU if rtu else FramerType.SOCKET,
        timeout=source.timeout,
        retries=0,
        reconnect_delay=0,
    )
    if rtu:
        return Link(client, f"device server {source.address} (RTU over TCP)")
    return Link(client, f"source {source.name} ({source.address})")


def make_links(sources: Iterable[ModbusSource]) -> dict[str, Link]:
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

    def __init__(self, source: ModbusSource, link: Link | None = None) -> None:
        self.source = source
        if link is None:
            link = make_link(source)
            link.sources = source.name
        self.link = link
        #: Modbus TCP: frames carry a transaction id, and one device is behind the link;
        #: RTU (on a serial port or over TCP) shares a line between units, taking turns
        self.tcp = source.protocol == "modbus-tcp"
        self.stats = SourceStats(kinds=KINDS)
        self.failures = 0  # failures since this unit's last valid reply (serial: per unit)
        self.retry_at = 0.0
        self.throttle = Throttle(FAILURE_LOG_INTERVAL)
        #: every register (bit) read, by (table, address), when set (``read --raw``)
        self.capture: dict[tuple[str, int], int | bool] | None = None
        self.plan: list[tuple[Block, BlockDecoder]] = [
            (block, self._decoder(block)) for block in plan_reads(source.variables, source.max_gap)
        ]

    def _decoder(self, block: Block) -> BlockDecoder:
        return BlockDecoder(block, self.source.name, self.source.byte_order)

    @property
    def blocks(self) -> list[Block]:
        return [block for block, _ in self.plan]

    @property
    def requests(self) -> int:
        return len(self.plan)

    async def poll(self) -> PollResult:
        """One cycle. Never raises for anything the device or the network does."""
        result = PollResult(self.source.name)
        self.stats.cycles += 1
        await self._poll(result)
        if result.answered and self.failures:
            self.failures = 0
            self.throttle.clear()
        self.stats.record(result)
        return result

    async def _poll(self, result: PollResult) -> None:
        if time.monotonic() < self.retry_at:
            result.errors.append("no valid answer recently; waiting to retry")
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
        request = REQUESTS[block.table](
            address=block.address, count=block.count, dev_id=self.source.unit_id
        )
        try:
            reply = await self.link.client.execute(False, request)
        except (TimeoutError, ModbusException, OSError) as exc:
            self._failed("no reply", f"{where}: no reply ({type(exc).__name__})", result)
            return "gone"
        problem = judge(reply, request, self.source.unit_id, self.tcp)
        if problem is not None:
            self._failed("protocol error", f"{where}: protocol error: {problem}", result)
            return "gone"  # the stream may be out of step: nothing more from it this cycle
        self.stats.replies += 1
        result.answered = True
        self.link.answered()
        if reply.isError():
            code = reply.exception_code
            if code == ILLEGAL_ADDRESS and len(block.variables) > 1:
                self.plan[index : index + 1] = [(b, self._decoder(b)) for b in split(block)]
                self.stats.splits += 1
                log.info(
                    "source %s: device refused %s (illegal data address); split into %s",
                    self.source.name,
                    where,
                    ", ".join(f"{b.address}+{b.count}" for b, _ in self.plan[index : index + 2]),
                    extra={"source": self.source.name},
                )
                return "again"
            name = EXCEPTION_NAMES[code]
            self.stats.errors[name] += 1
            names = ", ".join(v.name for v in block.variables)
            result.errors.append(f"{where} ({names}): device answered {name}")
            return "next"
        data = reply_data(reply, request)
        decoder.decode_into(data, result.values)
        if self.capture is not None:
            for offset, item in enumerate(data[: block.count]):
                self.capture[(block.table, block.address + offset)] = item
        return "next"

    def _failed(self, kind: str, reason: str, result: PollResult) -> None:
        """No valid reply: count it, back off, and reconnect a TCP link (after a timeout or
        a bad frame the stream may be out of step)."""
        self.stats.errors[kind] += 1
        result.errors.append(reason)
        if self.tcp:
            self.link.broken(reason)
            return
        delay = jittered_backoff(self.failures)
        self.failures += 1
        self.retry_at = time.monotonic() + delay
        label = f"source {self.source.name} (unit {self.source.unit_id})"
        _log_failure(self.throttle, label, reason, self.failures, delay, self.source.name)

    def close(self) -> None:
        self.link.close()
