"""The integrator's tools: alarm tests, backtests (record, replay) and the demo; ``--live`` and
the demo need the workbench, which the agent itself never imports."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from pathlib import Path

from agent.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Command, Commands, load_from
from agent.common.values import json_safe
from agent.config import config_path, load_config
from agent.observe.logs import setup_logging

#: where the commands that need the stand-ins live; the agent itself never imports them
WORKBENCH = "workbench.demo"
LIVE_TESTS = "workbench.live"


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.tools.backtest.data import DataError, Reading, rows
    from agent.tools.backtest.replay import replay
    from agent.tools.backtest.report import as_json, table

    # flapping is in the report ("held back"), not worth a log line per alarm here
    logging.getLogger("agent.alarms").setLevel(logging.ERROR)
    configs = [(config_path(args.config), load_from(args.config))]
    if args.compare is not None:
        configs.append((args.compare, load_config(args.compare)))
    runs = []
    reading = Reading()
    try:
        for path, config in configs:
            reading = Reading()
            runs.append((path, replay(config, rows(args.data, config, reading, args.skip_bad))))
    except (DataError, OSError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(json.dumps(json_safe(as_json(args.data, reading, runs)), indent=2))
    else:
        print(table(args.data, reading, runs))
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    from agent.config import parse_duration
    from agent.tools.backtest.record import record

    config = load_from(args.config)
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        print(f"--duration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.verbose)
    try:
        written = asyncio.run(record(config, duration, args.out))
    except KeyboardInterrupt:
        print(f"record: stopped; what was recorded is in {args.out}", file=sys.stderr)
        return EXIT_OK
    except OSError as exc:  # cannot create or write the file (a full disk, say)
        print(
            f"record: {args.out}: {exc.strerror or exc}; what was written is kept", file=sys.stderr
        )
        return EXIT_FAILED
    print(f"record: {written:,} rows in {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from agent.tools.alarmtest import run_files

    if not args.live:
        return run_files(args.files, args.junit)
    setup_logging(args.verbose)
    if not args.verbose:  # the report is the output; the agent's own warnings with -v
        logging.getLogger().setLevel(logging.ERROR)
    try:
        live = importlib.import_module(LIVE_TESTS)
    except ImportError as exc:
        print(f"ixon-agent test --live needs the workbench package ({exc})", file=sys.stderr)
        return EXIT_CONFIG
    code: int = live.run_live(args.files, args.junit)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        demo = importlib.import_module(WORKBENCH)
    except ImportError as exc:
        print(f"ixon-agent demo needs the workbench package ({exc})", file=sys.stderr)
        return EXIT_FAILED
    code: int = demo.run_demo(
        args.duration, args.period, args.verbose, args.config, args.scenario, args.test
    )
    return code


def register(sub: Commands, command: Command) -> None:
    """This family's commands and their arguments."""
    p = sub.add_parser(
        "test",
        help="alarm tests: what a config sends for given values, and when",
        description="Run alarm test files (DESIGN.md 9.1) in simulated time, or --live through"
        " the Modbus simulator, the agent and the ilert stand-in. Exit 0 all passed, 1 a test"
        " failed, 2 a bad test file.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--live", action="store_true", help="real time, through the real chain")
    p.add_argument("-v", "--verbose", action="store_true", help="--live: the agent's log")
    p.add_argument("--junit", type=Path, metavar="PATH", help="also write JUnit XML here")
    p.set_defaults(func=cmd_test)
    p = command("replay", "backtest: recorded values through the config's alarms")
    p.add_argument("data", type=Path, metavar="DATA.csv")
    p.add_argument("--compare", type=Path, metavar="OTHER.toml", help="a second config beside")
    p.add_argument("--json", action="store_true", help="the same figures as JSON")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable rows")
    p.set_defaults(func=cmd_replay)
    p = command("record", "poll the sources into a CSV that replay reads")
    p.add_argument("--duration", required=True, metavar="D", help='e.g. "1h", "30m", 600')
    p.add_argument("--out", type=Path, required=True, metavar="DATA.csv")
    p.set_defaults(func=cmd_record)
    p = command("demo", "the whole chain on loopback (machine, agent, ilert), shown live")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--period", type=float, default=30.0, help="length of the machine scenario")
    p.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="an alarm test file whose series drive"
        " the simulated machine (with --config: the config's own register map)",
    )
    p.add_argument("--test", metavar="NAME", help="the test of --scenario (default: the first)")
    p.set_defaults(func=cmd_demo)
