"""OPC UA node ids as the config writes them (``ns=3;s=Oven.Temp``, ``nsu=urn:x;i=42``):
parsed and checked without asyncua, so ``check`` needs no extra to find a typo."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass

_NODE = re.compile(r"^(?:(ns|nsu)=([^;]*);)?([isgb])=(.*)$", re.DOTALL)
_KINDS = {"i": "numeric", "s": "string", "g": "GUID", "b": "opaque (base64)"}


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node id with its namespace by index (``ns=``) or by URI (``nsu=``), to be resolved
    against the server's namespace array at every connect."""

    namespace: int
    uri: str | None
    kind: str  # i, s, g or b
    identifier: str

    def with_index(self, index: int) -> str:
        """The ``ns=N;…`` form asyncua parses, once ``uri`` is resolved to ``index``."""
        return f"ns={index};{self.kind}={self.identifier}"


def parse_node(text: str) -> NodeRef:
    """A node id, or a ValueError that says what is wrong with it."""
    match = _NODE.match(text.strip())
    if not match:
        raise ValueError(
            f"{text!r} is not a node id: use ns=<index>;s=<name>, ns=<index>;i=<number>,"
            " ns=<index>;g=<guid>, ns=<index>;b=<base64>, or nsu=<namespace URI>;… instead of ns="
        )
    prefix, namespace, kind, identifier = match.groups()
    index = 0
    uri = None
    if prefix == "ns":
        if not namespace.isdigit() or int(namespace) > 65535:
            raise ValueError(f"{text!r}: ns= takes a namespace index 0..65535, not {namespace!r}")
        index = int(namespace)
    elif prefix == "nsu":
        if not namespace:
            raise ValueError(f"{text!r}: nsu= needs a namespace URI")
        uri = namespace
    if not identifier:
        raise ValueError(f"{text!r}: the {_KINDS[kind]} identifier is empty")
    if kind == "i" and not (identifier.isdigit() and int(identifier) < 2**32):
        raise ValueError(f"{text!r}: i= takes a number 0..4294967295, not {identifier!r}")
    if kind == "g":
        try:
            uuid.UUID(identifier)
        except ValueError:
            raise ValueError(f"{text!r}: g= takes a GUID, not {identifier!r}") from None
    if kind == "b":
        try:
            base64.b64decode(identifier, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{text!r}: b= takes base64, not {identifier!r}") from None
    return NodeRef(index, uri, kind, identifier)
