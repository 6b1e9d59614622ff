"""The user's own machine on OPC UA: every ``opcua`` source of an ``agent.toml`` on asyncua's
server, each variable at its node id with its declared type.

Run ``python -m simulators.opcua_server --config agent.toml [--port 0] [--scenario FILE
--test NAME] [--set line1.oven_temp=85] [--bad line1.oven_temp] [--silent line1]``. Each
source is one server at its endpoint's port (``--port 0``: free ports, printed) on
127.0.0.1. ``ns=N`` nodes live in namespace N (placeholder namespaces fill the indexes
below it); ``nsu=URI`` nodes in the namespace registered for URI. Values come from an alarm
test's series (repeating), from constants, or are zero, false or empty.

Fault switches: ``bad`` (variables whose value is BadSensorFailure), ``silent`` (sources
whose every Read is held unanswered), ``restart`` (a source's server stopped and started
again on its port, optionally with its namespaces moved to other indexes), a server
certificate with security policies, and a list of trusted client certificates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from asyncua import ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.crypto.validator import CertificateValidatorMethod
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import BadCertificateUntrusted
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.common.values import Value
from agent.config import Config
from agent.sources.opcua.config import OpcUaSource, OpcUaVariable
from agent.sources.opcua.nodes import parse_node
from agent.tools.alarmtest.spec import default_value

VARIANT = {
    "bool": ua.VariantType.Boolean,
    "int": ua.VariantType.Int64,
    "float": ua.VariantType.Double,
    "str": ua.VariantType.String,
}
BAD = ua.StatusCode(ua.UInt32(StatusCodes.BadSensorFailure))
POLICIES = [
    ua.SecurityPolicyType.NoSecurity,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]


def raw_value(variable: OpcUaVariable, value: Value) -> Value:
    """What the node holds for the agent to read ``value`` (scaling undone)."""
    if variable.type in ("int", "float") and (variable.factor != 1.0 or variable.offset != 0.0):
        raw = (float(value) - variable.offset) / variable.factor
        return round(raw) if variable.type == "int" else raw
    return value


@dataclass
class Served:
    """One source's server and its nodes (by variable name)."""

    source: OpcUaSource
    server: Server
    port: int
    nodes: dict[str, ua.NodeId]
    reads: list[int] = field(default_factory=list)  # nodes per Read call, in order


