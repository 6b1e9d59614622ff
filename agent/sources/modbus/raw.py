"""Raw registers, for finding a device's layout (``ixon-agent read --raw``).

A manual says "oil temperature, 32-bit float at 40101" and not in which byte order, or the
address is off by one. This reads the registers as they come, prints them in hex and
decodes each variable in every byte order, with the decoder the agent itself uses, so the
order whose value makes sense is the one to configure. ``--range holding:100:8`` reads
registers no variable names yet.
"""

from __future__ import annotations

import re

from agent.common.values import BIT_KINDS, Value, show
from agent.sources.base import PollResult
from agent.sources.modbus.config import ByteOrder, ModbusSource, ModbusVariable
from agent.sources.modbus.decode import BlockDecoder
from agent.sources.modbus.plan import Block
from agent.sources.modbus.poller import SourcePoller

ORDERS: tuple[ByteOrder, ...] = ("ABCD", "CDAB", "BADC", "DCBA")
_RANGE = re.compile(r"^(coil|discrete_input|holding|input):(\d+)(?::(\d+))?$")
#: registers (or bits) one --range may read
MAX_RANGE = 125

Registers = dict[tuple[str, int], int | bool]


def parse_range(text: str) -> list[ModbusVariable]:
    """``holding:100:8`` -> one variable per register (bit), to read them raw."""
    match = _RANGE.match(text.strip())
    if not match:
        raise ValueError(
            f"{text!r}: use TABLE:ADDRESS[:COUNT] with TABLE holding, input, coil or"
            " discrete_input, e.g. holding:100:8"
        )
    table, address, count = match.group(1), int(match.group(2)), int(match.group(3) or 1)
    if not 1 <= count <= MAX_RANGE or address + count > 65536:
        raise ValueError(f"{text!r}: COUNT is 1 to {MAX_RANGE}, within addresses 0-65535")
    bits = table in BIT_KINDS
    return [
        ModbusVariable.model_validate(
            {
                "name": f"raw_{table}_{a}",
                "register": table,
                "address": a,
                "type": "bool" if bits else "int",
                "signed": False,
            }
        )
        for a in range(address, address + count)
    ]


async def read_raw(
    source: ModbusSource, extra: list[ModbusVariable]
) -> tuple[Registers, PollResult]:
    """One cycle over the source's variables and ``extra``, keeping every register read."""
    names = {v.name for v in source.variables}
    extra = [v for v in extra if v.name not in names]
    poller = SourcePoller(source.model_copy(update={"variables": [*source.variables, *extra]}))
    poller.capture = {}
    try:
        result = await poller.poll()
    finally:
        poller.close()
    return poller.capture, result


def _registers(registers: Registers, table: str, address: int, count: int) -> list[int] | None:
    found = [registers.get((table, a)) for a in range(address, address + count)]
    return None if any(r is None for r in found) else [int(r) for r in found]  # type: ignore[arg-type]


def _decode(variable: ModbusVariable, regs: list[int], order: ByteOrder) -> Value:
    copy = variable.model_copy(update={"byte_order": order})
    block = Block(variable.table, variable.address, len(regs), (copy,))
    return BlockDecoder(block, "raw").decode(regs)[f"raw.{variable.name}"]


def describe_variable(variable: ModbusVariable, registers: Registers, default: ByteOrder) -> str:
    """``oil_temp  holding 100+2  42B7 0000  ABCD 91.5 | CDAB 0 | ...`` (configured order *)."""
    where = f"{variable.table} {variable.address}"
    if variable.table in BIT_KINDS:
        bit = registers.get((variable.table, variable.address))
        return f"{variable.name}  {where}  " + ("(not read)" if bit is None else show(bool(bit)))
    count = variable.register_count
    regs = _registers(registers, variable.table, variable.address, count)
    where += f"+{count}"
    if regs is None:
        return f"{variable.name}  {where}  (not read)"
    words = " ".join(f"{r:04X}" for r in regs)
    if variable.type == "bool" or (count == 1 and variable.type != "str"):
        orders: tuple[ByteOrder, ...] = ("ABCD", "BADC")  # one register: AB or BA
    else:
        orders = ORDERS
    configured = variable.byte_order or default
    seen = []
    for order in orders:
        mark = "*" if order == configured else ""
        seen.append(f"{order}{mark} {show(_decode(variable, regs, order), variable.unit)}")
    return f"{variable.name}  {where}  {words}  " + " | ".join(seen)


def describe_range(variables: list[ModbusVariable], registers: Registers) -> list[str]:
    """One line per register: hex, unsigned, signed, text; and with the next register, the
    32-bit float in each byte order."""
    lines = []
    for variable in variables:
        table, address = variable.table, variable.address
        value = registers.get((table, address))
        if value is None:
            lines.append(f"{table} {address}: (not read)")
            continue
        if table in BIT_KINDS:
            lines.append(f"{table} {address}: {show(bool(value))}")
            continue
        word = int(value)
        signed = word - 0x10000 if word & 0x8000 else word
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in word.to_bytes(2, "big"))
        line = f"{table} {address}: {word:04X}  u16 {word}  i16 {signed}  {text!r}"
        pair = _registers(registers, table, address, 2)
        if pair is not None:
            floats = []
            for order in ORDERS:
                float_var = ModbusVariable.model_validate(
                    {"name": "f", "register": table, "address": address, "type": "float"}
                )
                floats.append(f"{order} {show(_decode(float_var, pair, order))}")
            line += "  float32 with next: " + " | ".join(floats)
        lines.append(line)
    return lines
