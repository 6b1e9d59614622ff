"""OPC UA IO: one session per source, one Read call per chunk of nodes per cycle.

A value counts only when the server calls it Good and its type fits the variable's
declared ``type``; anything else is no value this cycle, counted by kind (``bad_status``,
``wrong_type``), and never stops the other nodes. A failed call, a timeout or a lost
session drops the client whole: the next try, after a capped, jittered backoff, makes a
new one, resolves every ``nsu=`` again (a namespace index can move when the server is
redeployed) and reads the server's MaxNodesPerRead again. A fresh client per connection
is what survives a server restarted on the same port; asyncua's own reconnect is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from agent.common.values import Value
from agent.sources.base import PollResult
from agent.sources.opcua.certificate import Identity, ensure_identity, load_der, thumbprint
from agent.sources.opcua.config import OpcUaSource, OpcUaVariable
from agent.sources.opcua.nodes import parse_node
from agent.sources.session import SessionPoller

log = logging.getLogger("agent.opcua")

#: a server that advertises no limit (0) still gets reads of at most this many nodes
NO_LIMIT_CHUNK = 5000

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}

_V = ua.VariantType
_INTS = frozenset(
    {_V.SByte, _V.Byte, _V.Int16, _V.UInt16, _V.Int32, _V.UInt32, _V.Int64, _V.UInt64}
)
#: the variant types each declared type takes (an integer fits a float: widening is exact
#: for the sizes PLCs use)
FITS: dict[str, frozenset[ua.VariantType]] = {
    "bool": frozenset({_V.Boolean}),
    "int": _INTS,
    "float": _INTS | {_V.Float, _V.Double},
    "str": frozenset({_V.String, _V.LocalizedText}),
}

#: what a server's refusal means for the person reading the log
_REFUSALS = {
    "BadSecurityChecksFailed": "it does not trust this agent's certificate",
    "BadCertificateUntrusted": "it does not trust this agent's certificate",
    "BadCertificateInvalid": "it finds this agent's certificate invalid",
    "BadIdentityTokenRejected": "it rejected the user name or password",
    "BadIdentityTokenInvalid": "it rejected the user name or password",
    "BadUserAccessDenied": "it rejected the user name or password",
    "BadSecurityPolicyRejected": "it does not offer this security policy",
    "BadTooManySessions": "it has no session left for another client",
}


class Refused(Exception):
    """A connection turned down, with who refused and why, in one line."""


def convert(variable: OpcUaVariable, variant: ua.Variant | None) -> Value | None:
    """The variable's value from a Good variant, or None when its type does not fit."""
    if variant is None or variant.is_array or variant.VariantType not in FITS[variable.type]:
        return None
    raw: Any = variant.Value
    if raw is None or isinstance(raw, list):
        return None
    if variant.VariantType is _V.LocalizedText:
        raw = raw.Text or ""
    if variable.type in ("int", "float"):
        if variable.factor != 1.0 or variable.offset != 0.0:
            return float(raw) * variable.factor + variable.offset
        return float(raw) if variable.type == "float" else int(raw)
    return raw  # type: ignore[no-any-return]


