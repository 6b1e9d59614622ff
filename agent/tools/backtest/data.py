"""Recorded values (DESIGN.md 9.2): CSV, read as a stream of timed samples.

A ``.gz`` file is read through gzip. Wide form: ``time`` then one column per
``<source>.<variable>``; an empty cell is no new sample. Long form: ``time,variable,value``.
Time is ISO 8601 or Unix seconds. Columns the config does not know are listed and skipped;
a bad cell is an error naming its line and column, or with ``skip_bad`` a skipped (and
counted) row.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from agent.common.values import Value
from agent.config import Config, Variable

Row = tuple[float, dict[str, Value]]  # Unix seconds, the samples of that moment
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class DataError(ValueError):
    """A cell that cannot be read; names its place."""


def parse_time(text: str) -> float:
    """Unix seconds, from ``1732345200.5`` or ISO 8601 (a time without zone is UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parser(variable: Variable) -> Callable[[str], Value]:
    """How a cell becomes the variable's value."""
    kind = variable.type
    if kind == "bool":

        def boolean(text: str) -> bool:
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(f"{text!r} is not true/false/1/0")

        return boolean
    if kind == "str":
        return str
    if kind == "int" and variable.factor == 1.0 and variable.offset == 0.0:

        def whole(text: str) -> int:
            number = float(text)
            if not number.is_integer():
                raise ValueError(f"{text!r} is not a whole number")
            return int(number)

        return whole

    return float


@dataclass
class Reading:
    """What reading a file found besides its samples."""

    unknown: list[str] = field(default_factory=list)  # columns or variables skipped
    skipped: int = 0  # bad rows skipped (``skip_bad``)
    rows: int = 0
    values: int = 0


def rows(path: Path, config: Config, reading: Reading, skip_bad: bool = False) -> Iterator[Row]:
    """Stream the file's samples in time order as written (one row, one moment)."""
    variables = {key: variable for key, _, variable in config.variables()}
    parsers = {key: parser(variable) for key, variable in variables.items()}
    if path.suffix == ".gz":
        with gzip.open(path, "rt", newline="", encoding="utf-8") as zipped:
            yield from _rows(zipped, path, parsers, reading, skip_bad)
        return
    with path.open(newline="", encoding="utf-8") as handle:
        yield from _rows(handle, path, parsers, reading, skip_bad)


def _rows(
    handle: TextIO,
    path: Path,
    parsers: dict[str, Callable[[str], Value]],
    reading: Reading,
    skip_bad: bool,
) -> Iterator[Row]:
    table = csv.reader(handle)
    header = next(table, None)
    if not header or header[0].strip().lower() != "time":
        raise DataError(f"{path}:1: the first column must be 'time'")
    names = [h.strip() for h in header]
    if names[1:] == ["variable", "value"]:
        yield from _long(table, path, parsers, reading, skip_bad)
        return
    columns = [(i, name, parsers[name]) for i, name in enumerate(names) if name in parsers]
    reading.unknown = [name for name in names[1:] if name not in parsers]
    width = len(names)
    # every column a known number variable, in order: a whole row converts in one go
    plain = (
        [name for _, name, _ in columns]
        if (
            [i for i, _, _ in columns] == list(range(1, width))
            and all(parse is float for _, _, parse in columns)
        )
        else None
    )
    for line, row in enumerate(table, start=2):
        if not row:
            continue
        try:
            at = _time(row[0], path, line)
            if len(row) >= width:  # the usual row: every cell at once
                samples: dict[str, Value]
                try:
                    if plain is not None:
                        samples = dict(zip(plain, map(float, row[1:width]), strict=True))
                    else:
                        samples = {name: parse(row[i]) for i, name, parse in columns if row[i]}
                except ValueError:  # an empty cell (no new sample) or a bad one
                    samples = _cells(row, columns, path, line)
            else:
                samples = _cells(row, columns, path, line)
        except DataError as exc:
            _skip(exc, reading, skip_bad)
            continue
        reading.rows += 1
        reading.values += len(samples)
        yield at, samples


def _time(text: str, path: Path, line: int) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise DataError(f"{path}:{line}: column 'time': {exc}") from None


def _skip(exc: DataError, reading: Reading, skip_bad: bool) -> None:
    """A bad row: counted and skipped with ``skip_bad``, else the error."""
    if not skip_bad:
        raise exc
    reading.skipped += 1


def _cells(
    row: list[str], columns: list[tuple[int, str, Callable[[str], Value]]], path: Path, line: int
) -> dict[str, Value]:
    """A row cell by cell: a short row, or the error naming the cell that is wrong."""
    samples: dict[str, Value] = {}
    for i, name, parse in columns:
        if i < len(row) and row[i]:
            try:
                samples[name] = parse(row[i])
            except ValueError as exc:
                raise DataError(f"{path}:{line}: column {name!r}: {exc}") from None
    return samples


def _long(
    table: Iterator[list[str]],
    path: Path,
    parsers: dict[str, Callable[[str], Value]],
    reading: Reading,
    skip_bad: bool,
) -> Iterator[Row]:
    """``time,variable,value``: consecutive rows of one time are one moment."""
    unknown: set[str] = set()
    current: float | None = None
    samples: dict[str, Value] = {}
    for line, row in enumerate(table, start=2):
        if not row:
            continue
        try:
            if len(row) < 3:
                raise DataError(f"{path}:{line}: expected time,variable,value")
            at = _time(row[0], path, line)
            name = row[1].strip()
            if name not in parsers:
                unknown.add(name)
                continue
            try:
                value = parsers[name](row[2])
            except ValueError as exc:
                raise DataError(f"{path}:{line}: column 'value' ({name}): {exc}") from None
        except DataError as exc:
            _skip(exc, reading, skip_bad)
            continue
        if current is not None and at != current:
            reading.rows += 1
            yield current, samples
            samples = {}
        current = at
        samples[name] = value
        reading.values += 1
    if current is not None:
        reading.rows += 1
        yield current, samples
    reading.unknown = sorted(unknown)
