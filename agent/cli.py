"""``ixon-agent``: run, check, read, demo, send-test. Exit 0 ok, 1 failed, 2 bad config/usage."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent import __version__
from agent.alarms.rules import AlarmRule
from agent.common.hints import did_you_mean
from agent.common.times import iso_from_timestamp
from agent.common.values import BIT_KINDS, json_safe, show
from agent.config import Config, ConfigError, config_path, config_warnings, load_config
from agent.observe.logs import quiet_loop_errors, raise_file_limit, setup_logging
from agent.outbox.store import StoreError, state_dir_problem

log = logging.getLogger("agent")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _load(path_arg: str | None) -> Config:
    return load_config(config_path(path_arg))


def cmd_check(args: argparse.Namespace) -> int:
    from agent.sources.modbus.plan import plan_reads

    path = config_path(args.config)
    config = load_config(path)
    problem = state_dir_problem(config.agent.state_dir)
    if problem is not None:
        raise ConfigError(path, [problem])
    print(f"{path}: OK")
    print(f"agent {config.agent.name!r} (id {config.agent.agent_id})")
    for source in config.sources:
        blocks = plan_reads(source.variables, source.max_gap)
        print(
            f"source {source.name} ({source.protocol} {source.address}, unit {source.unit_id}): "
            f"{len(source.variables)} variable(s) in {len(blocks)} request(s) per cycle, "
            f"every {source.poll_interval:g}s"
        )
        for block in blocks:
            names = ", ".join(v.name for v in block.variables)
            unit = "bit" if block.table in BIT_KINDS else "register"
            print(f"  {block.table:<14} {block.address:>5} +{block.count:<4} {unit}(s): {names}")
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
    for warning in config_warnings(config):
        print(f"warning: {warning}")
    return EXIT_OK


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


def cmd_read(args: argparse.Namespace) -> int:
    from agent.sources import open_pollers

    config = _load(args.config)
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

    sources = [s for s in config.sources if args.source in (None, s.name)]
    if not sources:
        names = ", ".join(s.name for s in config.sources)
        print(f"read: --source: no source {args.source!r} (known: {names})", file=sys.stderr)
        return EXIT_CONFIG
    try:
        ranges = [v for text in args.range for v in raw.parse_range(text)]
    except ValueError as exc:
        print(f"read: --range {exc}", file=sys.stderr)
        return EXIT_CONFIG
    failed = 0
    for index, source in enumerate(sources):
        extra = ranges if index == 0 else []  # ranges: the first (or --source) source's
        registers, result = asyncio.run(raw.read_raw(source, extra))
        print(f"source {source.name} ({source.address}, unit {source.unit_id}),"
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


def cmd_health(args: argparse.Namespace) -> int:
    """The running agent's /readyz (or /healthz with --live) on the configured status port:
    the container health check, without curl and without repeating the port."""
    import httpx

    config = _load(args.config)
    status = config.status
    if not status.enabled:
        print("status listener disabled ([status] enabled = false): nothing to ask")
        return EXIT_OK
    host = "127.0.0.1" if status.host in ("0.0.0.0", "", "*") else status.host
    host = "::1" if host == "::" else host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{status.port}"
    path = "/healthz" if args.live else "/readyz"
    try:
        reply = httpx.get(url + path, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"{url}{path}: no answer ({type(exc).__name__}): is the agent running?")
        return EXIT_FAILED
    if reply.status_code == 200:
        print(f"{url}{path}: ok")
        return EXIT_OK
    try:
        problems = reply.json().get("problems") or [f"HTTP {reply.status_code}"]
    except ValueError:
        problems = [f"HTTP {reply.status_code}"]
    print(f"{url}{path}: not ready: " + "; ".join(problems))
    return EXIT_FAILED


def warn_if_exposed(path: Path, config: Config) -> None:
    """Webhook URLs and keys are secrets: a config file every user can read gets a warning."""
    if config.secrets() and path.stat().st_mode & stat.S_IROTH:
        log.warning(
            "%s holds webhook keys and every user on this machine can read it: chmod 600 %s",
            path,
            path,
        )


def cmd_run(args: argparse.Namespace) -> int:
    from agent.runtime.reload import Runner
    from agent.runtime.systemd import Notifier

    path = config_path(args.config)
    config = load_config(path)
    redact = setup_logging(args.verbose, config.secrets(), args.log_format)
    warn_if_exposed(path, config)
    for warning in config_warnings(config):
        log.warning("config: %s", warning)

    raise_file_limit()

    async def main() -> tuple[StoreError | None, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        quiet_loop_errors(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = Runner(path, config, redact, Notifier())
        reloads: set[asyncio.Task[bool]] = set()

        def reload() -> None:
            log.info("SIGHUP: reloading %s", path)
            task = asyncio.create_task(runner.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
        await runner.run(stop)
        if runner.lost:
            log.error("agent stopped: %d message(s) were lost (see above)", runner.lost)
        else:
            log.info("agent stopped")
        return runner.error, runner.lost

    error, lost = asyncio.run(main())
    if error is not None:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_FAILED if lost else EXIT_OK  # never 0 with alarms gone: systemd shows it


#: where the commands that need the stand-ins live; the agent itself never imports them
WORKBENCH = "workbench.demo"
LIVE_TESTS = "workbench.live"


def cmd_replay(args: argparse.Namespace) -> int:
    from agent.tools.backtest.data import DataError, Reading, rows
    from agent.tools.backtest.replay import replay
    from agent.tools.backtest.report import as_json, table

    # flapping is in the report ("held back"), not worth a log line per alarm here
    logging.getLogger("agent.alarms").setLevel(logging.ERROR)
    configs = [(config_path(args.config), _load(args.config))]
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

    config = _load(args.config)
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


def cmd_send_test(args: argparse.Namespace) -> int:
    from agent.delivery.deliverer import Deliverer
    from agent.delivery.post import make_http_client
    from agent.formats import ended, sample_transition, test_messages
    from agent.outbox.store import Message, Store
    from agent.runtime.service import DB_NAME

    config = _load(args.config)
    setup_logging(args.verbose, config.secrets(), args.log_format)
    names = [args.webhook] if args.webhook else [w.name for w in config.webhooks]
    unknown = [n for n in names if n not in {w.name for w in config.webhooks}]
    if not names:
        print("no webhook configured: add a [[webhooks]] section", file=sys.stderr)
        return EXIT_CONFIG
    if unknown:
        hint = did_you_mean(unknown[0], (w.name for w in config.webhooks))
        print(f"no webhook {unknown[0]!r}{hint}", file=sys.stderr)
        return EXIT_CONFIG

    async def deliver(store: Store, messages: list[Message], until: float) -> list[str]:
        """Send ``messages`` through the outbox: "sent", "rejected" or "late" for each.
        Those not delivered by ``until`` are withdrawn, so a test never pages anyone later
        (when ``run`` starts, say)."""
        ids = store.record([], messages)
        async with make_http_client() as http:
            deliverer = Deliverer(
                store,
                config.webhooks,
                http,
                max_age=config.outbox.max_age,
                secrets=config.secrets(),
            )
            deliverer.start()
            loop = asyncio.get_running_loop()
            while any(store.is_pending(i) for i in ids):
                if loop.time() > until:
                    break
                await asyncio.sleep(0.05)
            await deliverer.stop(grace=1.0)
        late = [i for i in ids if store.is_pending(i)]
        store.withdraw(late)
        return ["late" if i in late else "rejected" if store.is_dead(i) else "sent" for i in ids]

    async def send() -> list[str]:
        store = Store(config.agent.state_dir / DB_NAME)
        try:
            start = sample_transition(config)
            webhooks = [w for w in config.webhooks if w.name in names]
            now = asyncio.get_running_loop().time()
            sent = await deliver(store, test_messages(config, webhooks, start), now + args.timeout)
            started = {w.name for w, how in zip(webhooks, sent, strict=True) if how == "sent"}
            report = {}
            for webhook, how in zip(webhooks, sent, strict=True):
                if how == "sent":
                    report[webhook.name] = "test alarm delivered"
                elif how == "rejected":
                    report[webhook.name] = "rejected; see `ixon-agent outbox`"
                else:
                    report[webhook.name] = (
                        f"not delivered within {args.timeout:g} s; withdrawn from the outbox"
                        " (nothing is sent later)"
                    )
            if started and not args.keep_open:
                end = ended(start)
                to_end = [w for w in webhooks if w.name in started]
                now = asyncio.get_running_loop().time()
                sent = await deliver(store, test_messages(config, to_end, end), now + args.timeout)
                for webhook, how in zip(to_end, sent, strict=True):
                    report[webhook.name] += (
                        ", and resolved"
                        if how == "sent"
                        else "; its end was not delivered: resolve the alert by hand"
                    )
            return [f"webhook {name}: {text}" for name, text in report.items()]
        finally:
            store.close()

    lines = asyncio.run(send())
    print("\n".join(lines))
    return (
        EXIT_OK
        if all("delivered" in ln and "not delivered" not in ln for ln in lines)
        else (EXIT_FAILED)
    )


def cmd_outbox(args: argparse.Namespace) -> int:
    from agent.outbox.store import Store
    from agent.runtime.service import DB_NAME

    config = _load(args.config)
    store = Store(config.agent.state_dir / DB_NAME)
    try:
        if args.retry_dead:
            print(f"re-queued {store.retry_dead()} dead letter(s)")
        print(_outbox_report(store))
    finally:
        store.close()
    return EXIT_OK


def _outbox_report(store: Any) -> str:
    """Pending and dead-lettered messages, by webhook name; no URL or key is ever shown."""
    now = store.now()  # the agent clock: ages and due times do not follow the wall clock
    pending, dead = store.pending(), store.dead()
    lines = [f"outbox {store.path}: {len(pending)} pending, {len(dead)} dead letter(s)"]
    if pending:
        lines.append("pending:")
    for e in pending:
        wait = max(0.0, e.next_attempt - now)
        lines.append(
            f"  #{e.id:<5} {e.webhook:<12} {e.label}; age {now - e.enqueued:.0f}s,"
            f" {e.attempts} attempt(s), next in {wait:.0f}s"
            + (f", last error: {e.last_error}" if e.last_error else "")
        )
    if dead:
        lines.append("dead letters (ixon-agent outbox --retry-dead re-queues them):")
    for e in dead:
        status = f" HTTP {e.status}" if e.status else ""
        when = iso_from_timestamp(e.died or 0, "seconds")
        lines.append(
            f"  #{e.id:<5} {e.webhook:<12} {e.label}; {e.reason}{status} after"
            f" {e.attempts} attempt(s), {when}"
            + (f", last error: {e.last_error}" if e.last_error else "")
        )
        if e.response:
            lines.append(f"         answer: {' '.join(e.response.split())[:200]}")
    return "\n".join(lines)


#: the longest a person may shelve an alarm: shelving is for a while, not for good (that is
#: ``enabled = false``, which shows in the config for everyone to see)
MAX_SHELF = 30 * 86_400.0


def _alarm_ids(config: Config) -> dict[str, tuple[str, bool]]:
    """Every alarm a person can name, with its id and whether it is evaluated: the
    configured ones and each source's offline alarm."""
    from agent.alarms.rules import offline_rule

    found = {
        rule.name: (rule.public_id, a.enabled)
        for a in config.alarms
        for rule in AlarmRule.compile_all(a, config)
    }
    for source in config.sources:
        if source.offline_after:
            rule = offline_rule(source, config.agent.agent_id)
            found[rule.name] = (rule.public_id, True)
    return found