def describe(exc: BaseException) -> str:
    """An exception as a short reason: a status code's name, or the kind of failure."""
    if isinstance(exc, UaStatusCodeError):
        return ua.StatusCode(exc.code).name
    if isinstance(exc, TimeoutError):
        return "no answer (timeout)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OpcUaPoller(SessionPoller[OpcUaSource]):
    """Reads every variable of one OPC UA source per cycle."""

    log = log
    kinds = ("bad_status", "wrong_type", "unknown_namespace")

    def __init__(self, source: OpcUaSource) -> None:
        super().__init__(source)
        self.refs = [parse_node(v.node) for v in source.variables]
        self.keys = [f"{source.name}.{v.name}" for v in source.variables]  # (not per cycle)
        self.client: Client | None = None
        #: per variable, its node id on this connection; None: its namespace URI is missing
        self.node_ids: list[ua.NodeId | None] = []
        self.chunk = source.max_nodes_per_read or NO_LIMIT_CHUNK
        self.identity: Identity | None = None

    @property
    def requests(self) -> int:
        return max(1, math.ceil(len(self.refs) / self.chunk)) + (0 if self.client else 1)

    async def _poll(self, result: PollResult) -> None:
        if self.client is None:
            if self.waiting(result):
                return
            try:
                await asyncio.wait_for(self._connect(), self.source.timeout * 2)
            except Exception as exc:  # any failure to connect: one line, and back off
                reason = (
                    str(exc) if isinstance(exc, Refused) else f"cannot connect: {describe(exc)}"
                )
                self.stats.errors["not connected"] += 1
                result.errors.append(reason)
                self._broken(reason)
                return
            result.answered = True  # a session was made: the server answers
        start = 0
        while start < len(self.refs):
            end = min(start + self.chunk, len(self.refs))
            outcome = await self._read(start, end, result)
            if outcome == "gone":
                return
            if outcome == "next":
                start = end

    async def _read(self, start: int, end: int, result: PollResult) -> str:
        """One Read call for variables [start, end): "next", "again" (chunk halved) or "gone"."""
        assert self.client is not None
        ids = [n for n in self.node_ids[start:end] if n is not None]
        if not ids:
            self._judge(start, end, [], result)
            return "next"
        result.requests += 1
        self.stats.requests += 1
        try:
            values = await asyncio.wait_for(
                self.client.uaclient.read_attributes(ids, AttributeIds.Value),
                self.source.timeout,
            )
        except UaStatusCodeError as exc:
            name = ua.StatusCode(exc.code).name
            if name == "BadTooManyOperations" and len(ids) > 1:
                self.chunk = max(1, len(ids) // 2)
                self.stats.splits += 1
                log.info(
                    "source %s: the server refused %d nodes in one Read; reading %d at a time",
                    self.source.name,
                    len(ids),
                    self.chunk,
                    extra={"source": self.source.name},
                )
                return "again"
            self._failed("no reply", f"Read of {len(ids)} node(s): {name}", result)
            return "gone"
        except (TimeoutError, UaError, ConnectionError, OSError) as exc:
            self._failed("no reply", f"Read of {len(ids)} node(s): {describe(exc)}", result)
            return "gone"
        if len(values) != len(ids):
            why = f"the server answered {len(values)} values for {len(ids)} nodes"
            self._failed("protocol error", f"protocol error: {why}", result)
            return "gone"
        self.stats.replies += 1
        result.answered = True
        self._judge(start, end, values, result)
        return "next"

    def _judge(
        self, start: int, end: int, values: Sequence[ua.DataValue], result: PollResult
    ) -> None:
        """Variables [start, end): each value counts only if Good and of a type that fits."""
        answers = iter(values)
        failed: list[str] = []
        found = result.values
        for variable, node_id, key in zip(
            self.source.variables[start:end],
            self.node_ids[start:end],
            self.keys[start:end],
            strict=True,
        ):
            if node_id is None:
                self._no_value(
                    variable, "unknown_namespace", "its namespace URI is not on the server"
                )
                failed.append(variable.name)
                continue
            answer = next(answers)
            status = answer.StatusCode
            if status is not None and not status.is_good():
                self._no_value(variable, "bad_status", status.name)
                failed.append(variable.name)
                continue
            value = convert(variable, answer.Value)
            if value is None:
                got = answer.Value.VariantType.name if answer.Value is not None else "nothing"
                array = " array" if answer.Value is not None and answer.Value.is_array else ""
                self._no_value(variable, "wrong_type", f"{got}{array}, not {variable.type}")
                failed.append(variable.name)
                continue
            if self.bad:
                self.has_value(variable.name)
            found[key] = value
        if failed:
            shown = ", ".join(f"{v} ({self.bad.get(v, '?')})" for v in failed[:5])
            more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
            result.errors.append(f"no value for {shown}{more}")

    def _no_value(self, variable: OpcUaVariable, kind: str, why: str) -> None:
        self.stats.errors[kind] += 1
        self.no_value(variable.name, why, variable.node)

    async def _connect(self) -> None:
        source = self.source
        client = Client(source.endpoint, timeout=source.timeout, watchdog_intervall=3600.0)
        client.name = client.description = "ixon-agent"
        client.product_uri = "urn:ixon-agent"
        client.session_timeout = 600_000  # ms: what asyncua's server grants at most
        self.client = client  # (closed by _broken if anything below fails)
        if source.security != "None":
            identity = self.identity = ensure_identity(source.certificate, source.private_key)
            client.application_uri = identity.application_uri
            assert source.server_certificate is not None
            await self._check_pinned(client, load_der(source.server_certificate))
            await client.set_security(
                POLICIES[source.policy],
                str(identity.certificate),
                str(identity.private_key),
                server_certificate=str(source.server_certificate),
                mode=MODES[source.security],
            )
        if source.username:
            client.set_user(source.username)
            if source.password is not None:
                client.set_password(source.password.get_secret_value())
        try:
            await client.connect()
        except UaStatusCodeError as exc:
            name = ua.StatusCode(exc.code).name
            why = _REFUSALS.get(name, "it refused the connection")
            hint = ""
            if "certificate" in why and self.identity is not None:
                hint = (
                    f": add {self.identity.certificate} (SHA-1 {self.identity.thumbprint}) to"
                    " the server's trusted certificates"
                )
            raise Refused(f"the server refused: {why} ({name}){hint}") from None
        namespaces = await client.get_namespace_array()
        self.node_ids = []
        for ref in self.refs:
            if ref.uri is None:
                self.node_ids.append(ua.NodeId.from_string(ref.with_index(ref.namespace)))
            elif ref.uri in namespaces:
                index = namespaces.index(ref.uri)
                self.node_ids.append(ua.NodeId.from_string(ref.with_index(index)))
            else:
                self.node_ids.append(None)
        self.chunk = source.max_nodes_per_read or await self._server_limit(client)

    async def _server_limit(self, client: Client) -> int:
        """The server's MaxNodesPerRead (0, or none readable: no limit of its own)."""
        node = client.get_node(
            ua.NodeId(ua.Int32(ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead))
        )
        with contextlib.suppress(UaError, TypeError, ValueError):
            limit = int(await node.read_value())
            if limit > 0:
                return min(limit, NO_LIMIT_CHUNK)
        return NO_LIMIT_CHUNK

    async def _check_pinned(self, client: Client, pinned: bytes) -> None:
        """The server must show the pinned certificate before this agent signs anything
        for it: a different one is this agent's refusal, named."""
        endpoints = await client.connect_and_get_server_endpoints()
        offered = {bytes(e.ServerCertificate or b"") for e in endpoints}
        if pinned not in offered and offered:
            other = thumbprint(next(iter(offered)))
            raise Refused(
                f"this agent refused the server: its certificate (SHA-1 {other}) is not the"
                f" pinned server_certificate (SHA-1 {thumbprint(pinned)})"
            )

    def _failed(self, kind: str, reason: str, result: PollResult) -> None:
        self.stats.errors[kind] += 1
        result.errors.append(reason)
        self._broken(reason)

    def _broken(self, reason: str) -> None:
        """Drop the client whole; a new one after the backoff."""
        client, self.client = self.client, None
        self.backoff(reason, _close(client) if client is not None else None)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect_socket()


async def _close(client: Client) -> None:
    """Close the session politely if the server still answers, the socket in any case."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 1.0)
    with contextlib.suppress(Exception):
        client.disconnect_socket()
