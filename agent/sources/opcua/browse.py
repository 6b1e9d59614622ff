"""``ixon-agent browse``: an OPC UA server's address space below a node, for finding a
machine's variables (what ``read --raw`` is for Modbus). Each line is a node id to copy
into ``node =``, its browse path, its DataType and its value."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from asyncua import ua
from asyncua.common.node import Node
from asyncua.ua.object_ids import ObjectIdNames

from agent.common.values import show
from agent.sources.opcua.poller import OpcUaPoller

#: a server may hold a million nodes: stop listing here, and say so
MAX_NODES = 2000


@dataclass
class Row:
    node_id: str
    path: str
    data_type: str
    value: str


def type_name(node_id: ua.NodeId) -> str:
    if node_id.NamespaceIndex == 0 and isinstance(node_id.Identifier, int):
        return str(ObjectIdNames.get(node_id.Identifier, node_id.to_string()))
    return node_id.to_string()


async def browse(poller: OpcUaPoller, start: str | None, depth: int) -> tuple[list[Row], bool]:
    """Rows below ``start`` (default: the Objects folder) down to ``depth`` levels; True
    when the listing stopped at MAX_NODES."""
    client = poller.client
    assert client is not None
    root = client.get_node(start) if start else client.nodes.objects
    rows: list[Row] = []
    queue: list[tuple[Node, str, int]] = [(root, "", 0)]
    seen: set[str] = set()
    while queue:
        node, parent, level = queue.pop(0)
        for child in await node.get_children():
            key = child.nodeid.to_string()
            if key in seen or (not start and child.nodeid.NamespaceIndex == 0):
                continue  # (below Objects: the server's own standard nodes are not the machine)
            seen.add(key)
            name = (await child.read_browse_name()).Name
            path = f"{parent}/{name}" if parent else name
            if await child.read_node_class() == ua.NodeClass.Variable:
                value = await child.read_data_value(raise_on_bad_status=False)
                good = value.StatusCode is None or value.StatusCode.is_good()
                raw = value.Value.Value if value.Value is not None else None
                shown = show(raw) if good else f"({value.StatusCode.name})"  # type: ignore[union-attr]
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                data_type = type_name(await child.read_data_type())
                rows.append(Row(key, path, data_type, shown))
            else:
                rows.append(Row(key, path, "", ""))
            if len(rows) >= MAX_NODES:
                return rows, True
            if level + 1 < depth:
                queue.append((child, path, level + 1))
    return rows, False


def lines(rows: list[Row], namespaces: list[str]) -> Iterator[str]:
    width = max((len(r.node_id) for r in rows), default=10)
    path_width = min(60, max((len(r.path) for r in rows), default=10))
    for row in rows:
        yield f"{row.node_id:<{width}}  {row.path:<{path_width}}  {row.data_type:<10}  {row.value}"
    used = sorted({int(r.node_id[3:].split(";")[0]) for r in rows if r.node_id.startswith("ns=")})
    for index in used:
        if index < len(namespaces):
            uri = namespaces[index]
            yield f"ns={index} is {uri}: nsu={uri};… survives a redeploy"
