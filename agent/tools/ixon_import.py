"""``ixon-agent import-ixon``: IXON's variable and alarm CSV exports to ``agent.toml`` sections.

Variables: ``Identifier, Name, Address, Type, Width, Signed, Max string length, Factor, Unit``
with a Modbus address written ``<function code>.<address>`` (``3.100`` = holding register
100), or an OPC UA node id (``ns=2;s=20001``, as IXON writes OPC UA addresses): the first
row's address decides the protocol of the source written, and a row of the other protocol
is left out with its reason. For OPC UA the node's DataType gives width and sign, so those
columns are not read.

Alarms: ``Type, Name, Severity, Address, Condition, Threshold, On delay, Operator
instructions`` (older exports spell it ``Treshold``; ``Access Category`` is ignored). Comma or
semicolon separated, as Excel writes them. A row that cannot be translated is reported with
its line and reason and left out; everything else is written.

IXON's other alarm types, where a row carries what they need (IXON documents no columns
for them; these are what a person adding them to the sheet would write):
- ``error_bits``: one row per bit, its number in ``Bit`` (or ``Threshold``), its text the
  row's ``Name``. The rows of one address become one alarm named after the variable, each
  bit with its own severity and instructions where they differ.
- ``bit_pattern``: ``Mask`` and ``Pattern`` columns (hex ``0x00F0`` or decimal).
- ``rate_of_change``: ``Condition`` and ``Threshold`` as any alarm, and ``Per`` and ``Window``
  columns (durations, ``1 Minutes``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.common.values import BIT_KINDS

TABLES = {"1": "coil", "2": "discrete_input", "3": "holding", "4": "input"}
TYPES = {
    "bool": "bool",
    "boolean": "bool",
    "int": "int",
    "integer": "int",
    "float": "float",
    "real": "float",
    "str": "str",
    "string": "str",
}
CONDITIONS = {
    "==": "==",
    "=": "==",
    "eq": "==",
    "equal": "==",
    "equal to": "==",
    "equals": "==",
    "!=": "!=",
    "<>": "!=",
    "ne": "!=",
    "not equal": "!=",
    "not equal to": "!=",
    ">": ">",
    "gt": ">",
    "greater": ">",
    "greater than": ">",
    ">=": ">=",
    "ge": ">=",
    "greater than or equal": ">=",
    "greater than or equal to": ">=",
    "<": "<",
    "lt": "<",
    "less": "<",
    "less than": "<",
    "smaller than": "<",
    "<=": "<=",
    "le": "<=",
    "less than or equal": "<=",
    "less than or equal to": "<=",
}
UNITS = {
    "ms": "ms",
    "millisecond": "ms",
    "s": "s",
    "sec": "s",
    "second": "s",
    "m": "m",
    "min": "m",
    "minute": "m",
    "h": "h",
    "hour": "h",
}


@dataclass
class Imported:
    """What the CSVs came to: TOML text, and every row that was left out, with why."""

    toml: str
    problems: list[str] = field(default_factory=list)
    variables: int = 0
    alarms: int = 0


class ImportError_(ValueError):
    """A file that is not an IXON export this command can read; says which and why."""


def _text(path: Path) -> str:
    """UTF-8 (with or without BOM), or UTF-16 as Excel's "Unicode text" saves it."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportError_(f"{path}: not a text file (neither UTF-8 nor UTF-16)") from None


