"""``read --raw`` for S7: the bytes of every range the plan reads, in hex, and each
variable decoded from them; for finding where a PLC keeps what."""

from __future__ import annotations

from collections.abc import Iterator

from agent.common.values import show
from agent.sources.base import PollResult
from agent.sources.s7.config import S7Source
from agent.sources.s7.decode import decode
from agent.sources.s7.plan import Range
from agent.sources.s7.poller import S7Poller


async def read_raw(source: S7Source) -> tuple[dict[Range, bytes], PollResult]:
    poller = S7Poller(source)
    poller.capture = {}
    try:
        result = await poller.poll()
    finally:
        poller.close()
    return poller.capture, result


def lines(captured: dict[Range, bytes]) -> Iterator[str]:
    for item, data in captured.items():
        for row in range(0, len(data), 16):
            chunk = " ".join(f"{b:02x}" for b in data[row : row + 16])
            label = str(item) if row == 0 else ""
            yield f"{label:<16} {item.start + row:>5}: {chunk}"
        for variable in item.variables:
            offset = variable.where.byte - item.start
            value = decode(variable, data, offset)
            what = variable.type + (f" {variable.width}" if variable.width else "")
            shown = "(not a value)" if value is None else show(value, variable.unit)
            yield f"    {variable.name} ({variable.address}, {what}) = {shown}"