def _pick_alarm(config: Config, path: Path, name: str) -> dict[str, str]:
    """The alarm called ``name`` as {id: name}; a fault word's name gives every bit's alarm.
    A ConfigError, with the likely name, if there is none."""
    known = _alarm_ids(config)
    word = next((a for a in config.alarms if a.name == name and a.form == "error_bits"), None)
    if word is not None:
        picked = {r.public_id: r.name for r in AlarmRule.compile_all(word, config)}
        enabled = word.enabled
    elif name in known:
        picked, enabled = {known[name][0]: name}, known[name][1]
    else:
        raise ConfigError(path, [f"no alarm {name!r}{did_you_mean(name, known)}"])
    if not enabled:
        raise ConfigError(path, [f"alarm {name!r} is out of service (enabled = false)"])
    return picked


def cmd_shelve(args: argparse.Namespace) -> int:
    from agent.common.times import span
    from agent.config import parse_duration
    from agent.outbox.store import Store
    from agent.runtime.service import DB_NAME

    path = config_path(args.config)
    config = load_config(path)
    store = Store(config.agent.state_dir / DB_NAME)
    try:
        if args.name is None:  # list what is shelved
            now = store.now()
            rows = [r for r in store.shelves() if r.until > now]
            for row in rows:
                reason = f": {row.reason}" if row.reason else ""
                print(f"{row.name}: shelved for {span(row.until - now)} more{reason}")
            if not rows:
                print("no alarm is shelved")
            return EXIT_OK
        picked = _pick_alarm(config, path, args.name)
        if args.duration is None:
            print("shelve: give --for, e.g. --for 2h", file=sys.stderr)
            return EXIT_CONFIG
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            print(f"shelve: --for: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if not 0 < seconds <= MAX_SHELF:
            print(
                f"shelve: --for must be more than 0 and at most {span(MAX_SHELF)}", file=sys.stderr
            )
            return EXIT_CONFIG
        for alarm_id, name in picked.items():
            store.shelve(alarm_id, name, seconds, args.reason or "", _user())
    finally:
        store.close()
    ends = datetime.now().astimezone() + timedelta(seconds=seconds)
    print(
        f"{args.name}: shelved for {span(seconds)}, until about {ends:%Y-%m-%d %H:%M %Z}"
        f" (agent running time); no start is notified until then{_bits(args.name, picked)}"
    )
    return EXIT_OK


def _bits(name: str, picked: dict[str, str]) -> str:
    """`` (its bits: Lubrication, Cooling fan)`` when a fault word was picked."""
    if list(picked.values()) == [name]:
        return ""
    return f" (its bits: {', '.join(n.removeprefix(f'{name}: ') for n in picked.values())})"


def cmd_unshelve(args: argparse.Namespace) -> int:
    from agent.outbox.store import Store
    from agent.runtime.service import DB_NAME

    path = config_path(args.config)
    config = load_config(path)
    picked = _pick_alarm(config, path, args.name)
    store = Store(config.agent.state_dir / DB_NAME)
    try:
        removed = store.unshelve(list(picked))
    finally:
        store.close()
    if not removed:
        print(f"{args.name}: was not shelved")
        return EXIT_OK
    print(
        f"{args.name}: unshelved; if it is active, the running agent notifies it now"
        + _bits(args.name, picked)
    )
    return EXIT_OK


def _user() -> str:
    """Who shelves: shown beside the reason, on the page and in the agent's log."""
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME") or ""


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def cmd_import_ixon(args: argparse.Namespace) -> int:
    from agent.tools.ixon_import import ImportError_, import_ixon

    for path in filter(None, [args.variables, args.alarms]):
        if not _is_file(path):
            print(f"{path}: file not found", file=sys.stderr)
            return EXIT_CONFIG
    try:
        result = import_ixon(
            args.variables,
            args.alarms,
            source=args.source,
            host=args.host,
            port=args.port,
            unit_id=args.unit_id,
        )
    except ImportError_ as exc:
        print(f"import-ixon: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.output:
        args.output.write_text(result.toml)
    else:
        print(result.toml, end="")
    for problem in result.problems:
        print(f"not imported: {problem}", file=sys.stderr)
    print(
        f"{result.variables} variable(s) and {result.alarms} alarm(s) imported,"
        f" {len(result.problems)} row(s) left out",
        file=sys.stderr,
    )
    return EXIT_FAILED if result.problems else EXIT_OK


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

    p = sub.add_parser(
        "init", help="write a commented starter config", description="Write a commented starter"
        " config (agent.toml) that runs against the bundled simulators; edit it for your machine.",
    )  # fmt: skip
    p.add_argument("path", nargs="?", metavar="PATH", help="default: ./agent.toml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)
    command("run", "poll, evaluate and deliver until SIGTERM/SIGINT").set_defaults(func=cmd_run)
    command("check", "validate the config and print the read plan").set_defaults(func=cmd_check)
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
    p = command("send-test", "send one test alarm through the normal delivery path")
    p.add_argument("--webhook", metavar="NAME", help="only this webhook (default: all)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for delivery")
    p.add_argument(
        "--keep-open", action="store_true", help="do not send the end: the alert stays open"
    )
    p.set_defaults(func=cmd_send_test)
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
    p.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_import_ixon)
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
    p = command("health", "ask the running agent: ready (exit 0), or why not (exit 1)")
    p.add_argument("--live", action="store_true", help="/healthz: only that the process answers")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer")
    p.set_defaults(func=cmd_health)
    p = command("shelve", "put an alarm aside for a while: it notifies no start until then")
    p.add_argument("name", nargs="?", metavar="NAME", help="the alarm; none: list shelved ones")
    p.add_argument("--for", dest="duration", metavar="D", help='how long, e.g. "2h", "30m", "1d"')
    p.add_argument("--reason", metavar="TEXT", help="shown on the status page and logged")
    p.set_defaults(func=cmd_shelve)
    p = command("unshelve", "end an alarm's shelf now")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_unshelve)
    p = command("outbox", "list pending and dead-lettered messages")
    p.add_argument("--retry-dead", action="store_true", help="re-queue every dead letter")
    p.set_defaults(func=cmd_outbox)
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
