"""The Modbus kinds of source (TCP, RTU on a serial port, RTU over TCP) and their variables:
what the config file says of them, and the rules that only the whole config shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from agent.common.schema import ValueType, check_length, check_scaling, check_width, item_place
from agent.common.values import BIT_KINDS
from agent.sources.schema import SourceBase

ByteOrder = Literal["ABCD", "BADC", "CDAB", "DCBA"]
RegisterKind = Literal["coil", "discrete_input", "holding", "input"]

PROTOCOLS = ("modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp")


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class ModbusVariable:
    """A variable of a Modbus source. A slotted dataclass, not a model: a config may hold 50k
    of them for as long as the agent runs, at about 200 bytes each instead of 950."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    #: the Modbus table; ``register`` in the file
    table: RegisterKind = Field(alias="register")
    address: int = Field(ge=0, le=65535)
    type: ValueType = Field()
    label: str | None = None
    width: int | None = Field(default=None, validate_default=True)
    signed: bool = True
    factor: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    bit: int | None = Field(default=None, ge=0, le=15)
    length: int | None = Field(default=None, ge=1, le=250, validate_default=True)
    byte_order: ByteOrder | None = None

    @field_validator("type")
    @classmethod
    def _bit_registers_hold_bools(cls, value: str, info: ValidationInfo) -> str:
        table = info.data.get("table")
        if table in BIT_KINDS and value != "bool":
            raise ValueError(f"a {table} holds one bit: type must be 'bool'")
        return value

    @field_validator("width")
    @classmethod
    def _width_fits_type(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_width(info.data.get("type"), value)

    @field_validator("factor", "offset")
    @classmethod
    def _scaling_needs_number(cls, value: float, info: ValidationInfo) -> float:
        return check_scaling(info.data.get("type"), info.field_name or "", value)

    @field_validator("bit")
    @classmethod
    def _bit_needs_register(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        if info.data.get("type") != "bool" or info.data.get("table") not in ("holding", "input"):
            raise ValueError(
                "bit selects one bit of a holding or input register: type must be 'bool'"
            )
        return value

    @field_validator("length")
    @classmethod
    def _length_for_strings(cls, value: int | None, info: ValidationInfo) -> int | None:
        return check_length(info.data.get("type"), value)

    @property
    def display_name(self) -> str:
        return self.label or self.name

    @classmethod
    def model_validate(cls, data: Mapping[str, Any]) -> ModbusVariable:
        return _VARIABLE.validate_python(data)

    def model_copy(self, update: Mapping[str, Any]) -> ModbusVariable:
        """A validated copy with some fields changed (as a model's ``model_copy``)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | dict(update)
        fields["register"] = fields.pop("table")
        return _VARIABLE.validate_python(fields)

    @property
    def register_count(self) -> int:
        """Registers (or bits, for coils and discrete inputs) this variable spans."""
        if self.table in BIT_KINDS:
            return 1
        if self.type == "str":
            return ((self.length or 0) + 1) // 2
        if self.type in ("int", "float"):
            return max(1, (self.width or 16) // 16)
        return 1


_VARIABLE: TypeAdapter[ModbusVariable] = TypeAdapter(ModbusVariable)

#: what the sources on one serial line share, by protocol; the first of them sets it
_LINE_SETTINGS = {
    "modbus-rtu": ("baudrate", "parity", "stopbits", "bytesize", "timeout"),
    "modbus-rtu-over-tcp": ("timeout",),
}
_LINE_NAMES = {"modbus-rtu": "serial port", "modbus-rtu-over-tcp": "device server"}


class ModbusSource(SourceBase):
    KIND: ClassVar[str] = "modbus"
    PROTOCOLS: ClassVar[tuple[str, ...]] = PROTOCOLS

    #: modbus-rtu-over-tcp: RTU frames over a TCP connection, to a serial device server
    #: (Moxa NPort, USR, ...) in transparent mode; the units behind it share its line
    protocol: Literal["modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp"] = "modbus-tcp"
    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str | None = None
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit_id: int = Field(default=1, ge=0, le=255)
    byte_order: ByteOrder = "ABCD"
    #: the read planner bridges holes of up to this many registers (16x as many bits)
    max_gap: int = Field(default=10, ge=0, le=124)
    variables: list[ModbusVariable] = Field(default_factory=list)

    @property
    def address(self) -> str:
        if self.protocol == "modbus-rtu":
            return self.serial_port or "?"
        return f"{self.host}:{self.port}"

    @property
    def describe(self) -> str:
        return f"{self.address}, unit {self.unit_id}"

    def on_loopback(self, port: int) -> Self:
        return self.model_copy(update={"host": "127.0.0.1", "port": port})

    @property
    def bus(self) -> str:
        """Sources on one bus share one connection and take turns: a serial port, or the
        serial line behind a device server (RTU frames carry no transaction id to tell
        replies apart, so its units cannot be asked at once)."""
        if self.protocol == "modbus-rtu":
            return f"serial:{self.serial_port}"
        if self.protocol == "modbus-rtu-over-tcp":
            return f"rtu-over-tcp:{self.host}:{self.port}"
        return f"source:{self.name}"

    def problems(self, at: str, index: int, sources: Sequence[SourceBase]) -> Iterator[str]:
        if self.protocol in ("modbus-tcp", "modbus-rtu-over-tcp") and not self.host:
            yield f"{at}.host: required for protocol {self.protocol!r}"
        if self.protocol == "modbus-rtu" and not self.serial_port:
            yield f"{at}.serial_port: required for protocol 'modbus-rtu'"
        yield from self._shared_line(at, sources[:index])
        for v_index, variable in enumerate(self.variables):
            end = variable.address + variable.register_count
            if end > 65536:
                yield (
                    f"{item_place(f'sources[{index}].variables', v_index, variable)}.address:"
                    f" {variable.name}"
                    f" would end at register {end - 1}, past the last Modbus address 65535"
                )

    def _shared_line(self, at: str, before: Sequence[SourceBase]) -> Iterator[str]:
        """Sources on one serial line (a port, or a device server's) share its settings;
        the first one sets them."""
        shared = _LINE_SETTINGS.get(self.protocol)
        if shared is None or (self.protocol == "modbus-rtu" and not self.serial_port):
            return
        for first_index, first in enumerate(before):
            if isinstance(first, ModbusSource) and first.bus == self.bus:
                for name in shared:
                    if getattr(first, name) != getattr(self, name):
                        yield (
                            f"{at}.{name}: differs from sources[{first_index}] on the same"
                            f" {_LINE_NAMES[self.protocol]} {self.address}"
                            f" ({getattr(first, name)!r})"
                        )
                return

    def warnings(self, at: str) -> Iterator[str]:
        """Variables that read the same registers: usually an address off by one. Bits of
        one register (``bit``), and a register read whole beside its bits, are meant to
        share."""
        where = at.split(" (")[0] + ".variables"
        placed = sorted(
            (v.table, v.address, v.address + v.register_count, i, v)
            for i, v in enumerate(self.variables)
        )
        for n, (table, start, end, index, variable) in enumerate(placed):
            for m in range(n + 1, len(placed)):  # (a slice here would copy: n squared)
                other_table, other_start, _, other_index, other = placed[m]
                if other_table != table or other_start >= end:
                    break
                bits = (variable.bit, other.bit)
                if bits != (None, None) and bits[0] != bits[1]:
                    continue  # bits of a register, or the register beside its bits
                first, second = sorted(
                    [(index, variable), (other_index, other)], key=lambda t: t[0]
                )
                shared = f"{table} {max(start, other_start)}"
                yield (
                    f"{item_place(where, second[0], second[1])}: reads {shared}, as does"
                    f" {item_place(where, first[0], first[1])}; check the addresses"
                )