@dataclass
class OpcUaMachine:
    config: Config
    free_ports: bool = False
    values: Callable[[float], dict[str, Value]] = lambda t: {}  # seconds since start -> values
    constants: dict[str, Value] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)  # "source.variable" answering BadSensorFailure
    silent: set[str] = field(default_factory=set)  # source names whose Reads never answer
    offline: Callable[[float], set[str]] = lambda t: set()  # seconds since start -> silent
    tick: float = 0.05
    #: a server certificate (DER) and key (PEM): with them, every security policy is offered
    certificate: Path | None = None
    private_key: Path | None = None
    #: client certificates (DER) the servers trust; None: any
    trusted: list[bytes] | None = None
    served: dict[str, Served] = field(default_factory=dict)
    current: dict[str, tuple[Value, bool]] = field(default_factory=dict)
    _down: dict[str, Served] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    started: float = 0.0
    _quiet: set[str] = field(default_factory=set)  # silent now, by ``offline``
    _closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sources(self) -> list[OpcUaSource]:
        return [s for s in self.config.sources if isinstance(s, OpcUaSource)]

    @property
    def ports(self) -> dict[str, tuple[str, int]]:
        return {name: ("127.0.0.1", s.port) for name, s in self.served.items()}

    def endpoint(self, name: str) -> str:
        path = urlsplit(self.served[name].source.endpoint).path
        return f"opc.tcp://127.0.0.1:{self.served[name].port}{path}"

    async def start(self) -> dict[str, tuple[str, int]]:
        """A server per source; returns where each is."""
        for source in self.sources:
            given = urlsplit(source.endpoint).port
            port = 0 if self.free_ports else (4840 if given is None else given)
            self.served[source.name] = await self._serve(source, port)
        self.started = time.monotonic()
        await self.update()
        self._task = asyncio.create_task(self._run(), name="opcua-machine")
        return self.ports

    async def _serve(self, source: OpcUaSource, port: int, shift: int = 0) -> Served:
        server = Server()
        await server.init()
        path = urlsplit(source.endpoint).path or "/"
        server.set_endpoint(f"opc.tcp://127.0.0.1:{port}{path}")
        server.set_server_name(f"ixon-agent simulator: {source.name}")
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
            server.set_security_policy(POLICIES)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.trusted is not None:
            server.set_certificate_validator(_trusting(self.trusted))
        refs = [parse_node(v.node) for v in source.variables]
        for n in range(shift):  # namespaces before the config's own: indexes move
            await server.register_namespace(f"urn:ixon-agent:simulator:shifted:{n}")
        top = max((r.namespace for r in refs if r.uri is None), default=0)
        while len(await server.get_namespace_array()) <= top:
            await server.register_namespace(
                f"urn:ixon-agent:simulator:ns{len(await server.get_namespace_array())}"
            )
        for uri in dict.fromkeys(r.uri for r in refs if r.uri is not None):
            await server.register_namespace(uri)
        namespaces = await server.get_namespace_array()
        nodes: dict[str, ua.NodeId] = {}
        objects = server.nodes.objects
        for variable, ref in zip(source.variables, refs, strict=True):
            index = namespaces.index(ref.uri) if ref.uri is not None else ref.namespace
            node_id = ua.NodeId.from_string(ref.with_index(index))
            variant = ua.Variant(default_value(variable), VARIANT[variable.type])
            await objects.add_variable(node_id, ua.QualifiedName(variable.name, index), variant)
            nodes[variable.name] = node_id
        served = Served(source, server, port, nodes)
        server.subscribe_server_callback(CallbackType.PreRead, self._on_read(served))
        await server.start()
        assert server.bserver is not None
        served.port = server.bserver.port
        return served

    def _on_read(self, served: Served) -> Callable[[ServerItemCallback, Any], Any]:
        async def on_read(event: ServerItemCallback, _dispatcher: Any) -> None:
            served.reads.append(len(event.request_params.NodesToRead))
            if served.source.name in self.silent | self._quiet and event.is_external:
                await self._closed.wait()  # a hung PLC: the request is never answered

        return on_read

    async def down(self, name: str) -> None:
        """Stop a source's server (a PLC switched off); ``up`` starts it again."""
        served = self.served.pop(name)
        self._down[name] = served
        await served.server.stop()

    async def up(self, name: str, shift: int = 0) -> None:
        """Start a stopped source's server again on its port (``shift``: with that many
        namespaces registered before the config's, so their indexes move)."""
        old = self._down.pop(name)
        self.served[name] = await self._serve(old.source, old.port, shift)
        for key in [k for k in self.current if k.startswith(f"{name}.")]:
            del self.current[key]  # a new server holds defaults: write everything again
        await self.update()

    async def restart(self, name: str, shift: int = 0) -> None:
        await self.down(name)
        await self.up(name, shift)

    async def stop(self) -> None:
        self._closed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for served in self.served.values():
            with contextlib.suppress(Exception):
                await served.server.stop()
        self.served = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def update(self) -> None:
        """Write the values of now into the nodes (only what changed)."""
        elapsed = self.elapsed()
        self._quiet = self.offline(elapsed)
        now = self.values(elapsed) | self.constants
        for name, served in list(self.served.items()):
            for variable in served.source.variables:
                key = f"{name}.{variable.name}"
                state = (now.get(key, default_value(variable)), key in self.bad)
                if self.current.get(key) == state:
                    continue
                value, bad = state
                if bad:
                    data = ua.DataValue(ua.Variant(None), StatusCode=BAD)
                else:
                    variant = ua.Variant(raw_value(variable, value), VARIANT[variable.type])
                    data = ua.DataValue(variant)
                await served.server.write_attribute_value(served.nodes[variable.name], data)
                self.current[key] = state

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            await self.update()


def _trusting(trusted: list[bytes]) -> CertificateValidatorMethod:
    async def validate(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        if cert.public_bytes(Encoding.DER) not in trusted:
            raise BadCertificateUntrusted()  # type: ignore[no-untyped-call]

    return validate


async def _serve_config(args: argparse.Namespace) -> None:
    from simulators.machines import from_args

    config, constants, values = from_args(args)
    machine = OpcUaMachine(config, free_ports=args.port == 0)
    machine.constants = constants
    machine.bad = set(args.bad or [])
    machine.silent = set(args.silent or [])
    if values is not None:
        machine.values = values
    await machine.start()
    if not machine.served:
        raise SystemExit(f"{args.config}: no opcua source to serve")
    print(f"OPC UA simulator of {args.config}:", flush=True)
    for name in machine.served:
        print(f"  {name}: {machine.endpoint(name)}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await machine.stop()


def main(argv: list[str] | None = None) -> None:
    options = argparse.ArgumentParser(prog="python -m simulators.opcua_server")
    options.add_argument(
        "--config", type=Path, required=True, help="serve this agent.toml's opcua sources"
    )
    options.add_argument("--port", type=int, default=None, help="0: free ports (printed)")
    options.add_argument(
        "--scenario", metavar="FILE", help="an alarm test file: its series drive the values"
    )
    options.add_argument("--test", metavar="NAME", help="the test in --scenario whose series run")
    options.add_argument(
        "--set", action="append", metavar="SOURCE.VAR=VALUE", help="a constant value"
    )
    options.add_argument(
        "--bad", action="append", metavar="SOURCE.VAR", help="answers BadSensorFailure"
    )
    options.add_argument("--silent", action="append", metavar="SOURCE", help="Reads never answered")
    args = options.parse_args(argv)
    if args.scenario is not None and args.test is None:
        options.error("--scenario needs --test NAME")
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_config(args))


if __name__ == "__main__":
    main()
