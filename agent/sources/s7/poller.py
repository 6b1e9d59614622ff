"""S7 IO: one connection per PLC, the planned multi-variable reads each cycle.

Untrusted replies: an item whose return code is not success (0xFF) is no value for its
variables this cycle, counted by kind ("object does not exist" for a missing DB); an item
shorter than asked is no value either ("short reply"). Any failed exchange drops the
connection whole; the next try, after a capped, jittered backoff, connects anew and plans
again for the PDU the PLC grants then.

A CPU in STOP still answers reads, with the values its memory held when it stopped, and
its outputs are off: the agent asks the CPU's mode (SZL 0x0424, as native snap7's
``GetPlcStatus``) at every connect and every ``MODE_EVERY`` seconds, and while in STOP it
takes no value from that PLC (counted ``cpu_stop``, logged when it stops and when it runs
again). The source still answers, so it is not offline; its alarms hold their state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from snap7.async_client import AsyncClient
from snap7.datatypes import S7Area, S7WordLen
from snap7.error import S7Error, S7PacketLostError, S7ProtocolError, S7StalePacketError
from snap7.s7protocol import get_return_code_description

from agent.sources.base import PollResult
from agent.sources.s7.config import S7Source, S7Variable
from agent.sources.s7.decode import decode
from agent.sources.s7.plan import Range, plan_reads
from agent.sources.session import SessionPoller

log = logging.getLogger("agent.s7")

#: seconds between asking the CPU whether it runs
MODE_EVERY = 5.0
SUCCESS = 0xFF
AREAS = {"DB": S7Area.DB, "M": S7Area.MK, "I": S7Area.PE, "Q": S7Area.PA}
#: SZL 0x0424's mode byte: RUN is 0x08 on every CPU; STOP is 0x04, or 0x03 on older ones
RUN, STOPS = 0x08, (0x03, 0x04)


def items(raw: bytes, count: int) -> list[tuple[int, bytes]]:
    """(return code, data) of each item of a read reply's data section; a reply that does
    not hold ``count`` well-formed items is a ValueError (the exchange is not trusted)."""
    found: list[tuple[int, bytes]] = []
    offset = 0
    for index in range(count):
        if offset + 4 > len(raw):
            raise ValueError(f"the reply holds {index} of {count} items")
        code, transport, length = (
            raw[offset],
            raw[offset + 1],
            int.from_bytes(raw[offset + 2 : offset + 4]),
        )
        offset += 4
        size = length // 8 if transport in (0x03, 0x04, 0x05) else length  # bits or bytes
        if offset + size > len(raw):
            raise ValueError(f"item {index} says {size} bytes; the reply ends first")
        found.append((code, raw[offset : offset + size]))
        offset += size + (size % 2 if index < count - 1 else 0)
    return found


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text.removeprefix("Connection failed: ")


class S7Poller(SessionPoller[S7Source]):
    """Reads every variable of one S7 source per cycle."""

    log = log
    kinds = ("cpu_stop", "object does not exist", "invalid address", "short reply", "bad string")

    def __init__(self, source: S7Source) -> None:
        super().__init__(source)
        self.pdu = source.pdu
        self._plan(plan_reads(source.variables, self.pdu, source.max_gap))
        self.client: AsyncClient | None = None
        self.mode_at = -float("inf")  # monotonic time of the last mode asked
        self.stopped = False
        self.mode_unknown = False  # the PLC does not say whether it runs
        #: every range read, with its bytes, when set (``read --raw``)
        self.capture: dict[Range, bytes] | None = None

    @property
    def requests(self) -> int:
        return len(self.reads) + (0 if self.client else 1)

    async def _poll(self, result: PollResult) -> None:
        source = self.source
        if self.client is None:
            if self.waiting(result):
                return
            try:
                await asyncio.wait_for(self._connect(), source.timeout * 2)
            except (TimeoutError, S7Error, OSError, ValueError) as exc:
                self.stats.errors["not connected"] += 1
                reason = f"cannot connect: {describe(exc)}"
                result.errors.append(reason)
                self._broken(reason)
                return
            result.answered = True
        try:
            if time.monotonic() - self.mode_at >= MODE_EVERY:
                await self._ask_mode()
                result.requests += 1
            values: dict[str, Any] = {}
            for read, layout in zip(self.reads, self.layout, strict=True):
                await self._read(read, layout, values, result)
        except (TimeoutError, S7Error, OSError, ValueError) as exc:
            self.stats.errors[
                "no reply" if isinstance(exc, TimeoutError) else "protocol error"
            ] += 1
            reason = describe(exc)
            result.errors.append(reason)
            self._broken(reason)
            return
        result.answered = True
        if self.stopped:
            self.stats.errors["cpu_stop"] += 1
            result.errors.append("the CPU is in STOP: its values are not taken")
            return
        result.values.update(values)

    def _plan(self, reads: list[tuple[Range, ...]]) -> None:
        """The reads, and for each item what its bytes hold (the value's key, its offset
        in the item, a bool's bit), worked out once rather than every cycle."""
        self.reads = reads
        name = self.source.name
        self.layout = [
            [
                [(f"{name}.{v.name}", v, v.where.byte - item.start, v.where.bit)
                 for v in item.variables]
                for item in read
            ]
            for read in reads
        ]  # fmt: skip

    async def _connect(self) -> None:
        source = self.source
        client = AsyncClient()
        client.pdu_length = source.pdu  # asked for; the PLC may grant less
        self.client = client  # (closed by _broken if anything below fails)
        await client.connect(source.host, source.rack, source.slot, source.port)
        granted = client.pdu_length
        if granted != self.pdu:
            log.info(
                "source %s: the PLC grants a PDU of %d bytes (%d asked): planned again",
                source.name,
                granted,
                source.pdu,
                extra={"source": source.name},
            )
            self.pdu = granted
            self._plan(plan_reads(source.variables, granted, source.max_gap))
        self.mode_at = -float("inf")

    async def _exchange(self, request: bytes) -> dict[str, Any]:
        """One request and its reply, on the client's own exchange (its lock, its sequence
        check). python-snap7's AsyncClient sends a multi-variable read one item at a time;
        its protocol builds a real one, which is what this sends."""
        assert self.client is not None
        reply: dict[str, Any] = await asyncio.wait_for(
            self.client._send_receive(request), self.source.timeout
        )
        return reply

    async def _ask_mode(self) -> None:
        """RUN or STOP, from SZL 0x0424. A PLC that does not answer this list (a LOGO!, some
        CPs) is not asked again on this connection, and its STOP is not seen: said once."""
        assert self.client is not None
        protocol = self.client.protocol
        self.mode_at = time.monotonic()
        try:  # (a timeout or a lost connection goes on up: that is no answer at all)
            reply = await self._exchange(protocol.build_read_szl_request(0x0424, 0))
            data = protocol.parse_read_szl_response(reply)["data"]
            if len(data) < 8:
                raise ValueError("too short")
        except (S7ProtocolError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, S7StalePacketError | S7PacketLostError):
                raise  # the stream is out of step: no refusal of this list
            self.mode_at = float("inf")
            if not self.mode_unknown:
                log.info(
                    "source %s: the PLC does not report its mode (SZL 0x0424): a STOP will"
                    " not be seen",
                    self.source.name,
                    extra={"source": self.source.name},
                )
                self.mode_unknown = True
            return
        stopped = data[7] in STOPS
        if stopped != self.stopped:
            level = logging.WARNING if stopped else logging.INFO
            mode = "STOP: its values are not taken until it runs" if stopped else "RUN again"
            log.log(level, "source %s: the CPU is in %s", self.source.name, mode,
                    extra={"source": self.source.name})  # fmt: skip
            self.stopped = stopped

    async def _read(
        self,
        read: tuple[Range, ...],
        layout: list[list[tuple[str, S7Variable, int, int | None]]],
        values: dict[str, Any],
        result: PollResult,
    ) -> None:
        assert self.client is not None
        protocol = self.client.protocol
        if len(read) == 1:
            [one] = read
            request = protocol.build_read_request(
                AREAS[one.area], one.db, one.start, S7WordLen.BYTE, one.size
            )
        else:
            request = protocol.build_multi_read_request(
                [(AREAS[r.area], r.db, r.start, r.size) for r in read]
            )
        result.requests += 1
        self.stats.requests += 1
        reply = await self._exchange(request)
        found = items(reply.get("raw_data", b""), len(read))
        self.stats.replies += 1
        for item, held, (code, data) in zip(read, layout, found, strict=True):
            if code != SUCCESS:
                self._no_value(item, get_return_code_description(code).lower(), result)
                continue
            if len(data) < item.size:
                self._no_value(item, "short reply", result)
                continue
            if self.capture is not None:
                self.capture[item] = bytes(data)
            for key, variable, offset, bit in held:
                value = decode(variable, data, offset, bit)
                if value is None:
                    self._no_value_of(variable.name, "bad string", result)
                    continue
                if self.bad:
                    self.has_value(variable.name)
                values[key] = value

    def _no_value(self, item: Range, why: str, result: PollResult) -> None:
        self.stats.errors[why] += 1
        names = ", ".join(v.name for v in item.variables)
        result.errors.append(f"{item} ({names}): {why}")
        for variable in item.variables:
            self.no_value(variable.name, why, variable.address)

    def _no_value_of(self, variable: str, why: str, result: PollResult) -> None:
        self.stats.errors[why] += 1
        result.errors.append(f"{variable}: {why}")
        self.no_value(variable, why)

    def _broken(self, reason: str) -> None:
        """Drop the connection whole; a new one after the backoff."""
        client, self.client = self.client, None
        self.backoff(reason, _close(client) if client is not None else None)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.connection is not None:
            writer = client.connection._writer  # (no await at shutdown: the socket closes)
            if writer is not None:
                writer.close()


async def _close(client: AsyncClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 1.0)
