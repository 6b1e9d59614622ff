"""The service: ``run`` until SIGTERM (reload on SIGHUP), and ``health`` asking it."""

from __future__ import annotations

import argparse
import asyncio
import signal
import stat
import sys
from pathlib import Path

from agent.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Command, Commands, load_from, log
from agent.config import Config, config_path, config_warnings, load_config
from agent.observe.logs import quiet_loop_errors, raise_file_limit, setup_logging
from agent.outbox.store import StoreError


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


def cmd_health(args: argparse.Namespace) -> int:
    """The running agent's /readyz (or /healthz with --live) on the configured status port:
    the container health check, without curl and without repeating the port."""
    import httpx

    config = load_from(args.config)
    status = config.status
    if not status.enabled:
        print("status listener disabled ([status] enabled = false): nothing to ask")
        return EXIT_OK
    host = "127.0.0.1" if status.host in ("0.0.0.0", "", "*") else status.host
    host = "::1" if host == "::" else host
    url = f"{status.scheme}://{'[' + host + ']' if ':' in host else host}:{status.port}"
    path = "/healthz" if args.live else "/readyz"
    try:
        # (its own listener on this machine, often with a self-signed certificate: the
        # health paths carry nothing and need no login, so there is nothing to verify)
        reply = httpx.get(url + path, timeout=args.timeout, verify=False)
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


def register(sub: Commands, command: Command) -> None:
    """This family's commands and their arguments."""
    command("run", "poll, evaluate and deliver until SIGTERM/SIGINT").set_defaults(func=cmd_run)
    p = command("health", "ask the running agent: ready (exit 0), or why not (exit 1)")
    p.add_argument("--live", action="store_true", help="/healthz: only that the process answers")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer")
    p.set_defaults(func=cmd_health)
