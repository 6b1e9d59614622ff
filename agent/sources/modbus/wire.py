"""The Modbus wire, untrusted: every frame kept raw (``Reply``) and judged against its request.

pymodbus 3.16 checks a reply's unit id (unless unit 0 was asked) and transaction id (unless
the reply says 0), and nothing else: it decodes a reply of another function code, a byte
count that disagrees with its frame, more registers than asked and any exception code. So
the client's decoder is replaced (``StrictDecoder``) and ``judge`` compares each frame with
its request: transaction id, unit id, function code, byte count, frame length and exception
code must all match, or it is a protocol error, never a value. Pure: no IO here.
"""

from __future__ import annotations

import struct
from typing import Any

from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest, ReadInputRegistersRequest

#: the request PDU for a read of each register table
REQUESTS: dict[str, type[ModbusPDU]] = {
    "coil": ReadCoilsRequest,
    "discrete_input": ReadDiscreteInputsRequest,
    "holding": ReadHoldingRegistersRequest,
    "input": ReadInputRegistersRequest,
}

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class Reply(ModbusPDU):
    """A frame as the device sent it: split into function code and payload, not believed.

    pymodbus calls ``StrictDecoder.decode`` for every frame it receives; returning this
    instead of its own PDU classes means no frame can fail to decode inside pymodbus (which
    would end the connection with an asyncio traceback in the log) and no frame becomes
    values before ``judge`` has compared it with its request.
    """

    def __init__(self, frame: bytes) -> None:
        super().__init__()
        self.function_code = frame[0] if frame else 0
        self.payload = bytes(frame[1:])
        if self.function_code > 0x80 and self.payload:
            self.exception_code = self.payload[0]

    def __str__(self) -> str:
        return f"Reply(function_code={self.function_code}, payload={self.payload.hex()})"


class StrictDecoder(DecodePDU):
    """pymodbus's client decoder (it still sizes RTU frames), with every frame a ``Reply``."""

    def __init__(self) -> None:
        super().__init__(is_server=False)

    def decode(self, frame: bytes) -> ModbusPDU | None:
        return Reply(frame)


def judge(reply: Any, request: ModbusPDU, unit_id: int, tcp: bool) -> str | None:
    """Why ``reply`` is not a valid answer to ``request``, or None if it is (an exception
    reply with a real exception code is valid: the device answered)."""
    if not isinstance(reply, Reply):
        return f"unexpected reply {type(reply).__name__}"
    if reply.dev_id != unit_id:
        return f"reply from unit {reply.dev_id}, asked unit {unit_id}"
    if tcp and reply.transaction_id != request.transaction_id:
        return f"transaction id {reply.transaction_id}, asked {request.transaction_id}"
    asked = request.function_code
    payload = reply.payload
    if reply.function_code == asked | 0x80:
        if len(payload) != 1:
            return f"exception reply of {len(payload)} bytes (expected 1)"
        if payload[0] not in EXCEPTION_NAMES:
            return f"exception code {payload[0]} (no such Modbus exception)"
        return None
    if reply.function_code != asked:
        return f"function code {reply.function_code} in reply to {asked}"
    expected = (request.count + 7) // 8 if asked in (1, 2) else 2 * request.count
    if not payload:
        return "empty reply"
    if payload[0] != len(payload) - 1:
        return f"byte count {payload[0]} disagrees with the frame ({len(payload) - 1} bytes)"
    if payload[0] != expected:
        what = "bits" if asked in (1, 2) else "registers"
        return f"{payload[0]} bytes for {request.count} {what} (expected {expected})"
    return None


def reply_data(reply: Reply, request: ModbusPDU) -> list[int] | list[bool]:
    """The registers or bits of a reply ``judge`` accepted, exactly as many as asked."""
    data = reply.payload[1:]
    if request.function_code in (1, 2):
        return [bool(data[i >> 3] >> (i & 7) & 1) for i in range(request.count)]
    return list(struct.unpack(f">{request.count}H", data))
