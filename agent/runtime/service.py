"""The running agent: the scheduler drives poll -> decode -> evaluate -> outbox per source.

APScheduler owns timing: one interval job per source, never overlapping itself
(``max_instances=1``) and coalescing missed runs, so a slow device delays only its own job.
``Agent`` wires the stages for one config; ``Runner`` swaps agents when the config is
reloaded (SIGHUP), carrying the state of alarms that did not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import httpx
from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_MAX_INSTANCES,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from agent.alarms.engine import AlarmEngine
from agent.alarms.rules import AlarmRule
from agent.alarms.states import Shelf, Transition, describe_values
from agent.common.retry import Throttle
from agent.common.times import iso, span
from agent.common.values import Value, json_safe
from agent.config import Config
from agent.core import Step, step
from agent.delivery.deliverer import Deliverer, Result
from agent.delivery.direct import send_directly
from agent.delivery.pacing import Pacer
from agent.delivery.post import make_http_client
from agent.formats import Acknowledged, ack_messages, messages_for
from agent.observe.auth import Login
from agent.observe.snapshot import (
    TREND_STEP,
    AlarmView,
    OutboxView,
    Snapshot,
    SourceView,
    VariableView,
    copy_stats,
)
from agent.observe.status import Metrics, StatusServer
from agent.outbox import journal
from agent.outbox.store import Held, Message, Store, StoreDamaged, StoreError
from agent.runtime.heartbeat import Heartbeat
from agent.runtime.scheduling import (
    Clock,
    JitteredInterval,
    SteadyInterval,
    WallJumps,
    pull_in_far_jobs,
    signed,
)
from agent.sources.base import PollResult
from agent.sources.drivers import open_pollers

log = logging.getLogger("agent")
T = TypeVar("T")

DB_NAME = "agent.db"
#: seconds between two looks at the shelf table (``ixon-agent shelve`` applies within this)
SHELF_CHECK = 1.0
#: the status page's sparklines: points kept per variable, one each TREND_STEP: ten minutes
TREND_POINTS = 120
#: at shutdown, seconds a running poll cycle may still take before it is cancelled
CYCLE_GRACE = 0.5
#: at shutdown with the state not durable, seconds to send what waits in memory (within
#: systemd's TimeoutStopSec, 20 s in deploy/ixon-agent.service, with the other graces)
LAST_WORDS = 10.0


def _ignore(exc: StoreError) -> None:
    pass


class Observer(Protocol):
    """What a live display (the demo) or a test wants to see happen."""

    def polled(self, result: PollResult) -> None: ...
    def transition(self, transition: Transition) -> None: ...
    def delivered(self, result: Result) -> None: ...
    def acknowledged(self, alarm: str, by: str, messages: list[Message]) -> None: ...
    def from_ilert(
        self, event: str, alarm: str, occurrence: str, who: str, acknowledged: bool
    ) -> None: ...


@dataclass
class _Nothing:
    def polled(self, result: PollResult) -> None:
        pass

    def transition(self, transition: Transition) -> None:
        pass

    def delivered(self, result: Result) -> None:
        pass

    def acknowledged(self, alarm: str, by: str, messages: list[Message]) -> None:
        pass

    def from_ilert(
        self, event: str, alarm: str, occurrence: str, who: str, acknowledged: bool
    ) -> None:
        pass


def _removed_rule(alarm_id: str, saved: dict[str, Any]) -> AlarmRule:
    """Stands in for an alarm that was active when it was removed from the config."""
    return AlarmRule.synthetic(
        saved.get("name") or alarm_id,
        alarm_id,
        saved.get("severity") or "high",
        "This alarm was removed from the agent's configuration while active.",
        "removed from the configuration",
    )


class Agent:
    """Everything that runs: pollers, alarm engine, outbox, deliverer, on one event loop."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
        observer: Observer | None = None,
        carry: tuple[AlarmEngine, set[str]] | None = None,
        on_fatal: Callable[[StoreError], None] | None = None,
        on_healthy: Callable[[], None] | None = None,
        pacer: Pacer | None = None,
        held: Held | None = None,
    ) -> None:
        """``carry``: a previous engine and the ids of its alarms to take over as they are.
        ``pacer``: the process's budgets per receiver key, which outlive a reload.
        ``held``: what the previous agent held in memory, not yet written (a full disk).
        ``on_fatal``: told when the agent cannot go on (a damaged state database).
        ``on_healthy``: told, about once a second, while every source's cycles start on time
        (the systemd watchdog)."""
        self.on_fatal = on_fatal or _ignore
        self.on_healthy = on_healthy or (lambda: None)
        self.config = config
        self.clock = clock or Clock()
        self.observer: Observer = observer or _Nothing()
        self._own_http = http is None
        self.http = http or make_http_client()
        bound = config.outbox.max_pending
        self.store = Store(config.agent.state_dir / DB_NAME, max_held=bound, max_dead=bound)
        if held is not None:
            self.store.adopt(held)
        self.held: Held | None = None  # after stop(hand_over=True)
        self.lost: list[Message] = []  # after stop: neither sent nor saved
        self.engine = AlarmEngine.from_config(config)
        saved = self.store.alarm_states()
        self._removed = {a: saved[a] for a in self.engine.restore(saved)}
        if carry is not None:
            self.engine = self.engine.adopt(*carry)
        #: variables alarms read bits of (error_bits, bit_pattern): shown in hex, these digits
        self._words = {s.rule.variable: s.rule.digits for s in self.engine.states if s.rule.digits}
        self.pollers = open_pollers(config.sources)
        config.forget_index()  # the alarms are compiled: the lookups are done
        self.pacer = pacer or Pacer()
        self.deliverer = Deliverer(
            self.store,
            config.webhooks,
            self.http,
            max_age=config.outbox.max_age,
            secrets=config.secrets(),
            on_result=self._delivered,
            on_fatal=self.on_fatal,
            pacer=self.pacer,
        )
        self.metrics = Metrics(self.snapshot)
        self.status = (
            StatusServer(
                self.snapshot,
                self.metrics,
                Login(config.status.users),
                self.acknowledge,
                self.from_ilert,
            )
            if config.status.enabled
            else None
        )
        self.answered: dict[str, bool] = {}  # per source: did its last cycle get an answer
        self.started = time.monotonic()
        self.scheduler: AsyncIOScheduler | None = None
        self.values: dict[str, Value] = {}
        self.heartbeat = (
            Heartbeat(config.heartbeat, self.http, self.pacer)
            if config.heartbeat is not None
            else None
        )
        self._cycles: set[asyncio.Task[None]] = set()  # poll cycles in flight
        self._last_start: dict[str, float] = {}  # monotonic start of each source's last cycle
        self._nudged: dict[str, float] = {}  # when the watch last started an overdue cycle
        self._watchdog: asyncio.Task[None] | None = None
        self._skip_log: dict[str, Throttle] = {}
        # sparklines: the recent values of what the alarms read, per source
        # (an array of doubles: 1 KB a variable; a deque of float objects was 4 KB)
        self.trends: dict[str, array[float]] = {}
        self._trend_keys: dict[str, list[str]] = {}
        for rule in [s.rule for s in self.engine.states]:
            if rule.kind != "offline":
                for item in rule.inputs:
                    keys = self._trend_keys.setdefault(item.source, [])
                    if item.key not in keys:
                        keys.append(item.key)
        self._trend_at: dict[str, float] = {}
        self._shelves: dict[str, float] = {}  # shelved alarm ids: their end, agent clock
        self._acked: set[int] = set()  # acknowledgement requests taken (by their id)
        self._manual_ack = frozenset(
            rule.name
            for alarm in config.alarms
            if not alarm.auto_acknowledge
            for rule in AlarmRule.compile_all(alarm, config)
        )

    async def start(self) -> None:
        """Start delivery and the polling schedule; must run inside the event loop."""
        self.started = time.monotonic()
        if self.status is not None:
            status = self.config.status
            await self.status.start(status.host, status.port, (status.tls_cert, status.tls_key))
        self.deliverer.start()
        self._end_removed_alarms()
        self.apply_shelves()
        self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        for source in self.config.sources:
            self.scheduler.add_job(
                self.poll_source,
                SteadyInterval(seconds=source.poll_interval, timezone=UTC),
                args=[source.name],
                id=f"poll:{source.name}",
                name=f"poll {source.name}",
                max_instances=1,
                coalesce=True,
                # a run the scheduler itself was late for (a busy loop, a clock jump) runs
                # late, once (coalesced); only a run the previous cycle blocked is skipped
                misfire_grace_time=None,
                next_run_time=datetime.now(UTC),
            )
        if self.heartbeat is not None and self.config.heartbeat is not None:
            self.scheduler.add_job(
                self.heartbeat.ping,
                JitteredInterval(seconds=self.config.heartbeat.interval, timezone=UTC),
                id="heartbeat",
                name="heartbeat",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=datetime.now(UTC),
            )
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        self.scheduler.start()
        self._watchdog = asyncio.create_task(self._watch(), name="watchdog")
        log.info(
            "agent %r running: %d source(s), %d alarm(s), %d webhook(s); outbox: %d pending",
            self.config.agent.name,
            len(self.pollers),
            len(self.engine.states),
            len(self.config.webhooks),
            self.store.pending_count(),
        )

    def _skipped(self, event: JobEvent) -> None:
        """A cycle did not start on time because the last one still ran: count it, and say
        so now and then (APScheduler's own warning would come every interval)."""
        poller = self.pollers.get(event.job_id.removeprefix("poll:"))
        if poller is None:
            return
        poller.stats.skipped += 1
        if self._skip_log.setdefault(poller.source.name, Throttle()).hit():
            log.warning(
                "source %s: a poll cycle took longer than poll_interval (slow or silent device,"
                " or a busy shared bus); %d cycle(s) skipped so far",
                poller.source.name,
                poller.stats.skipped,
                extra={"source": poller.source.name},
            )

    async def stop(self, grace: float = 3.0, hand_over: bool = False) -> None:
        """Stop polling; in-flight sends get ``grace`` seconds; the outbox keeps the rest.
        While the state is not durable, what waits in memory is sent straight to its
        webhooks (``LAST_WORDS`` seconds at most), or with ``hand_over`` (a reload) kept in
        ``held`` for the next agent; whatever is neither sent nor saved is named in an
        ERROR line and kept in ``lost``."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self.scheduler is not None:
            self.scheduler.pause()  # no new cycles; running ones get a moment, then are cut
            if self._cycles:
                _, late = await asyncio.wait(self._cycles, timeout=CYCLE_GRACE)
                for cycle in late:
                    cycle.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await self.deliverer.stop(grace)
        if hand_over:
            self.held = self.store.handover()
        else:
            await self._last_words()
        if self.status is not None:
            await self.status.stop()
        for poller in self.pollers.values():
            poller.close()
        self.store.close()  # a last try to write what waits in memory
        self.lost = self.store.held_messages()
        if self.lost:
            log.error(
                "stopping: %d message(s) could be neither sent nor saved (the state is not"
                " durable: %s) and are lost: %s",
                len(self.lost),
                self.store.problem or "cannot write",
                "; ".join(f"{m.label} for webhook {m.webhook}" for m in self.lost),
            )
        if self._own_http:
            await self.http.aclose()

    async def _last_words(self) -> None:
        """Stopping while the disk is full: what waits in memory goes straight out."""
        store = self.store
        if store.durable or not store.held or store.flush(force=True):
            return
        messages = store.held_messages()
        log.warning(
            "stopping while the state is not durable (%s): sending the %d message(s) that"
            " wait in memory straight to their webhooks, within %g s",
            store.problem,
            len(messages),
            LAST_WORDS,
        )
        deliverer = self.deliverer
        sent = await send_directly(
            messages, deliverer.webhooks, deliverer.poster, self.pacer, LAST_WORDS,
            deliverer.redact,
        )  # fmt: skip
        store.release(sent)

    async def _watch(self) -> None:
        """APScheduler times jobs by the wall clock: set back (NTP, a Pi without a battery
        clock), it would not run a job again until the clock caught up. When the wall clock
        jumps back, every job whose next run went far away is due now (a jump forward is
        ``SteadyInterval``'s); and a poll cycle overdue by the monotonic clock for any other
        reason is started now too."""
        period = min(1.0, *(s.poll_interval for s in self.config.sources))
        jumps = WallJumps()
        shelves_read = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if now - shelves_read >= SHELF_CHECK:
                shelves_read = now
                self.apply_shelves()
                self.apply_acks()
            jump = jumps.check()
            if jump and self.scheduler is not None:
                log.warning(
                    "the wall clock jumped %s; timing goes on by the monotonic clock",
                    signed(jump),
                )
                pull_in_far_jobs(self.scheduler)
                continue
            healthy = self.scheduler is not None and self.scheduler.running
            for name, poller in self.pollers.items():
                source = poller.source
                allowed = 3 * source.poll_interval + source.timeout * (poller.requests + 1) + 1
                last = self._last_start.get(name, self.started)
                if now - last <= allowed or self.scheduler is None:
                    continue
                healthy = False  # until a cycle really starts again
                if now - self._nudged.get(name, -allowed) > allowed:  # once per allowance
                    self._nudged[name] = now
                    log.warning(
                        "source %s: no poll cycle for %.0f s (was the clock set back?);"
                        " polling again now",
                        name,
                        now - last,
                        extra={"source": name},
                    )
                    self.scheduler.modify_job(f"poll:{name}", next_run_time=datetime.now(UTC))
            if healthy:
                self.on_healthy()

    async def poll_source(self, name: str) -> None:
        """The scheduler's job: one cycle, in a task of its own that stop() may cancel."""
        self._last_start[name] = time.monotonic()
        cycle = asyncio.create_task(self._cycle(name), name=f"cycle:{name}")
        self._cycles.add(cycle)
        try:
            await cycle
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise  # the job itself is being cancelled, not just this cycle
            log.debug("source %s: cycle cancelled at shutdown", name)
        finally:
            self._cycles.discard(cycle)

    async def _cycle(self, name: str) -> None:
        """Poll, decode, evaluate, queue. Never raises: a failing job would stop being scheduled.

        The only await is the poll itself, so a cancelled cycle never leaves an alarm
        transition without its messages.
        """
        try:
            poller = self.pollers[name]
            began = time.monotonic()
            result = await poller.poll()
            self.metrics.poll_seconds.labels(name).observe(time.monotonic() - began)
            self.answered[name] = result.answered
            if result.errors:
                log.debug("source %s: %s", name, "; ".join(result.errors))
            self.values.update(result.values)
            self.observer.polled(result)
            now, wall = self.clock.monotonic(), self.clock.now()
            self._sample(name, result.values, now)
            self.handle(step(self.engine, self.config, result, poller.stats.last_answer, now, wall))
        except StoreDamaged as exc:
            log.critical("%s", exc)
            self.on_fatal(exc)
        except Exception:
            log.exception("source %s: poll cycle failed", name, extra={"source": name})

    def _sample(self, source: str, values: Mapping[str, Value], now: float) -> None:
        """Keep a point of each alarm variable of ``source`` for the sparklines, now and then."""
        keys = self._trend_keys.get(source)
        if not keys or now - self._trend_at.get(source, -TREND_STEP) < TREND_STEP:
            return
        self._trend_at[source] = now
        for key in keys:
            value = values.get(key)
            if isinstance(value, bool | int | float):
                points = self.trends.get(key)
                if points is None:
                    points = self.trends[key] = array("d")
                elif len(points) >= TREND_POINTS:
                    del points[0]
                points.append(float(value))

    def acknowledge(self, alarm_id: str, by: str, comment: str) -> str | None:
        """The page's Acknowledge: as ``ixon-agent ack``, taken at once. None: no such
        alarm."""
        state = next((s for s in self.engine.all_states() if s.rule.public_id == alarm_id), None)
        if state is None:
            return None
        self.store.request_ack(alarm_id, state.rule.name, by, comment)
        self.apply_acks()
        return state.rule.name

    def from_ilert(self, payload: dict[str, Any]) -> int:
        """ilert's side of an occurrence, from an alert action: accepted (which acknowledges
        it here too), assigned, resolved. 200, or 400 for a body that is not ilert's and
        404 for an alertKey that is no occurrence here (a template that is not the
        occurrence id, or an alert of another agent)."""
        key, event = payload.get("alertKey"), payload.get("eventType")
        if not isinstance(key, str) or not isinstance(event, str) or len(key) > 200:
            return 400
        occurrence = self.store.occurrence(key)
        if occurrence is None:
            return 404
        who = _ilert_person(payload)
        at = iso(self.clock.now())
        side = dict(occurrence.ilert or {})
        status = payload.get("status")
        events: list[dict[str, Any]] = []
        if event == "alert-acknowledged":
            side.update(status="accepted", by=who or "someone", at=at)
            if occurrence.acked_by is None:  # an accept in ilert acknowledges it here
                events.append(journal.ack_event(None, key, f"{who or 'someone'} in ilert", "", at))
        elif event == "alert-assigned" and who:
            side["assigned"] = who
        elif event == "alert-resolved" or status == "RESOLVED":
            side.update(status="resolved", at=at)
        else:
            return 200  # an event that changes nothing shown here (a comment, a channel)
        events.insert(0, {"kind": "ilert", "occurrence_id": key, "ilert": side})
        self.store.record([], [], history=events)
        acked = any(e["kind"] == "ack" for e in events)
        self.observer.from_ilert(event, occurrence.name, key, who, acked)
        log.info(
            "ilert: %s of %r (occurrence %s)%s",
            event,
            occurrence.name,
            key,
            f" by {who}" if who else "",
            extra={"alarm": occurrence.name, "occurrence": key},
        )
        return 200

    def _read_commands(self, read: Callable[[], list[T]]) -> list[T] | None:
        """What the command line left in the state database (shelves, acknowledgements);
        None when it cannot be read now (the next tick tries again) or the file is
        damaged (then the agent stops, as for any write)."""
        try:
            return read()
        except StoreDamaged as exc:
            log.critical("%s", exc)
            self.on_fatal(exc)
        except sqlite3.Error:
            pass
        return None

    def apply_acks(self) -> None:
        """Take acknowledgements asked for with ``ixon-agent ack``: each is recorded on its
        occurrence, with the messages it causes (an ACCEPT to ilert-events webhooks, queued
        after the occurrence's ALERT), in one transaction that also removes the request."""
        found = self._read_commands(self.store.ack_requests)
        for request in [r for r in found or [] if r.id not in self._acked]:
            self._acked.add(request.id)  # (while not durable the request stays in the file)
            occurrence = self.store.to_acknowledge(request.alarm_id)
            if occurrence is None:
                log.warning(
                    "acknowledgement of %r by %s: it has no occurrence to acknowledge",
                    request.name,
                    request.by,
                    extra={"alarm": request.name},
                )
                with contextlib.suppress(sqlite3.Error):
                    self.store.drop_ack_request(request.id)
                continue
            wall = self.clock.now()
            ack = Acknowledged(
                occurrence.occurrence_id, occurrence.name, occurrence.severity,
                request.by, wall, request.comment,
            )  # fmt: skip
            messages = ack_messages(self.config, ack, occurrence.webhooks)
            event = journal.ack_event(
                request.id, occurrence.occurrence_id, request.by, request.comment, iso(wall)
            )
            self.store.record([], messages, history=[event])
            self.observer.acknowledged(occurrence.name, request.by, messages)
            comment = f": {request.comment}" if request.comment else ""
            log.info(
                "alarm %r (occurrence %s) acknowledged by %s%s%s",
                occurrence.name,
                occurrence.occurrence_id,
                request.by,
                comment,
                f"; told {', '.join(m.webhook for m in messages)}" if messages else "",
                extra={"alarm": occurrence.name, "occurrence": occurrence.occurrence_id},
            )
            if messages:
                self.deliverer.wake()

    def apply_shelves(self) -> None:
        """Take shelves set or lifted by ``ixon-agent shelve``/``unshelve`` (or ended) into
        the alarms, and say so in the log. A shelf's end is in agent-clock seconds."""
        shelves = self._read_commands(self.store.shelves)
        if shelves is None:
            return
        rows = {row.alarm_id: row for row in shelves}
        now = self.store.now()  # the agent clock, which shelves are in
        mono, wall = self.clock.monotonic(), self.clock.now()
        states = {s.rule.public_id: s for s in self.engine.all_states()}
        for alarm_id, row in rows.items():
            state = states.get(alarm_id)
            if state is None or self._shelves.get(alarm_id) == row.until:
                continue
            left = row.until - now
            if left <= 0:
                continue
            self._shelves[alarm_id] = row.until
            state.shelf = Shelf(mono + left, row.reason, row.by)
            log.warning(
                "alarm %r shelved%s for %s, until %s%s: no start is notified until then",
                state.rule.name,
                f" by {row.by}" if row.by else "",
                span(left),
                iso(wall + timedelta(seconds=left)),
                f" ({row.reason})" if row.reason else "",
                extra={"alarm": state.rule.name},
            )
        for alarm_id, until in list(self._shelves.items()):
            state = states.get(alarm_id)
            ended = until <= now
            if alarm_id in rows and not ended:
                continue
            del self._shelves[alarm_id]
            if state is not None:
                state.shelf = None
                log.warning(
                    "alarm %r %s%s",
                    state.rule.name,
                    "shelf time ended" if ended else "unshelved",
                    ": it is active, so it is notified now" if state.active else "",
                    extra={"alarm": state.rule.name},
                )
        expired = [a for a, row in rows.items() if row.until <= now]
        if expired:
            with contextlib.suppress(StoreError):
                self.store.unshelve(expired)

    def handle(self, done: Step) -> None:
        """Tell of the step's transitions; save its states, messages and journal entries
        in one transaction."""
        for t in done.transitions:
            verb = "started" if t.kind == "start" else "ended"
            about = {"alarm": t.rule.name, "source": t.rule.source, "occurrence": t.occurrence_id}
            if t.rule.kind == "variable":
                about["variable"] = t.rule.variable
            values = describe_values(t)
            log.info(
                "alarm %r %s (%s, occurrence %s)",
                t.rule.name,
                verb,
                values,
                t.occurrence_id,
                extra=about,
            )
            self.observer.transition(t)
            self.metrics.transition(t)
        history = [
            journal.event(
                t.kind, t.occurrence_id, t.rule.public_id, t.rule.name, t.rule.severity,
                iso(t.at), [json_safe(v) for v in t.values],
                (m.webhook for m in done.messages
                 if m.occurrence_id == t.occurrence_id and m.kind == t.kind),
            )
            for t in done.transitions
        ]  # fmt: skip
        self.save(done.states, done.messages, history=history)

    def _delivered(self, result: Result) -> None:
        self.metrics.delivered(result)
        self.observer.delivered(result)

    def online(self, source: str) -> bool:
        return self.answered.get(source, False)

    def readiness(self) -> list[str]:
        """Why the agent is not ready, if it is not: empty means ready."""
        problems = []
        if self.scheduler is None or not self.scheduler.running:
            problems.append("the scheduler is not running")
        now = time.monotonic()
        for name, poller in self.pollers.items():
            limit = poller.source.offline_after
            last = poller.stats.last_answer or self.started
            if limit and now - last > limit:
                problems.append(f"source {name} has not answered for {now - last:.0f} s")
        store = self.store
        if not store.durable:
            problems.append(
                f"state not durable: cannot write {store.path} ({store.problem}) for"
                f" {now - store.since:.0f} s; {store.held} new message(s) wait in memory"
            )
        pending = store.pending_count()
        if pending > self.config.outbox.max_pending:
            problems.append(f"outbox holds {pending} messages, over max_pending")
        return problems

    def snapshot(self, first: int = 10, detail: bool = False) -> Snapshot:
        """A copy of what observers may see (status page, metrics): they never hold ``self``.
        ``detail``: with the history and the sparklines (the page's; metrics need neither)."""
        store = self.store
        values = self.values
        words = self._words
        now = self.clock.monotonic()
        wall = self.clock.now()
        alarms = [AlarmView.of(alarm, now, wall) for alarm in self.engine.all_states()]
        history = store.history() if detail else []
        alarms += [AlarmView.out_of_service(rule) for rule in self.engine.out_of_service]
        return Snapshot(
            agent_name=self.config.agent.name,
            started=self.started,
            sources=tuple(
                SourceView(name, p.source.address, self.online(name), copy_stats(p.stats))
                for name, p in self.pollers.items()
            ),
            values=tuple(
                VariableView(
                    key, variable.display_name, variable.unit, values[key], words.get(key, 0)
                )
                for key, _, variable in self.config.variables()
                if key in values
            ),
            alarms=tuple(alarms),
            outbox=OutboxView(
                store.pending_count(),
                store.dead_count(),
                store.oldest_age(),
                tuple(store.pending(limit=first)),
                store.durable,
                store.held,
                store.dropped,
            ),
            heartbeat_failures=self.heartbeat.failures if self.heartbeat else 0,
            problems=tuple(self.readiness()),
            history=tuple(history),
            current=self._current(alarms, history) if detail else {},
            trends={k: tuple(v) for k, v in self.trends.items()} if detail else {},
            manual_ack=self._manual_ack,
        )

    def _current(
        self, alarms: list[AlarmView], history: list[journal.Occurrence]
    ) -> dict[str, journal.Occurrence]:
        """The active alarms' occurrences that the recent history does not hold."""
        recent = {o.occurrence_id for o in history}
        found = {}
        for alarm in alarms:
            key = alarm.occurrence_id
            if key is not None and key not in recent:
                with contextlib.suppress(sqlite3.Error):
                    occurrence = self.store.occurrence(key)
                    if occurrence is not None:
                        found[key] = occurrence
        return found

    def messages(self, t: Transition, webhooks: Sequence[str] | None = None) -> list[Message]:
        return messages_for(self.config, t, self.clock.now(), webhooks)

    def save(
        self,
        states: list[dict[str, Any]],
        messages: list[Message],
        forget: Sequence[str] = (),
        history: Sequence[Mapping[str, Any]] = (),
    ) -> list[int]:
        """Write states and messages in one transaction. While the disk is full the store
        keeps them in memory and writes them, in order, as soon as it can."""
        if not (states or messages or forget or history):
            return []
        ids = self.store.record(states, messages, forget, history)
        evicted = self.store.evict_overflow(self.config.outbox.max_pending)
        if evicted:
            log.warning(
                "outbox over max_pending (%d): %d low-priority message(s) dead-lettered",
                self.config.outbox.max_pending,
                len(evicted),
            )
        self.deliverer.wake()
        return ids

    def _end_removed_alarms(self) -> None:
        """An alarm removed from the config while active and notified gets its end message,
        so its alert does not stay open forever."""
        if not self._removed:
            return
        now = self.clock.now()
        messages: list[Message] = []
        for alarm_id, saved in self._removed.items():
            if saved.get("active") and saved.get("notified") and saved.get("occurrence_id"):
                rule = _removed_rule(alarm_id, saved)
                started = (
                    datetime.fromisoformat(saved["occurred_on"])
                    if saved.get("occurred_on")
                    else now
                )
                end = Transition(rule, "end", saved["occurrence_id"], (), started, now)
                log.warning(
                    "alarm %r was removed from the config while active: sending its end", rule.name
                )
                messages += self.messages(end)
        self.save([], messages, forget=list(self._removed))
        self._removed = {}


def _ilert_person(payload: dict[str, Any]) -> str:
    """Who, in ilert's words: the assignee, else the responder who accepted."""
    people = [payload.get("assignedTo")]
    people += [r.get("user") for r in payload.get("responders") or [] if isinstance(r, dict)
               and r.get("status") == "ACCEPTED"]  # fmt: skip
    for person in people:
        if isinstance(person, dict):
            name = " ".join(str(person.get(k) or "") for k in ("firstName", "lastName")).strip()
            name = name or str(person.get("username") or person.get("email") or "")
            if name:
                return name[:100]
    return ""
