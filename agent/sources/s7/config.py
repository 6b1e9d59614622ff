"""The Siemens S7 kind of source: a PLC by host, rack and slot, and variables at absolute
addresses. S7 is big-endian, so there is no byte order to give."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agent.common.schema import Duration, ValueType, check_length, check_scaling, item_place
from agent.sources.s7.address import MAX_OFFSET, S7Address, parse_address
from agent.sources.schema import SourceBase

_BIG_ENDIAN = "S7 is big-endian: there is no byte order to give"
#: the widths each size of address holds, by type ("B" also starts a 64-bit value)
_FITS = {
    ("int", "B"): (8, 64),
    ("int", "W"): (16,),
    ("int", "D"): (32,),
    ("float", "D"): (32,),
    ("float", "B"): (64,),
}
_MNEMONIC = {8: "B", 16: "W", 32: "D", 64: "B (its first byte)"}


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class S7Variable:
    """A variable at an absolute address. Slotted, as the other kinds' variables are."""

    NOT_HERE: ClassVar[dict[str, str]] = {
        "byte_order": _BIG_ENDIAN,
        "register": 'an S7 variable is at an address: address = "DB10.DBD4"',
        "node": 'an S7 variable is at an address: address = "DB10.DBD4"',
    }

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    address: str = Field()
    type: ValueType = Field()
    label: str | None = None
    width: int | None = Field(default=None, validate_default=True)
    signed: bool = True
    factor: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    #: str: the STRING's declared maximum (its 2-byte header says max and actual length)
    length: int | None = Field(default=None, ge=1, le=254, validate_default=True)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return str(parse_address(value))

    @field_validator("type")
    @classmethod
    def _type_fits_address(cls, value: str, info: ValidationInfo) -> str:
        text = info.data.get("address")
        if text is None:
            return value
        size = parse_address(text).size
        if (size == "X") != (value == "bool"):
            if size == "X":
                raise ValueError(f"{text} is one bit: type must be 'bool'")
            raise ValueError(f"a bool is one bit: give an X address (DB1.DBX0.0, M0.1), not {text}")
        if value == "str" and size != "B":
            raise ValueError(f"a STRING starts at a byte: DBn.DBB byte (or MB, IB, QB), not {text}")
        return value

    @field_validator("width")
    @classmethod
    def _width_fits_address(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind, text = info.data.get("type"), info.data.get("address")
        if kind not in ("int", "float"):
            if value is not None:
                raise ValueError(f"width does not apply to type {kind!r}")
            return None
        if text is None:
            return value
        size = parse_address(text).size
        fits = _FITS.get((kind, size), ())
        if value is None:
            if kind == "float" and size == "B":
                raise ValueError(f"a float at {text} is an LREAL: give width = 64")
            if not fits:
                raise ValueError(f"{text} holds no {kind}: a REAL is at a D address (DB1.DBD4)")
            return fits[0]
        if value not in fits:
            want = _MNEMONIC.get(value, "?")
            raise ValueError(
                f"{text} holds {parse_address(text).size_bits} bits, not {value}:"
                f" a {value}-bit {kind} is at a {want} address"
            )
        return value

    @field_validator("factor", "offset")
    @classmethod
    def _scaling_needs_number(cls, value: float, info: ValidationInfo) -> float:
        return check_scaling(info.data.get("type"), info.field_name or "", value)

    @field_validator("length")
    @classmethod
    def _length_for_strings(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_length(info.data.get("type"), value)

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @property
    def where(self) -> S7Address:
        return parse_address(self.address)

    @property
    def size(self) -> int:
        """Bytes this variable spans: a STRING's 2-byte header and its ``length`` included."""
        if self.type == "bool":
            return 1
        if self.type == "str":
            return 2 + (self.length or 0)
        return (self.width or 8) // 8

    @classmethod
    def model_validate(cls, data: Mapping[str, Any]) -> S7Variable:
        return _VARIABLE.validate_python(data)


_VARIABLE: TypeAdapter[S7Variable] = TypeAdapter(S7Variable)


class S7Source(SourceBase):
    KIND: ClassVar[str] = "s7"
    PROTOCOLS: ClassVar[tuple[str, ...]] = ("s7",)
    NOT_HERE: ClassVar[dict[str, str]] = {
        "byte_order": _BIG_ENDIAN,
        "unit_id": "an S7 CPU is found by rack and slot",
    }

    protocol: Literal["s7"] = "s7"
    host: str = Field(min_length=1)
    port: int = Field(default=102, ge=1, le=65535)
    rack: int = Field(default=0, ge=0, le=7)
    #: S7-300: 2; S7-400: as configured; S7-1200/1500: 0 or 1
    slot: int = Field(default=1, ge=0, le=31)
    #: the PDU size asked for at connect; the PLC may grant less (the plan follows it)
    pdu: int = Field(default=480, ge=240, le=960)
    #: the planner bridges holes of up to this many bytes between variables of one area
    max_gap: int = Field(default=16, ge=0, le=256)
    timeout: Duration = Field(default=2.0, gt=0)
    variables: list[S7Variable] = Field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def describe(self) -> str:
        return f"{self.address}, rack {self.rack} slot {self.slot}"

    def on_loopback(self, port: int) -> Self:
        return self.model_copy(update={"host": "127.0.0.1", "port": port})

    def problems(self, at: str, index: int, sources: Any) -> Iterator[str]:
        room = self.pdu - 18  # what one item of a reply may carry (plan.ITEM_OVERHEAD)
        for v_index, variable in enumerate(self.variables):
            where = variable.where
            place = item_place(f"sources[{index}].variables", v_index, variable)
            if where.byte + variable.size > MAX_OFFSET + 1:
                yield f"{place}.address: {variable.name} would end past byte {MAX_OFFSET}"
            if variable.size > room:
                yield (
                    f"{place}.length: {variable.size} bytes do not fit one read at a PDU of"
                    f" {self.pdu} ({room} bytes of data): shorten it, or ask for a larger pdu"
                )

    def warnings(self, at: str) -> Iterator[str]:
        """Variables that read the same bytes: usually an offset off by one. Bits of one
        byte (X addresses with different bits) are meant to share it."""
        where = at.split(" (")[0] + ".variables"
        placed = sorted(
            (v.where.group, v.where.byte, v.where.byte + v.size, i, v)
            for i, v in enumerate(self.variables)
        )
        for n, (group, start, end, index, variable) in enumerate(placed):
            for m in range(n + 1, len(placed)):
                other_group, other_start, _, other_index, other = placed[m]
                if other_group != group or other_start >= end:
                    break
                bits = (variable.where.bit, other.where.bit)
                if None not in bits and bits[0] != bits[1]:
                    continue
                first, second = sorted([(index, variable), (other_index, other)])
                yield (
                    f"{item_place(where, second[0], second[1])}: reads byte"
                    f" {max(start, other_start)} of {second[1].address.split('.')[0]}, as does"
                    f" {item_place(where, first[0], first[1])}; check the addresses"
                )
