"""``ixon-agent``: one module per family of commands, each adding its own to the parser.
Exit 0 ok, 1 failed, 2 a bad config or usage (no traceback for a user's error)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from agent import __version__
from agent.cli import configure, delivery, reading, service, shelving, tools
from agent.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from agent.config import ConfigError
from agent.outbox.store import StoreError

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ixon-agent",
        description="Poll Modbus, evaluate IXON-style alarms, send IXON / ilert webhooks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--config", metavar="PATH", help="default: $AGENT_CONFIG, else ./agent.toml")
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        p.add_argument("--log-format", choices=["text", "json"], default="text", help="log lines")
        return p

    for family in (configure, service, reading, delivery, shelving, tools):
        family.register(sub, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe can be handled
        return code
    except BrokenPipeError:
        # the reader stopped reading (``ixon-agent check | head``): not an error of ours;
        # stdout goes nowhere from now on, so the exit flush does not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        if exc.filename is None:
            raise
        # the net under every command: a path the OS refuses (a name too long, no
        # permission, a file where a folder should be) is named, not a traceback
        print(f"{exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_OK
