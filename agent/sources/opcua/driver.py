"""What the runtime and ``check`` use of the OPC UA kind."""

from __future__ import annotations

import math
from collections.abc import Sequence

from agent.sources.base import Poller
from agent.sources.drivers import Plan
from agent.sources.opcua.config import OpcUaSource
from agent.sources.schema import SourceBase


def open_pollers(sources: Sequence[SourceBase]) -> dict[str, Poller]:
    from agent.sources.opcua.poller import OpcUaPoller

    return {s.name: OpcUaPoller(s) for s in sources if isinstance(s, OpcUaSource)}


def plan(source: SourceBase) -> Plan:
    """Read calls per cycle, and the certificate a PLC must trust (made here if absent, so
    that its thumbprint can be entered on the PLC before the first start)."""
    assert isinstance(source, OpcUaSource)
    count = len(source.variables)
    lines = []
    if source.max_nodes_per_read:
        found = Plan(max(1, math.ceil(count / source.max_nodes_per_read)))
        lines.append(f"{source.max_nodes_per_read} node(s) per Read call (max_nodes_per_read)")
    else:
        found = Plan(None, " (1 Read call per the server's MaxNodesPerRead, read at connect)")
    if source.security != "None":
        from agent.sources.opcua.certificate import ensure_identity

        identity = ensure_identity(source.certificate, source.private_key)
        lines.append(
            f"client certificate {identity.certificate} (SHA-1 {identity.thumbprint}),"
            f" {source.policy} {source.security}: the server must trust it"
        )
        lines.append(f"server certificate pinned: {source.server_certificate}")
    for variable in source.variables:
        lines.append(f"{variable.node:<30} {variable.type:<5} {variable.name}")
    found.lines = lines
    return found
