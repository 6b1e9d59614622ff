"""Reading the machine once: every variable, or its raw registers (finding a device's layout)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from agent.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Command, Commands, load_from
from agent.common.values import json_safe, show
from agent.config import Config
from agent.observe.logs import setup_logging


def cmd_read(args: argparse.Namespace) -> int:
    from agent.sources.drivers import open_pollers

    config = load_from(args.config)
    setup_logging(args.verbose)  # pymodbus quiet; its lines (and hex dumps) only with -v
    if not args.verbose:  # one line per failed source below says what went wrong
        logging.getLogger("agent.modbus").setLevel(logging.ERROR)
    if args.raw or args.range:
        return _read_raw(config, args)

    async def read_all() -> tuple[dict[str, object], dict[str, str]]:
        values: dict[str, object] = {}
        failed: dict[str, str] = {}
        pollers = open_pollers(config.sources)
        try:
            for name, poller in pollers.items():
                result = await poller.poll()
                values.update(result.values)
                if result.errors:
                    failed[name] = "; ".join(result.errors)
        finally:
            for poller in pollers.values():
                poller.close()
        return values, failed

    values, failed = asyncio.run(read_all())
    keys = [key for key, _, _ in config.variables()]
    if args.json:
        read: dict[str, Any] = {key: values[key] for key in keys if key in values}
        if failed:  # "errors" is no variable's key: those all have a dot
            read["errors"] = failed
        print(json.dumps(json_safe(read), indent=2, allow_nan=False))
    else:
        width = max(len(key) for key in keys) if keys else 8
        print(f"{'variable':<{width}}  {'value':>14}  {'unit':<6}  label")
        for key, _, variable in config.variables():
            shown = show(values[key]) if key in values else "(not read)"
            unit = variable.unit or ""
            print(f"{key:<{width}}  {shown:>14}  {unit:<6}  {variable.display_name}")
    for name, why in failed.items():
        print(f"source {name}: {why}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _read_raw(config: Config, args: argparse.Namespace) -> int:
    """``read --raw``: registers in hex, each variable in every byte order (* configured)."""
    from agent.sources.modbus import raw
    from agent.sources.modbus.config import ModbusSource

    sources = [s for s in config.sources if args.source in (None, s.name)]
    if not sources:
        names = ", ".join(s.name for s in config.sources)
        print(f"read: --source: no source {args.source!r} (known: {names})", file=sys.stderr)
        return EXIT_CONFIG
    modbus = [s for s in sources if isinstance(s, ModbusSource)]
    failed = _read_raw_s7([s for s in sources if s.protocol == "s7"], args)
    for other in sources:
        if other.protocol == "opcua":
            print(f"read --raw: source {other.name} is opcua: use browse --source {other.name}",
                  file=sys.stderr)  # fmt: skip
    if not modbus:
        if failed:
            return EXIT_FAILED
        return EXIT_OK if any(s.protocol == "s7" for s in sources) else EXIT_CONFIG
    try:
        ranges = [v for text in args.range for v in raw.parse_range(text)]
    except ValueError as exc:
        print(f"read: --range {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for index, source in enumerate(modbus):
        extra = ranges if index == 0 else []  # ranges: the first (or --source) source's
        registers, result = asyncio.run(raw.read_raw(source, extra))
        print(f"source {source.name} ({source.describe}),"
              f" byte order {source.byte_order}:")  # fmt: skip
        if args.raw:  # (--range alone: only the range)
            for variable in source.variables:
                print("  " + raw.describe_variable(variable, registers, source.byte_order))
        for line in raw.describe_range(extra, registers):
            print("  " + line)
        if result.errors:
            failed += 1
            print(f"source {source.name}: {'; '.join(result.errors)}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_browse(args: argparse.Namespace) -> int:
    """``browse``: an OPC UA source's address space, to find the node ids of a machine."""
    config = load_from(args.config)
    setup_logging(args.verbose)
    found = [s for s in config.sources if s.name == args.source]
    if not found or found[0].protocol != "opcua":
        names = ", ".join(s.name for s in config.sources if s.protocol == "opcua") or "none"
        print(f"browse: --source: no opcua source {args.source!r} (opcua: {names})",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    from agent.sources.opcua.browse import browse, lines
    from agent.sources.opcua.config import OpcUaSource
    from agent.sources.opcua.nodes import parse_node
    from agent.sources.opcua.poller import OpcUaPoller

    source = found[0]
    assert isinstance(source, OpcUaSource)
    if args.node is not None:
        try:
            parse_node(args.node)
        except ValueError as exc:
            print(f"browse: --node {exc}", file=sys.stderr)
            return EXIT_CONFIG

    async def run() -> int:
        poller = OpcUaPoller(source.model_copy(update={"variables": []}))
        try:
            result = await poller.poll()  # connects: security, user, as ``run`` does
            if poller.client is None:
                print(f"source {source.name}: {'; '.join(result.errors)}", file=sys.stderr)
                return EXIT_FAILED
            namespaces = await poller.client.get_namespace_array()
            start = args.node
            if start is not None and start.startswith("nsu="):
                ref = parse_node(start)
                if ref.uri not in namespaces:
                    print(f"browse: --node: namespace {ref.uri!r} is not on the server",
                          file=sys.stderr)  # fmt: skip
                    return EXIT_FAILED
                start = ref.with_index(namespaces.index(ref.uri or ""))
            try:
                rows, cut = await browse(poller, start, args.depth)
            except Exception as exc:  # a node the server does not have, a lost session
                print(f"browse: {type(exc).__name__}: {exc}", file=sys.stderr)
                return EXIT_FAILED
            print(f"source {source.name} ({source.describe}), below {args.node or 'Objects'}:")
            for line in lines(rows, namespaces):
                print(f"  {line}")
            if cut:
                print(f"  … the first {len(rows)} nodes only: give --node to look deeper")
            return EXIT_OK
        finally:
            poller.close()

    return asyncio.run(run())


def _read_raw_s7(sources: list[Any], args: argparse.Namespace) -> int:
    """``read --raw`` of S7 sources: each planned range's bytes, each variable from them."""
    if not sources:
        return 0
    if args.range:
        print("read: --range reads Modbus registers; an S7 source's ranges come from its plan",
              file=sys.stderr)  # fmt: skip
    from agent.sources.s7 import raw as s7_raw

    failed = 0
    for source in sources:
        captured, result = asyncio.run(s7_raw.read_raw(source))
        print(f"source {source.name} ({source.describe}):")
        for line in s7_raw.lines(captured):
            print("  " + line)
        if result.errors:
            failed += 1
            print(f"source {source.name}: {'; '.join(result.errors)}", file=sys.stderr)
    return failed


def register(sub: Commands, command: Command) -> None:
    """This family's commands and their arguments."""
    p = command("read", "read every variable once")
    p.add_argument("--json", action="store_true", help='print {"source.variable": value}')
    p.add_argument(
        "--raw", action="store_true", help="registers in hex, each variable in every byte order"
    )
    p.add_argument(
        "--range", action="append", default=[], metavar="TABLE:ADDRESS[:COUNT]",
        help="read raw registers no variable names, e.g. holding:100:8 (repeatable)",
    )  # fmt: skip
    p.add_argument("--source", metavar="NAME", help="--raw/--range: only this source")
    p.set_defaults(func=cmd_read)
    p = command("browse", "an OPC UA source's address space: node ids, paths, types, values")
    p.add_argument("--source", metavar="NAME", required=True, help="the opcua source")
    p.add_argument("--node", metavar="ID", help="start here (default: the Objects folder)")
    p.add_argument("--depth", type=int, default=3, help="levels below it (default 3)")
    p.set_defaults(func=cmd_browse)
