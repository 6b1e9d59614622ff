"""Setting a config up: a starter file, its check (with the read plan), and IXON's CSV exports
turned into sections."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.alarms.rules import AlarmRule
from agent.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Command, Commands
from agent.config import ConfigError, config_path, config_warnings, load_config
from agent.delivery.pacing import rate_of
from agent.outbox.store import state_dir_problem

if TYPE_CHECKING:
    from agent.tools.ixon_import import Imported


def cmd_init(args: argparse.Namespace) -> int:
    from agent.config import DEFAULT_CONFIG, STARTER

    path = Path(args.path or DEFAULT_CONFIG)
    try:
        if path.exists() and not args.force:
            print(f"{path} exists: not overwritten (--force overwrites it)", file=sys.stderr)
            return EXIT_CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        # it will hold webhook keys: readable by its owner only, from the first byte
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(STARTER.read_text())
    except OSError as exc:
        print(f"{path}: cannot write: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    config = "" if path == Path(DEFAULT_CONFIG) else f" --config {path}"
    print(
        f"wrote {path}, a commented starter config that runs against the bundled simulators.\n"
        f"Edit its source, variables, alarms and webhook for your machine, then:\n"
        f"  ixon-agent check{config}      # every mistake, with its place\n"
        f"  ixon-agent read{config}       # every variable, read once\n"
        f"  ixon-agent send-test{config}  # a test alarm through each webhook\n"
        f"  ixon-agent run{config}"
    )
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from agent.sources.drivers import driver

    path = config_path(args.config)
    config = load_config(path)
    problem = state_dir_problem(config.agent.state_dir)
    if problem is not None:
        raise ConfigError(path, [problem])
    print(f"{path}: OK")
    print(f"agent {config.agent.name!r} (id {config.agent.agent_id})")
    for source in config.sources:
        plan = driver(source.KIND).plan(source)
        requests = "?" if plan.requests is None else plan.requests
        print(
            f"source {source.name} ({source.protocol} {source.describe}): "
            f"{len(source.variables)} variable(s) in {requests} request(s) per cycle"
            f"{plan.note}, every {source.poll_interval:g}s"
        )
        for line in plan.lines:
            print(f"  {line}")
    rules = [(alarm, AlarmRule.compile_all(alarm, config)) for alarm in config.alarms]
    bits = sum(len(found) for _, found in rules)
    also = f" ({bits} with each fault bit its own)" if bits != len(rules) else ""
    print(f"{len(config.alarms)} alarm(s){also}")
    for alarm, found in rules:
        off = "" if alarm.enabled else "; out of service (enabled = false)"
        for rule in found:
            trigger = rule.condition_text
            if rule.kind != "formula":
                trigger = f"{rule.variable} {trigger}"
            print(f"  [{rule.severity}] {rule.name}: {trigger}{off}")
    print(
        f"{len(config.webhooks)} webhook(s): {', '.join(w.name for w in config.webhooks) or 'none'}"
    )
    for webhook in config.webhooks:  # the pace, never the key: it is a secret
        paced = rate_of(webhook)
        if paced is None:
            pace = "not paced" + (" (rate_limit none)" if webhook.rate_limit else "")
        else:
            how = "its rate_limit" if webhook.rate_limit else "ilert's limit for its key"
            pace = f"at most {paced[1]} to its receiver's key ({how})"
        print(f"  {webhook.name}: {webhook.format}, {pace}")
    for warning in config_warnings(config):
        print(f"warning: {warning}")
    return EXIT_OK


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _imported(
    command: str,
    args: argparse.Namespace,
    paths: list[Path],
    make: Callable[[], Imported],
    summary: Callable[[Imported], str],
) -> int:
    """What every import command does around its translation: the files checked, the
    TOML written (to ``--output`` or stdout), every row left out listed on stderr."""
    from agent.tools.ixon_import import ImportError_

    for path in paths:
        if not _is_file(path):
            print(f"{path}: file not found", file=sys.stderr)
            return EXIT_CONFIG
    try:
        result = make()
    except ImportError_ as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.output:
        args.output.write_text(result.toml)
    else:
        print(result.toml, end="")
    for problem in result.problems:
        print(f"not imported: {problem}", file=sys.stderr)
    print(summary(result), file=sys.stderr)
    return EXIT_FAILED if result.problems else EXIT_OK


def cmd_import_ixon(args: argparse.Namespace) -> int:
    from agent.tools.ixon_import import import_ixon

    return _imported(
        "import-ixon",
        args,
        [p for p in (args.variables, args.alarms) if p],
        lambda: import_ixon(
            args.variables,
            args.alarms,
            source=args.source,
            host=args.host,
            port=args.port,
            unit_id=args.unit_id,
            endpoint=args.endpoint,
        ),
        lambda r: (
            f"{r.variables} variable(s) and {r.alarms} alarm(s) imported,"
            f" {len(r.problems)} row(s) left out"
        ),
    )


def cmd_import_tia(args: argparse.Namespace) -> int:
    from agent.tools.tia_import import import_tia

    return _imported(
        "import-tia",
        args,
        list(args.files),
        lambda: import_tia(
            args.files, source=args.source, host=args.host, rack=args.rack, slot=args.slot
        ),
        lambda r: f"{r.variables} variable(s) imported, {len(r.problems)} left out",
    )


def cmd_hash_password(args: argparse.Namespace) -> int:
    """A bcrypt hash for ``[status.users]``: the password read twice, not echoed (from a
    terminal), or one line from standard input (from a script)."""
    import getpass

    from agent.observe.auth import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != first:
            print("hash-password: the two passwords differ; nothing written", file=sys.stderr)
            return EXIT_FAILED
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if len(first) < 8:
        print("hash-password: use at least 8 characters", file=sys.stderr)
        return EXIT_FAILED
    print(f'{args.user} = "{hash_password(first)}"')
    return EXIT_OK


def register(sub: Commands, command: Command) -> None:
    """This family's commands and their arguments."""
    p = sub.add_parser(
        "init", help="write a commented starter config", description="Write a commented starter"
        " config (agent.toml) that runs against the bundled simulators; edit it for your machine.",
    )  # fmt: skip
    p.add_argument("path", nargs="?", metavar="PATH", help="default: ./agent.toml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)
    command("check", "validate the config and print the read plan").set_defaults(func=cmd_check)
    p = sub.add_parser(
        "import-ixon",
        help="turn IXON variable/alarm CSV exports into agent.toml sections",
        description="Print [[sources]] and [[alarms]] sections for agent.toml; rows that cannot"
        " be translated are listed on stderr (exit 1 if there are any).",
    )
    p.add_argument("--variables", type=Path, required=True, metavar="CSV")
    p.add_argument("--alarms", type=Path, metavar="CSV")
    p.add_argument("--source", default="plc", help="name of the source (default plc)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=502)
    p.add_argument("--unit-id", type=int, default=1)
    p.add_argument(
        "--endpoint", default="opc.tcp://127.0.0.1:4840", help="OPC UA exports: the server's"
    )
    p.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_import_ixon)
    p = command("import-tia", "TIA Portal DB exports (XML) to an s7 source's variables")
    p.add_argument("files", type=Path, nargs="+", metavar="XML")
    p.add_argument("--source", default="plc", help="name of the source (default plc)")
    p.add_argument("--host", default="192.168.0.1")
    p.add_argument("--rack", type=int, default=0)
    p.add_argument("--slot", type=int, default=1)
    p.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_import_tia)
    p = command("hash-password", "a bcrypt hash for [status.users] (the password is asked)")
    p.add_argument("user", nargs="?", default="operator", help="the user name (default operator)")
    p.set_defaults(func=cmd_hash_password)