def _rows(path: Path, needs: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) with header names lower-cased and trimmed; ``,``, ``;`` or tab.
    A header without the ``needs`` columns is an error, not an empty import."""
    text = _text(path)
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = max(",;\t", key=first.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = {(name or "").strip().lower() for name in reader.fieldnames or []}
    missing = [n for n in needs if n not in header]
    if missing:
        found = ", ".join(sorted(h for h in header if h)) or "no header"
        raise ImportError_(
            f"{path}: no {' or '.join(repr(m) for m in missing)} column (found: {found});"
            " is this IXON's export?"
        )
    for line, row in enumerate(reader, start=2):
        cleaned = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if any(cleaned.values()):
            yield line, cleaned


def _slug(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", text.strip().lower())).strip("_")


def _boolean(text: str) -> bool | None:
    return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
        text.strip().lower()
    )


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ".")) if text else None
    except ValueError:
        return None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def _is_node(address: str) -> bool:
    return bool(re.match(r"^(ns|nsu)=", address.strip()))


class _Variables:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.by_address: dict[str, dict[str, Any]] = {}
        self.by_identifier: dict[str, dict[str, Any]] = {}
        self.protocol: str | None = None  # the first row's: "modbus" or "opcua"

    def add(self, row: dict[str, str]) -> str | None:
        """Translate one row; returns why not, or None."""
        name = _slug(row.get("identifier") or row.get("name", ""))
        if not name:
            return "no identifier or name"
        if any(v["name"] == name for v in self.entries):
            return f"identifier {name!r} appears twice"
        protocol = "opcua" if _is_node(row.get("address", "")) else "modbus"
        self.protocol = self.protocol or protocol
        if protocol != self.protocol:
            return f"a {protocol} address in an export of {self.protocol} variables"
        if protocol == "opcua":
            return self._node(name, row)
        match = re.fullmatch(r"([1-4])\.(\d+)", row.get("address", ""))
        if not match:
            return f"address {row.get('address')!r} is not <function code 1-4>.<address>"
        code, address = match.groups()
        kind = TYPES.get(row.get("type", "").lower())
        if kind is None:
            return f"type {row.get('type')!r} is not bool, int, float or str"
        table = TABLES[code]
        if table in BIT_KINDS and kind != "bool":
            return f"function code {code} holds bits; type {kind} cannot be read there"
        entry: dict[str, Any] = {
            "name": name,
            "register": table,
            "address": int(address),
            "type": kind,
        }
        width = row.get("width", "")
        if kind in ("int", "float") and width:
            if not width.isdigit() or int(width) not in (
                (8, 16, 32, 64) if kind == "int" else (32, 64)
            ):
                return f"width {width!r} does not fit type {kind}"
            entry["width"] = int(width)
        signed = _boolean(row.get("signed", ""))
        if kind == "int" and signed is False:
            entry["signed"] = False
        if kind == "str":
            length = row.get("max string length", "")
            if not length.isdigit() or not 1 <= int(length) <= 250:
                return f"a string needs a max string length of 1..250, got {length!r}"
            entry["length"] = int(length)
        return self._keep(name, row, kind, entry)

    def _keep(self, name: str, row: dict[str, str], kind: str, entry: dict[str, Any]) -> str | None:
        """What every protocol's row has (label, factor, unit), then the entry kept."""
        if row.get("name") and _slug(row["name"]) != name:
            entry["label"] = row["name"]
        factor = _number(row.get("factor", ""))
        if factor is None and row.get("factor"):
            return f"factor {row['factor']!r} is not a number"
        if factor not in (None, 1.0):
            if kind not in ("int", "float"):
                return f"a factor applies to numbers, not to {kind}"
            entry["factor"] = factor
        if row.get("unit"):
            entry["unit"] = row["unit"]
        self.entries.append(entry)
        self.by_address.setdefault(row["address"].strip(), entry)
        if row.get("identifier"):
            self.by_identifier[row["identifier"].strip().lower()] = entry
        return None

    def _node(self, name: str, row: dict[str, str]) -> str | None:
        """An OPC UA row: the node id, and what alarms compare."""
        from agent.sources.opcua.nodes import parse_node

        try:
            parse_node(row["address"])
        except ValueError as exc:
            return str(exc)
        kind = TYPES.get(row.get("type", "").lower())
        if kind is None:
            return f"type {row.get('type')!r} is not bool, int, float or str"
        entry: dict[str, Any] = {"name": name, "node": row["address"].strip(), "type": kind}
        return self._keep(name, row, kind, entry)


def _delay(text: str) -> str | float | None:
    if not text:
        return 0.0
    match = re.fullmatch(r"(\d+(?:[.,]\d+)?)\s*([a-zA-Z]*)", text.strip())
    if not match:
        return None
    number, word = match.groups()
    word = word.lower() or "s"
    if word not in UNITS and word.endswith("s"):  # "Minutes", "seconds"
        word = word[:-1]
    unit = UNITS.get(word)
    if unit is None:
        return None
    seconds = float(number.replace(",", "."))
    return seconds if unit == "s" else f"{seconds:g}{unit}"


def _integer(text: str) -> int | None:
    """``0x00F0``, ``0b1010`` or ``240``."""
    try:
        return int(text.strip().replace("_", ""), 0) if text.strip() else None
    except ValueError:
        return None


