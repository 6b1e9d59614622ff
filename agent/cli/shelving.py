"""At the machine, through the state database, for the running agent: shelving (ISA-18.2,
an alarm set aside for a while) and acknowledging an alarm's occurrence."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

from agent.alarms.rules import AlarmRule
from agent.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Command, Commands
from agent.common.hints import did_you_mean
from agent.config import Config, ConfigError, config_path, load_config

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


#: seconds ``ack`` waits for the running agent to take its request (it looks every second)
ACK_WAIT = 5.0


def cmd_ack(args: argparse.Namespace) -> int:
    """Acknowledge the alarm's current occurrence, else its last unacknowledged one."""
    import time

    from agent.outbox.store import Store
    from agent.runtime.service import DB_NAME

    path = config_path(args.config)
    config = load_config(path)
    picked = _pick_alarm(config, path, args.name)
    comment = (args.comment or "").strip()[:500]
    store = Store(config.agent.state_dir / DB_NAME)
    try:
        by = _user() or "someone at the machine"  # (an acknowledgement names who)
        ids = {store.request_ack(a, name, by, comment) for a, name in picked.items()}
        deadline = time.monotonic() + args.wait
        while True:
            waiting = [r for r in store.ack_requests() if r.id in ids]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if waiting:
            print(
                f"{args.name}: asked; the agent has not taken it within {args.wait:g} s (is it"
                " running?): it will when it starts"
            )
            return EXIT_FAILED
        done = []
        for alarm_id, name in picked.items():
            last = [
                o for o in store.history(50) if o.alarm_id == alarm_id and o.acked_by is not None
            ]
            if last:
                done.append(f"{name} (occurrence {last[0].occurrence_id})")
    finally:
        store.close()
    if not done:
        print(f"{args.name}: nothing to acknowledge (no occurrence without one)")
        return EXIT_OK
    print(f"acknowledged: {'; '.join(done)}")
    return EXIT_OK


def _user() -> str:
    """Who shelves: shown beside the reason, on the page and in the agent's log."""
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME") or ""


def register(sub: Commands, command: Command) -> None:
    """This family's commands and their arguments."""
    p = command("shelve", "put an alarm aside for a while: it notifies no start until then")
    p.add_argument("name", nargs="?", metavar="NAME", help="the alarm; none: list shelved ones")
    p.add_argument("--for", dest="duration", metavar="D", help='how long, e.g. "2h", "30m", "1d"')
    p.add_argument("--reason", metavar="TEXT", help="shown on the status page and logged")
    p.set_defaults(func=cmd_shelve)
    p = command("unshelve", "end an alarm's shelf now")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_unshelve)
    p = command("ack", "acknowledge an alarm's current (or last unacknowledged) occurrence")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--comment", metavar="TEXT", help="kept with the acknowledgement")
    p.add_argument(
        "--wait", type=float, default=ACK_WAIT, metavar="S", help="for the running agent"
    )
    p.set_defaults(func=cmd_ack)
