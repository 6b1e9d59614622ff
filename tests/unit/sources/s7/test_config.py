"""The S7 kind's config and plan, without a PLC: addresses in both languages, widths that
must fit their address, big-endian only, and the fewest reads for a PDU."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.sources.s7.address import parse_address
from agent.sources.s7.config import S7Variable
from agent.sources.s7.decode import decode, encode
from agent.sources.s7.plan import MAX_ITEMS, pack, plan_ranges, plan_reads

HEAD = """
[agent]
name = "Press"

[[sources]]
name = "press"
protocol = "s7"
host = "10.0.0.10"
{extra}
  [[sources.variables]]
  name = "v"
  address = "{address}"
  {fields}
"""


def problems(tmp_path: Path, address: str, fields: str, extra: str = "") -> list[str]:
    path = tmp_path / "agent.toml"
    path.write_text(HEAD.format(address=address, fields=fields, extra=extra))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "area", "db", "byte", "bit", "size"),
    [
        ("DB10.DBX4.3", "DB", 10, 4, 3, "X"),
        ("db10.dbb4", "DB", 10, 4, None, "B"),
        ("DB1.DBW100", "DB", 1, 100, None, "W"),
        ("DB7.DBD8", "DB", 7, 8, None, "D"),
        ("M0.1", "M", 0, 0, 1, "X"),
        ("MW10", "M", 0, 10, None, "W"),
        ("I0.0", "I", 0, 0, 0, "X"),
        ("E0.0", "I", 0, 0, 0, "X"),  # German: Eingang
        ("ID4", "I", 0, 4, None, "D"),
        ("EB0", "I", 0, 0, None, "B"),
        ("QB0", "Q", 0, 0, None, "B"),
        ("AW2", "Q", 0, 2, None, "W"),  # German: Ausgang
        ("A1.7", "Q", 0, 1, 7, "X"),
    ],
)
def test_addresses_in_english_and_german(
    text: str, area: str, db: int, byte: int, bit: int | None, size: str
) -> None:
    where = parse_address(text)
    assert (where.area, where.db, where.byte, where.bit, where.size) == (area, db, byte, bit, size)


@pytest.mark.parametrize(
    ("address", "fields", "says"),
    [
        ("DB10.DBW4", 'type = "int"\n  width = 32', "DB10.DBW4 holds 16 bits, not 32"),
        ("DB10.DBD4", 'type = "int"\n  width = 16', "DB10.DBD4 holds 32 bits, not 16"),
        ("DB10.DBW4", 'type = "float"', "holds no float"),
        ("DB10.DBB4", 'type = "float"', "is an LREAL: give width = 64"),
        ("DB10.DBX4.1", 'type = "int"', "is one bit: type must be 'bool'"),
        ("DB10.DBW4", 'type = "bool"', "a bool is one bit"),
        ("DB10.DBW4", 'type = "str"\n  length = 4', "a STRING starts at a byte"),
        ("DB10.DBX4.8", 'type = "bool"', "bit 8 is not 0..7"),
        ("DB10.DBX4", 'type = "bool"', "needs .bit"),
        ("DB0.DBW0", 'type = "int"', "numbered from 1"),
        ("DB10,W4", 'type = "int"', "is not an S7 address"),
    ],
)
def test_an_address_that_does_not_fit_its_type_is_a_located_error(
    tmp_path: Path, address: str, fields: str, says: str
) -> None:
    [problem] = problems(tmp_path, address, fields)
    assert problem.startswith("sources[0].variables[0] (v).") and says in problem, problem


def test_byte_order_is_an_error_on_s7_and_says_why(tmp_path: Path) -> None:
    found = problems(
        tmp_path, "DB1.DBD0", 'type = "float"\n  byte_order = "CDAB"', 'byte_order = "DCBA"'
    )
    assert found == [
        "sources[0].variables[0] (v).byte_order: unknown key (not part of the config schema):"
        " S7 is big-endian: there is no byte order to give",
        "sources[0] (press).byte_order: unknown key (not part of the config schema):"
        " S7 is big-endian: there is no byte order to give",
    ]


def variable(address: str, kind: str, **extra: object) -> S7Variable:
    return S7Variable.model_validate({"name": "v", "address": address, "type": kind, **extra})


@pytest.mark.parametrize(
    ("address", "kind", "extra", "value"),
    [
        ("DB1.DBX0.5", "bool", {}, True),
        ("DB1.DBB0", "int", {}, -5),
        ("DB1.DBW0", "int", {"signed": False}, 65535),
        ("DB1.DBD0", "float", {}, -1.5),
        ("DB1.DBB0", "float", {"width": 64}, 3.141592653589793),
        ("DB1.DBB0", "int", {"width": 64}, -(2**62)),
        ("DB1.DBB0", "str", {"length": 10}, "abc"),
    ],
)
def test_what_the_simulator_encodes_the_agent_decodes(
    address: str, kind: str, extra: dict[str, object], value: object
) -> None:
    v = variable(address, kind, **extra)
    assert decode(v, b"\0" + encode(v, value), 1) == value


def test_a_string_whose_header_says_more_than_it_holds_is_no_value() -> None:
    v = variable("DB1.DBB0", "str", length=4)
    assert decode(v, bytes([4, 9]) + b"abcdefghi", 0) is None  # actual 9 > max 4
    assert decode(v, bytes([4, 2]) + b"ab\0\0", 0) == "ab"


def test_ranges_coalesce_per_db_and_reads_pack_up_to_20_items_within_the_pdu() -> None:
    near = [variable(f"DB1.DBW{b}", "int") for b in (0, 2, 10, 40)]  # 10 bridged, 40 not
    ranges = plan_ranges(near, pdu=480, max_gap=16)
    assert [(r.start, r.size) for r in ranges] == [(0, 12), (40, 2)]
    many = [variable(f"DB{n}.DBW0", "int") for n in range(1, 46)]  # 45 DBs: 45 items
    reads = pack(plan_ranges(many, 480, 16), 480)
    assert [len(read) for read in reads] == [MAX_ITEMS, MAX_ITEMS, 5]
    big = [variable(f"DB{n}.DBB0", "str", length=200) for n in range(1, 4)]
    assert [len(read) for read in plan_reads(big, 480, 16)] == [2, 1]  # 2 x 206 fit in 480
    assert [len(read) for read in plan_reads(big, 240, 16)] == [1, 1, 1]


def test_a_string_longer_than_a_read_can_carry_is_a_located_error(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "DB1.DBB0", 'type = "str"\n  length = 240', "pdu = 240")
    assert problem == (
        "sources[0].variables[0] (v).length: 242 bytes do not fit one read at a PDU of 240"
        " (222 bytes of data): shorten it, or ask for a larger pdu"
    )
