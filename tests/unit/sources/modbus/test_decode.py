"""Read planning and decoding, pure: no sockets."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.sources.modbus.config import ModbusVariable as Variable
from agent.sources.modbus.decode import BlockDecoder, encode
from agent.sources.modbus.plan import MAX_REGISTERS, Block, plan_reads


def var(
    name: str = "v", address: int = 0, type_: str = "int", register: str = "holding", **kw: Any
) -> Variable:
    return Variable.model_validate(
        {"name": name, "register": register, "address": address, "type": type_, **kw}
    )


def decode_one(variable: Variable, registers: list[int], order: str = "ABCD") -> object:
    block = Block(variable.table, variable.address, variable.register_count, (variable,))
    [(key, value)] = BlockDecoder(block, "plc", order).decode(registers).items()  # type: ignore[arg-type]
    assert key == f"plc.{variable.name}"
    return value


# 0x41A8_0000 is 21.0 as float32 (A=41 B=A8 C=00 D=00)
@pytest.mark.parametrize(
    ("order", "registers"),
    [("ABCD", [0x41A8, 0x0000]), ("CDAB", [0x0000, 0x41A8]), ("BADC", [0xA841, 0x0000]), ("DCBA", [0x0000, 0xA841])],
)  # fmt: skip
def test_float32_in_every_byte_order(order: str, registers: list[int]) -> None:
    assert decode_one(var(type_="float"), registers, order) == 21.0


def test_float32_reads_as_its_shortest_decimal() -> None:
    registers = list(struct.unpack(">2H", struct.pack(">f", 84.2)))
    assert decode_one(var(type_="float"), registers) == 84.2


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        ("ABCD", [0x0102, 0x0304, 0x0506, 0x0708]),
        ("CDAB", [0x0708, 0x0506, 0x0304, 0x0102]),  # registers in reverse order
        ("BADC", [0x0201, 0x0403, 0x0605, 0x0807]),
        ("DCBA", [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_int64_orders_as_design_defines(order: str, registers: list[int]) -> None:
    assert decode_one(var(width=64), registers, order) == 0x0102030405060708


@pytest.mark.parametrize(
    ("kw", "registers", "expected"),
    [
        ({}, [0xFFFF], -1),
        ({"signed": False}, [0xFFFF], 65535),
        ({"width": 32}, [0xFFFF, 0xFFFE], -2),
        ({"width": 32, "signed": False}, [0x0001, 0x0000], 65536),
        ({"width": 8}, [0x00FE], -2),
        ({"width": 8, "signed": False}, [0x00FE], 254),
        ({"factor": 0.1}, [842], 84.2),
        ({"factor": 0.01, "offset": -10}, [1234], 2.34),
    ],
)
def test_integers_and_scaling(kw: dict[str, Any], registers: list[int], expected: object) -> None:
    value = decode_one(var(**kw), registers)
    assert value == expected and type(value) is type(expected)


def test_bool_from_bit_and_register_and_string() -> None:
    assert decode_one(var(type_="bool", bit=3), [0b1000]) is True
    assert decode_one(var(type_="bool", bit=2), [0b1000]) is False
    assert decode_one(var(type_="bool"), [7]) is True
    assert decode_one(var(type_="str", length=5), [0x4142, 0x4344, 0x4500]) == "ABCDE"
    assert decode_one(var(type_="str", length=6), [0x4F4B, 0x0000, 0x0000]) == "OK"


# "PKG-LINE-3" as a PLC holds it, written out by hand: P=50 K=4B G=47 -=2D L=4C I=49 N=4E
# E=45 3=33. Characters run from the first register to the last in every order; the two
# bytes of each register are swapped for BADC and DCBA only (as Telegraf reads them).
STRAIGHT = [0x504B, 0x472D, 0x4C49, 0x4E45, 0x2D33]
SWAPPED = [0x4B50, 0x2D47, 0x494C, 0x454E, 0x332D]


@pytest.mark.parametrize(
    ("order", "registers"),
    [("ABCD", STRAIGHT), ("CDAB", STRAIGHT), ("BADC", SWAPPED), ("DCBA", SWAPPED)],
)
def test_string_in_every_byte_order(order: str, registers: list[int]) -> None:
    as_source = var(type_="str", length=10)
    assert decode_one(as_source, registers, order) == "PKG-LINE-3"  # the source's byte_order
    own = var(type_="str", length=10, byte_order=order)
    assert decode_one(own, registers) == "PKG-LINE-3"  # the variable's own byte_order
    assert encode(own, "PKG-LINE-3") == registers  # what the simulator serves
    assert encode(as_source, "PKG-LINE-3", order) == registers  # type: ignore[arg-type]


def test_block_decodes_every_variable_at_its_offset() -> None:
    variables = [
        var("temp", 100, "float"),
        var("pressure", 102, factor=0.01),
        var("lube", 103, "bool", bit=3),
        var("faults", 103, signed=False),
        var("count", 110, width=32, signed=False, byte_order="CDAB"),
    ]
    [block] = plan_reads(variables)
    assert (block.address, block.count) == (100, 12)
    registers = [0] * 12
    registers[0:2] = encode(variables[0], 84.5)
    registers[2] = 450
    registers[3] = 0b1000
    registers[10:12] = encode(variables[4], 70000)
    values = BlockDecoder(block, "plc").decode(registers)
    assert values == {
        "plc.temp": 84.5,
        "plc.pressure": 4.5,
        "plc.lube": True,
        "plc.faults": 8,
        "plc.count": 70000,
    }


def test_bits_and_short_reply() -> None:
    variables = [var("a", 0, "bool", "coil"), var("b", 5, "bool", "coil")]
    [block] = plan_reads(variables)
    decoder = BlockDecoder(block, "plc")
    assert decoder.decode([True, False, False, False, False, False, False, False]) == {
        "plc.a": True,
        "plc.b": False,
    }
    with pytest.raises(ValueError, match="short reply"):
        decoder.decode([True])


def test_planner_coalesces_bridges_small_gaps_and_respects_limits() -> None:
    variables = [
        var("a", 0),
        var("b", 5, width=32),  # gap of 4 -> bridged
        var("c", 30),  # gap of 23 -> new block
        var("d", 0, register="input"),
        var("e", 0, "bool", "coil"),
        var("f", 150, "bool", "coil"),  # within 16 * max_gap bits
    ]
    blocks = plan_reads(variables, max_gap=10)
    shapes = [(b.table, b.address, b.count, [v.name for v in b.variables]) for b in blocks]
    assert shapes == [
        ("coil", 0, 151, ["e", "f"]),
        ("holding", 0, 7, ["a", "b"]),
        ("holding", 30, 1, ["c"]),
        ("input", 0, 1, ["d"]),
    ]
    many = [var(f"v{i}", i) for i in range(300)]
    counts = [b.count for b in plan_reads(many)]
    assert counts == [MAX_REGISTERS, MAX_REGISTERS, 50]


TYPES = st.sampled_from(
    [("int", 8), ("int", 16), ("int", 32), ("int", 64), ("float", 32), ("float", 64)]
)


@given(TYPES, st.booleans(), st.sampled_from(["ABCD", "BADC", "CDAB", "DCBA"]), st.data())
def test_round_trip(kind: tuple[str, int], signed: bool, order: str, data: st.DataObject) -> None:
    type_, width = kind
    variable = var(type_=type_, width=width, signed=signed, byte_order=order)
    if type_ == "float":
        value: float = data.draw(st.floats(width=width, allow_nan=False, allow_infinity=False))
    else:
        low, high = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
        value = data.draw(st.integers(low, high))
    decoded = decode_one(variable, encode(variable, value))
    if (type_, width) == ("float", 32):  # decoded as the shortest decimal of the same float32
        assert struct.pack("<f", decoded) == struct.pack("<f", value)  # type: ignore[arg-type]
    else:
        assert decoded == value and type(decoded) is type(value)


@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=20),
    st.integers(1, 20),
    st.sampled_from(["ABCD", "BADC", "CDAB", "DCBA"]),
)
def test_string_round_trip(text: str, length: int, order: str) -> None:
    variable = var(type_="str", length=length, byte_order=order)
    assert decode_one(variable, encode(variable, text)) == text[:length]


@given(
    st.integers(0, 0xFFFF), st.integers(0, 15), st.sampled_from(["ABCD", "BADC", "CDAB", "DCBA"])
)
def test_bit_of_a_register(register: int, bit: int, order: str) -> None:
    # a bit numbers the register's 16-bit value as the byte order decodes it (BADC, DCBA swap)
    word = decode_one(var(signed=False), [register], order)
    assert decode_one(var(type_="bool", bit=bit), [register], order) is bool(word >> bit & 1)  # type: ignore[operator]
    if order in ("ABCD", "CDAB"):
        assert word == register