def _common(row: dict[str, str]) -> dict[str, Any] | str:
    """Severity, on-delay and instructions, as every alarm type has them."""
    severity = (row.get("severity", "").lower().split() or ["medium"])[0]
    if severity not in ("low", "medium", "high"):
        return f"severity {row.get('severity')!r} is not low, medium or high"
    on_delay = _delay(row.get("on delay", ""))
    if on_delay is None:
        return f"on delay {row.get('on delay')!r} is not a duration"
    found: dict[str, Any] = {"severity": severity}
    if on_delay:
        found["on_delay"] = on_delay
    if row.get("operator instructions"):
        found["instructions"] = row["operator instructions"]
    return found


def _word(row: dict[str, str], kind: str, target: dict[str, Any]) -> dict[str, Any] | str:
    """An error_bits row (one bit) or a bit_pattern row."""
    if target["type"] != "int" or "factor" in target:
        return f"{kind} reads the bits of an unscaled int variable; {target['name']} is not"
    common = _common(row)
    if isinstance(common, str):
        return common
    width = target.get("width", 16)
    if kind == "error_bits":
        bit = _integer(row.get("bit") or row.get("threshold", row.get("treshold", "")))
        if bit is None or not 0 <= bit < width:
            return f"an error_bits row needs its bit number (0 to {width - 1}) in Bit or Threshold"
        return {"type": kind, "bit": bit, "text": row["name"], **common}
    mask, pattern = _integer(row.get("mask", "")), _integer(row.get("pattern", ""))
    if mask is None or pattern is None:
        return "a bit_pattern row needs Mask and Pattern columns (IXON's CSV has none)"
    if mask >> width or pattern & ~mask:
        return f"mask {mask:#x} and pattern {pattern:#x} do not fit {width} bits, or differ"
    return {"name": row["name"], "type": kind, "mask": mask, "pattern": pattern, **common}


def _alarm(row: dict[str, str], variables: _Variables) -> dict[str, Any] | str:
    name = row.get("name", "")
    if not name:
        return "no name"
    kind = row.get("type", "").lower()
    if kind == "unary":
        return "an SMTP (unary) alarm has no Modbus variable"
    target = variables.by_address.get(row.get("address", "")) or variables.by_identifier.get(
        row.get("address", "").lower()
    )
    if target is None:
        return f"address {row.get('address')!r} matches no imported variable"
    if kind in ("error_bits", "bit_pattern"):
        found = _word(row, kind, target)
        if isinstance(found, dict):
            found["variable"] = f"{{source}}.{target['name']}"
            if kind == "error_bits":  # the alarm of the word is named after it
                found["label"] = target.get("label", target["name"])
        return found
    condition = CONDITIONS.get(re.sub(r"\s+", " ", row.get("condition", "").lower()))
    if condition is None:
        return f"condition {row.get('condition')!r} is not one this agent knows"
    raw = row.get("threshold", row.get("treshold", ""))
    threshold: Any
    if target["type"] == "bool":
        threshold = _boolean(raw)
        if threshold is None:
            return f"threshold {raw!r} is not true or false"
        if condition not in ("==", "!="):
            return f"condition {condition} does not apply to a bool"
    elif target["type"] == "str":
        threshold = raw
        if condition not in ("==", "!="):
            return f"condition {condition} does not apply to a string"
    else:
        threshold = _number(raw)
        if threshold is None:
            return f"threshold {raw!r} is not a number"
    common = _common(row)
    if isinstance(common, str):
        return common
    alarm: dict[str, Any] = {"name": name}
    if kind == "rate_of_change":
        if target["type"] not in ("int", "float"):
            return f"a rate of change needs a number; {target['name']} is {target['type']}"
        per, window = _delay(row.get("per", "")), _delay(row.get("window", ""))
        if not per or not window:
            return "a rate_of_change row needs Per and Window columns (IXON's CSV has none)"
        alarm |= {"type": kind, "per": per, "window": window}
    return alarm | {
        "variable": f"{{source}}.{target['name']}",
        "condition": condition,
        "threshold": threshold,
        **common,
    }


def _fault_words(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any] | tuple[int, str, str]]:
    """error_bits rows, one per bit, as one alarm per variable (the first row's severity,
    a bit's own where it differs); a row that does not fit is (line, text, why)."""
    words: dict[str, dict[str, Any]] = {}
    for row in rows:
        word = words.get(row["variable"])
        if word is None:
            word = words[row["variable"]] = {
                "name": row["label"],
                "type": "error_bits",
                "variable": row["variable"],
                "severity": row["severity"],
                "bits": {},
            }
            if "on_delay" in row:
                word["on_delay"] = row["on_delay"]
        if row["bit"] in word["bits"]:
            yield row["line"], row["text"], f"bit {row['bit']} of {row['label']} appears twice"
            continue
        if row.get("on_delay", 0.0) != word.get("on_delay", 0.0):
            why = "its on delay differs from the first bit's: one alarm has one on delay"
            yield row["line"], row["text"], why
            continue
        spec = {"text": row["text"]}
        if row["severity"] != word["severity"]:
            spec["severity"] = row["severity"]
        if row.get("instructions"):
            spec["instructions"] = row["instructions"]
        word["bits"][row["bit"]] = spec
    yield from words.values()


