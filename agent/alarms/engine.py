"""The alarm engine: every alarm's state, advanced per poll of a source (values in,
transitions out), restored from the store at start and carried over on a reload."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from agent.alarms.rules import AlarmRule, offline_rule
from agent.alarms.states import AlarmState, State, Transition
from agent.common.retry import milestone
from agent.common.values import Value
from agent.config import Config

log = logging.getLogger("agent.alarms")


_MISSING = object()
_STABLE = (State.NORMAL, State.ACTIVE)


class AlarmEngine:
    """All alarms of an agent, evaluated per source after each of its poll cycles.

    ``evaluate`` returns the transitions to notify. Every state whose persistent part changed
    (see ``AlarmState.snapshot``) is collected in ``dirty`` for the caller to save in the
    same transaction as the messages.
    """

    def __init__(
        self,
        states: list[AlarmState],
        offline: Iterable[AlarmState] = (),
        out_of_service: Iterable[AlarmRule] = (),
    ) -> None:
        self.states = states
        self.out_of_service = tuple(out_of_service)  # configured with enabled = false
        self.offline = {state.rule.source: state for state in offline}
        self.dirty: set[AlarmState] = set()
        self.last_cycle: dict[str, Mapping[str, Value]] = {}  # per source: its last values
        # per source: each alarm reading it, the key of its value in a cycle's values (None:
        # a formula, whose inputs may come from several sources' last cycles) and its trigger
        Watch = tuple[AlarmState, str | None, Callable[[Any], Any]]
        self._watch: dict[str, list[Watch]] = {}
        #: per source: its rate-of-change alarms and their variable (a rate changes while
        #: the value does not, so these are stepped every cycle)
        self._rates: dict[str, list[tuple[AlarmState, str]]] = {}
        for state in states:
            rule = state.rule
            if rule.rate is not None:
                self._rates.setdefault(rule.source, []).append((state, rule.variable))
            elif rule.kind == "formula":
                for source in rule.sources:
                    self._watch.setdefault(source, []).append((state, None, rule.triggers))
            else:
                watch = (state, rule.variable, rule.triggers)
                self._watch.setdefault(rule.source, []).append(watch)

    @classmethod
    def from_config(cls, config: Config) -> AlarmEngine:
        agent_id = config.agent.agent_id
        enabled: list[AlarmRule] = []
        disabled: list[AlarmRule] = []
        for alarm in config.alarms:
            (enabled if alarm.enabled else disabled).extend(AlarmRule.compile_all(alarm, config))
        offline = [AlarmState(offline_rule(s, agent_id)) for s in config.sources if s.offline_after]
        return cls([AlarmState(rule) for rule in enabled], offline, disabled)

    def all_states(self) -> list[AlarmState]:
        return [*self.states, *self.offline.values()]

    def evaluate(
        self, source: str, values: Mapping[str, Value], now: float, wall: datetime
    ) -> list[Transition]:
        """Step the alarms of ``source`` with a cycle's values; returns what to notify."""
        self.last_cycle[source] = values
        out: list[Transition] = []
        get = values.get
        normal, active, missing = State.NORMAL, State.ACTIVE, _MISSING
        for state, key, triggers in self._watch.get(source, ()):
            value = get(key, missing) if key is not None else self._inputs(state.rule)
            if value is missing:
                state.stale = True
                continue
            current = state.state
            if current is normal:
                if value == state.last_value:
                    continue  # unchanged and quiet: nothing to do (the usual case)
                triggered: bool | None = None
                if not state.stale:  # the next usual case: a new value that triggers nothing
                    try:
                        if not triggers(value):  # (a normal alarm's last_seen times nothing)
                            state.last_value = value
                            continue
                        triggered = True
                    except (TypeError, ArithmeticError):
                        pass  # a bad value: ``step`` decides what it means
                self._advance(state, value, now, wall, out, triggered)
            elif current is active and value == state.last_value:
                if not state.notified:  # owed: its start was held back by flapping control
                    self._owed(state, now, out)
            else:
                self._advance(state, value, now, wall, out)
        for state, key in self._rates.get(source, ()):
            self._rate(state, get(key, missing), now, wall, out)
        return out

    def _rate(
        self, state: AlarmState, value: Any, now: float, wall: datetime, out: list[Transition]
    ) -> None:
        """Step a rate-of-change alarm with its rate. A missing or bad sample is a hole:
        the samples before it are dropped, since a rate across a hole (the source offline,
        a bad frame) is not a rate. Until the samples span the window, nothing is decided,
        and running delays stand still, as for stale input."""
        rate = state.rule.rate
        assert rate is not None
        if type(value) not in (int, float) or value != value:
            state.stale, state.samples = True, None
            return
        if state.samples is None:
            state.samples = deque()
        found = rate(state.samples, now, value)
        if found is None:
            state.stale = True
            return
        self._advance(state, found, now, wall, out)

    def connection(
        self, source: str, answered: bool, last_answer: float | None, now: float, wall: datetime
    ) -> list[Transition]:
        """Step the source's offline alarm; its delay runs from the last answer."""
        state = self.offline.get(source)
        if state is None:
            return []
        if answered and state.state is State.NORMAL and state.last_value == "online":
            return []  # online and it was: the usual cycle
        out: list[Transition] = []
        self._advance(state, "online" if answered else "offline", now, wall, out)
        if state.state is State.PENDING and last_answer is not None:
            state.since = min(state.since, last_answer)
        return out

    def _inputs(self, rule: AlarmRule) -> Any:
        """A formula's input values, if all were read in their source's last cycle."""
        values = []
        for item in rule.inputs:
            value = self.last_cycle.get(item.source, {}).get(item.key, _MISSING)
            if value is _MISSING:
                return _MISSING
            values.append(value)
        return tuple(values)

    def _advance(
        self,
        state: AlarmState,
        value: Any,
        now: float,
        wall: datetime,
        out: list[Transition],
        triggered: bool | None = None,
    ) -> None:
        transition = state.step(value, now, wall, triggered)
        if transition is None:
            if state.owed:
                self._owed(state, now, out)
            return
        self.dirty.add(state)
        shelved = state.shelved(now)
        if transition.kind == "start":
            if not shelved and state.may_notify_start(now):
                state.notified_start(now)
                state.notified = True
                out.append(transition)
            else:
                state.notified = False
                if not shelved:
                    self._suppressed(state, transition)
        elif state.notified:
            state.notified = False
            out.append(transition)
        elif not shelved:
            self._suppressed(state, transition)  # the end of a start nobody was told about

    @staticmethod
    def _suppressed(state: AlarmState, transition: Transition) -> None:
        state.suppressed += 1
        if milestone(state.suppressed):
            log.warning(
                "alarm %r is flapping: %s not notified (%d suppressed so far; at most %d starts"
                " per %g s)",
                state.rule.name,
                transition.kind,
                state.suppressed,
                state.rule.max_notifications,
                state.rule.flap_window,
                extra={"alarm": state.rule.name},
            )

    def _owed(self, state: AlarmState, now: float, out: list[Transition]) -> None:
        if state.shelved(now):
            return
        if state.start is not None and state.may_notify_start(now):
            state.notified_start(now)
            state.notified = True
            self.dirty.add(state)
            out.append(state.start)

    def settled(self, source: str) -> bool:
        """Whether another cycle of ``source`` with the same values and an answer could change
        nothing: no delay runs and no suppressed start is owed in the alarms it drives. A
        simulation may then skip its polls until a value changes."""
        if self._rates.get(source):
            return False  # a rate changes while the value stands still
        watched = [state for state, _, _ in self._watch.get(source, ())]
        if source in self.offline:
            watched.append(self.offline[source])
        return all(
            s.state is State.NORMAL or (s.state is State.ACTIVE and s.notified) for s in watched
        )

    def take_dirty(self) -> list[AlarmState]:
        if not self.dirty:  # the usual cycle: nothing changed, nothing to allocate
            return []
        dirty, self.dirty = list(self.dirty), set()
        return dirty

    def restore(self, saved: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Resume states saved by id; returns the saved ids no configured alarm has."""
        known = {state.rule.public_id: state for state in self.all_states()}
        for alarm_id, row in saved.items():
            if alarm_id in known:
                known[alarm_id].restore(row)
        return [alarm_id for alarm_id in saved if alarm_id not in known]

    def active(self) -> Iterable[AlarmState]:
        return (s for s in self.all_states() if s.active)

    def adopt(self, previous: AlarmEngine, ids: set[str]) -> AlarmEngine:
        """A new engine where the alarms in ``ids`` are ``previous``'s own state objects."""
        old = {s.rule.public_id: s for s in previous.all_states() if s.rule.public_id in ids}
        states = [old.get(s.rule.public_id, s) for s in self.states]
        offline = [old.get(s.rule.public_id, s) for s in self.offline.values()]
        engine = AlarmEngine(states, offline, self.out_of_service)
        engine.last_cycle = dict(previous.last_cycle)
        return engine
