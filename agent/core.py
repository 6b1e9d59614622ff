"""The core step of the pipeline: one poll result in, alarm transitions and messages out.

    sources -> [ step: alarms -> formats ] -> outbox -> delivery

Pure: no IO, no clock of its own (``now`` is monotonic seconds for delays, ``wall`` the
timestamp for messages). The service calls it after every poll and writes what it returns
in one transaction; ``ixon-agent test`` and ``replay`` are to call the same function in
simulated time, so a config is tested by the code that runs in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.alarms.engine import AlarmEngine
from agent.alarms.states import Transition
from agent.config import Config
from agent.formats import messages_for
from agent.outbox.store import Message
from agent.sources.base import PollResult


@dataclass(frozen=True)
class Step:
    transitions: list[Transition]
    states: list[dict[str, Any]]  # the alarm states that changed, as the store saves them
    messages: list[Message]  # one per webhook that wants a transition


def step(
    engine: AlarmEngine,
    config: Config,
    result: PollResult,
    last_answer: float | None,
    now: float,
    wall: datetime,
) -> Step:
    """Advance the alarms of ``result.source`` (the engine holds the alarm states: this is
    the only thing changed) and say what to save and send. ``last_answer``: monotonic time
    of the source's last valid reply, for its offline alarm."""
    name = result.source
    transitions = engine.connection(name, result.answered, last_answer, now, wall)
    transitions += engine.evaluate(name, result.values, now, wall)
    messages = [m for t in transitions for m in messages_for(config, t, wall)]
    return Step(transitions, [s.snapshot() for s in engine.take_dirty()], messages)