def _lines(alarm: dict[str, Any]) -> list[str]:
    """An alarm as TOML: its keys, masks in hex, then its bit table."""
    out = ["", "[[alarms]]"]
    for key, value in alarm.items():
        if key in ("mask", "pattern"):
            out.append(f"{key} = 0x{value:04X}")
        elif key != "bits":
            out.append(f"{key} = {_toml(value)}")
    if alarm.get("bits"):
        out.append("  [alarms.bits]")
        for bit, spec in sorted(alarm["bits"].items()):
            if len(spec) == 1:
                out.append(f"  {bit} = {_toml(spec['text'])}")
            else:
                pairs = ", ".join(f"{k} = {_toml(v)}" for k, v in spec.items())
                out.append(f"  {bit} = {{ {pairs} }}")
    return out


def import_ixon(
    variables_csv: Path,
    alarms_csv: Path | None = None,
    *,
    source: str = "plc",
    host: str = "127.0.0.1",
    port: int = 502,
    unit_id: int = 1,
    endpoint: str = "opc.tcp://127.0.0.1:4840",
) -> Imported:
    """Translate the exports; rows that cannot be translated are reported, not guessed."""
    problems: list[str] = []
    variables = _Variables()
    for line, row in _rows(variables_csv, ("address", "type")):
        why = variables.add(row)
        if why:
            problems.append(f"{variables_csv.name} line {line} ({row.get('name') or '?'}): {why}")
    alarms: list[dict[str, Any]] = []
    if alarms_csv is not None:
        names: set[str] = set()
        bits: list[dict[str, Any]] = []
        for line, row in _rows(alarms_csv, ("address", "condition")):
            result = _alarm(row, variables)
            if isinstance(result, dict) and "bit" in result:
                result["line"] = line
                bits.append(result)
                continue
            if isinstance(result, dict) and result["name"] in names:
                result = f"alarm name {result['name']!r} appears twice"
            if isinstance(result, str):
                problems.append(
                    f"{alarms_csv.name} line {line} ({row.get('name') or '?'}): {result}"
                )
                continue
            names.add(result["name"])
            alarms.append(result)
        for word in _fault_words(bits):
            if isinstance(word, tuple):
                problems.append(f"{alarms_csv.name} line {word[0]} ({word[1]}): {word[2]}")
            elif word["name"] in names:
                problems.append(f"{alarms_csv.name}: alarm name {word['name']!r} appears twice")
            else:
                names.add(word["name"])
                alarms.append(word)

    origin = f"# Imported from {variables_csv.name}" + (
        f" and {alarms_csv.name}" if alarms_csv else ""
    )
    if variables.protocol == "opcua":
        out = [
            origin,
            "# by ixon-agent import-ixon. Check the endpoint and its security: IXON keeps them",
            "# on the data source, not in these exports.",
            "",
            "[[sources]]",
            f"name = {_toml(source)}",
            'protocol = "opcua"',
            f"endpoint = {_toml(endpoint)}",
            'security = "None"                # a PLC in production: SignAndEncrypt',
        ]
    else:
        out = [
            origin,
            "# by ixon-agent import-ixon. Check host, port, unit_id and byte_order: IXON keeps",
            "# them on the data source, not in these exports.",
            "",
            "[[sources]]",
            f"name = {_toml(source)}",
            'protocol = "modbus-tcp"',
            f"host = {_toml(host)}",
            f"port = {port}",
            f"unit_id = {unit_id}",
            'byte_order = "ABCD"',
        ]
    for entry in variables.entries:
        out += ["", "  [[sources.variables]]"] + [f"  {k} = {_toml(v)}" for k, v in entry.items()]
    for alarm in alarms:
        alarm["variable"] = alarm["variable"].replace("{source}", source)
        out += _lines(alarm)
    return Imported("\n".join(out) + "\n", problems, len(variables.entries), len(alarms))
