"""Siemens absolute addresses, in English and German mnemonics: ``DB10.DBX4.3``,
``DB10.DBB4``, ``DB10.DBW4``, ``DB10.DBD4``; ``M0.1``, ``MW10``, ``I0.0``/``E0.0``,
``IW2``/``EW2``, ``QB0``/``AB0``, ``QD4``/``AD4``. Pure, and without python-snap7."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

#: area letter (English or German) -> the area's name as the agent uses it
AREAS = {"M": "M", "I": "I", "E": "I", "Q": "Q", "A": "Q"}
#: size letter -> bits; X is one bit
SIZES = {"X": 1, "B": 8, "W": 16, "D": 32}
MAX_OFFSET = 65535

_DB = re.compile(r"^DB(\d{1,5})\.DB([XBWD])(\d{1,5})(?:\.(\d))?$")
_AREA = re.compile(r"^([MIEQA])([BWD]?)(\d{1,5})(?:\.(\d))?$")


@dataclass(frozen=True, slots=True)
class S7Address:
    area: str  # DB, M, I or Q
    db: int  # the DB's number; 0 elsewhere
    byte: int
    bit: int | None  # X: the bit 0..7
    size: str  # X, B, W or D

    @property
    def size_bits(self) -> int:
        return SIZES[self.size]

    @property
    def group(self) -> tuple[str, int]:
        """What one read may cover: an area, or one DB."""
        return (self.area, self.db)

    def __str__(self) -> str:
        bit = f".{self.bit}" if self.bit is not None else ""
        if self.area == "DB":
            return f"DB{self.db}.DB{self.size}{self.byte}{bit}"
        return f"{self.area}{'' if self.size == 'X' else self.size}{self.byte}{bit}"


@functools.cache
def parse_address(text: str) -> S7Address:
    """An address, or a ValueError that says what a good one looks like."""
    clean = text.strip().upper().replace(" ", "")
    if match := _DB.match(clean):
        db, size, byte, bit = match.groups()
        return _checked(text, "DB", int(db), int(byte), bit, size)
    if match := _AREA.match(clean):
        area, size, byte, bit = match.groups()
        return _checked(text, AREAS[area], 0, int(byte), bit, size or "X")
    raise ValueError(
        f"{text!r} is not an S7 address: use DBn.DBX byte.bit, DBn.DBB byte, DBn.DBW byte,"
        " DBn.DBD byte, or M, I (E), Q (A) with X/B/W/D: M0.1, MW10, IW2, QB0"
    )


def _checked(text: str, area: str, db: int, byte: int, bit: str | None, size: str) -> S7Address:
    if area == "DB" and db < 1:
        raise ValueError(f"{text!r}: data blocks are numbered from 1")
    if byte > MAX_OFFSET:
        raise ValueError(f"{text!r}: byte {byte} is past {MAX_OFFSET}")
    if size == "X":
        if bit is None:
            raise ValueError(f"{text!r}: a bit address needs .bit (0..7), as M0.1 or DB1.DBX2.3")
        if int(bit) > 7:
            raise ValueError(f"{text!r}: bit {bit} is not 0..7")
        return S7Address(area, db, byte, int(bit), size)
    if bit is not None:
        raise ValueError(f"{text!r}: only X (bit) addresses take .bit")
    return S7Address(area, db, byte, None, size)
