"""A Modbus TCP device that answers wrongly on purpose, frame by frame, on 127.0.0.1.

pymodbus's server only builds correct frames, so this one is written by hand: it reads each
MBAP request and answers according to ``mode``:

    ok              a correct reply (registers or bits from ``value``)
    wrong_function  an FC4 reply to FC3 (and FC3 to FC4, FC2 to FC1, FC1 to FC2)
    short_count     a byte count smaller than the data that follows
    long_count      a byte count larger than the data that follows (a frame cut short)
    extra           one register (or one byte of bits) more than asked, consistently framed
    tid_zero        the right reply with transaction id 0
    wrong_tid       the right reply with another transaction id
    wrong_unit      the right reply from another unit id
    bad_exception   an exception reply with an exception code no device sends (136)
    wrong_exception an exception reply for another function code
    garbage         an endless stream of random bytes, whatever was asked

Every malformed reply carries ``value`` (9999 by default), so a test sees at once whether a
garbage frame became a value.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct


class RogueDevice:
    def __init__(self, mode: str = "ok", value: int = 9999, unit_id: int = 1) -> None:
        self.mode = mode
        self.value = value
        self.unit_id = unit_id
        self.requests = 0
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                if self.mode == "garbage":
                    rng = random.Random(tid)
                    while True:  # never stops, never frames anything
                        writer.write(bytes(rng.getrandbits(8) for _ in range(64)))
                        await writer.drain()
                        await asyncio.sleep(0.005)
                writer.write(self.reply(tid, unit, pdu))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def reply(self, tid: int, unit: int, request: bytes) -> bytes:
        function, _address, count = struct.unpack(">BHH", request[:5])
        bits = function in (1, 2)
        mode = self.mode
        value = 0 if mode == "ok" else self.value
        if bits:
            data = bytes([0xFF if value else 0] * ((count + 7) // 8))
        else:
            data = struct.pack(f">{count}H", *([value & 0xFFFF] * count))
        byte_count = len(data)
        if mode == "wrong_function":
            function = {1: 2, 2: 1, 3: 4, 4: 3}[function]
        elif mode == "short_count":
            byte_count -= 2
        elif mode == "long_count":
            byte_count += 2
        elif mode == "extra":
            data += bytes([0xFF]) if bits else struct.pack(">H", value)
            byte_count = len(data)
        elif mode == "tid_zero":
            tid = 0
        elif mode == "wrong_tid":
            tid = (tid + 7) & 0xFFFF or 1
        elif mode == "wrong_unit":
            unit = (unit + 1) & 0xFF
        pdu = bytes([function, byte_count & 0xFF]) + data
        if mode == "bad_exception":
            pdu = bytes([function | 0x80, 136])
        elif mode == "wrong_exception":
            pdu = bytes([(function % 4 + 1) | 0x80, 2])
        return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
