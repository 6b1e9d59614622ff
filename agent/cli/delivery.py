"""The outbox from the command line: a test alarm through it, and what waits or died in it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from agent.cli.common import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Command, Commands, load_from
from agent.common.hints import did_you_mean
from agent.common.times import iso_from_timestamp
from agent.observe.logs import setup_logging


def cmd_send_test(args: argparse.Namespace) -> int:
    from agent.delivery.deliverer import Deliverer
    from agent.delivery.post import make_http_client
    from agent.formats import ended, sample_transition, test_messages
    from agent.outbox.store import Message, Store
    from agent.runtime.service import DB_NAME

    config = load_from(args.config)
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

    config = load_from(args.config)
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


def register(sub: Commands, command: Command) -> None:
    """This family's commands and their arguments."""
    p = command("send-test", "send one test alarm through the normal delivery path")
    p.add_argument("--webhook", metavar="NAME", help="only this webhook (default: all)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for delivery")
    p.add_argument(
        "--keep-open", action="store_true", help="do not send the end: the alert stays open"
    )
    p.set_defaults(func=cmd_send_test)
    p = command("outbox", "list pending and dead-lettered messages")
    p.add_argument("--retry-dead", action="store_true", help="re-queue every dead letter")
    p.set_defaults(func=cmd_outbox)
