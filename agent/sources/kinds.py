"""The kinds of source, each a folder that owns its config model: a new protocol is a new
folder and one line here. ``agent.config`` composes them as a union on ``protocol``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Tag

from agent.sources.modbus.config import ModbusSource
from agent.sources.opcua.config import OpcUaSource
from agent.sources.s7.config import S7Source
from agent.sources.schema import SourceBase

KINDS: tuple[type[SourceBase], ...] = (ModbusSource, OpcUaSource, S7Source)

#: every value ``protocol`` may take -> the kind (folder) that owns it
PROTOCOL_KIND = {protocol: kind.KIND for kind in KINDS for protocol in kind.PROTOCOLS}
#: what ``protocol`` is when a source leaves it out
DEFAULT_PROTOCOL = KINDS[0].PROTOCOLS[0]
MODELS = {kind.KIND: kind for kind in KINDS}


def _kind_of(value: Any) -> str | None:
    """The tag of the union member a source belongs to; None: no such protocol."""
    if isinstance(value, SourceBase):
        return value.KIND
    if isinstance(value, dict):
        protocol = value.get("protocol", DEFAULT_PROTOCOL)
        return PROTOCOL_KIND.get(protocol) if isinstance(protocol, str) else None
    return None


if TYPE_CHECKING:
    Source = SourceBase
else:
    Source = Annotated[
        Union[tuple(Annotated[kind, Tag(kind.KIND)] for kind in KINDS)],  # noqa: UP007
        Discriminator(_kind_of),
    ]
