"""``ixon-agent import-tia``: a TIA Portal export of global DBs (python-snap7's
``load_tia_xml`` reads it) to an ``s7`` source's ``[[sources.variables]]``.

Why this format: the DB members with their offsets are what an S7 source reads, and TIA
Portal writes them for a DB with standard access (Openness, or "Generate source"). A
DB with optimized access has no fixed offsets, so it cannot be read by address at all.
IXON's CSV rows carry no offsets of DB members. A member of a type that has no place in
IXON's four types (DTL, WString, arrays, structs) is listed with its reason and left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from agent.tools.ixon_import import Imported, ImportError_, _slug, _toml

#: S7 data type -> (type, width, signed); the address size follows the width
TYPES: dict[str, tuple[str, int | None, bool]] = {
    "BOOL": ("bool", None, True),
    "BYTE": ("int", 8, False),
    "USINT": ("int", 8, False),
    "SINT": ("int", 8, True),
    "INT": ("int", 16, True),
    "UINT": ("int", 16, False),
    "WORD": ("int", 16, False),
    "DINT": ("int", 32, True),
    "UDINT": ("int", 32, False),
    "DWORD": ("int", 32, False),
    "TIME": ("int", 32, True),
    "REAL": ("float", 32, True),
    "LREAL": ("float", 64, True),
    "LINT": ("int", 64, True),
    "ULINT": ("int", 64, False),
    "LWORD": ("int", 64, False),
}
_SIZE = {8: "B", 16: "W", 32: "D", 64: "B"}
_STRING = re.compile(r"^STRING(?:\[(\d+)\])?$")


def _entry(name: str, tag: Any) -> dict[str, Any] | str:
    datatype = str(tag.datatype).upper()
    db, byte = tag.db_number, tag.byte_offset
    if match := _STRING.match(datatype):
        length = int(match.group(1) or 254)
        return {"address": f"DB{db}.DBB{byte}", "type": "str", "length": length}
    if datatype not in TYPES:
        return f"data type {tag.datatype} has no place in bool, int, float or str"
    kind, width, signed = TYPES[datatype]
    if kind == "bool":
        return {"address": f"DB{db}.DBX{byte}.{tag.bit}", "type": "bool"}
    assert width is not None
    entry: dict[str, Any] = {"address": f"DB{db}.DB{_SIZE[width]}{byte}", "type": kind}
    if width == 64:
        entry["width"] = 64  # (at a DBB address: S7 has no 64-bit mnemonic)
    if not signed:
        entry["signed"] = False
    return entry


def import_tia(
    paths: list[Path],
    *,
    source: str = "plc",
    host: str = "192.168.0.1",
    rack: int = 0,
    slot: int = 1,
) -> Imported:
    """Translate the exports; members that cannot be translated are reported."""
    from snap7.tags import load_tia_xml

    problems: list[str] = []
    entries: list[dict[str, Any]] = []
    names: set[str] = set()
    for path in paths:
        try:
            tags = load_tia_xml(path)
        except Exception as exc:  # malformed XML, a file that is not an export
            raise ImportError_(f"{path}: not a TIA Portal DB export ({exc})") from None
        if not tags:
            raise ImportError_(f"{path}: no DB members found; is this a TIA Portal DB export?")
        for label, tag in tags.items():
            name = _slug(label)
            entry = _entry(name, tag)
            if isinstance(entry, str):
                problems.append(f"{path.name}: {label}: {entry}")
                continue
            if name in names:
                problems.append(f"{path.name}: {label}: name {name!r} appears twice")
                continue
            names.add(name)
            head: dict[str, Any] = {"name": name}
            if label != name:
                head["label"] = label
            entries.append(head | entry)
    out = [
        f"# Imported from {', '.join(p.name for p in paths)} by ixon-agent import-tia.",
        "# Check host, rack and slot; the DBs must have standard (not optimized) access,",
        "# and the PLC must allow PUT/GET.",
        "",
        "[[sources]]",
        f"name = {_toml(source)}",
        'protocol = "s7"',
        f"host = {_toml(host)}",
        f"rack = {rack}",
        f"slot = {slot}",
    ]
    for entry in entries:
        out += ["", "  [[sources.variables]]"] + [f"  {k} = {_toml(v)}" for k, v in entry.items()]
    return Imported("\n".join(out) + "\n", problems, len(entries), 0)
