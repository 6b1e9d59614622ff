"""Formats: an alarm transition as the body of a webhook, one file per format.

``base`` defines the protocol and the registry; ``ixon`` and ``ilert_events`` are the two
formats. Each is listed as an entry point (``ixon_agent.formats`` in pyproject.toml), which
is how the config checks a format's name without importing this package, and how the
registry is filled below: a third format is a third file and one line there. Pure: a
transition and the config in, JSON-ready outbox messages out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agent.alarms.rules import AlarmRule, Input
from agent.alarms.states import Transition
from agent.common.ids import new_id, short_id
from agent.common.values import json_safe
from agent.config import SEVERITY_RANK, AgentSection, Config, Webhook, webhook_formats
from agent.formats.base import (
    FORMATS,
    Acknowledged,
    Answer,
    WebhookFormat,
    format_of,
    register,
)
from agent.outbox.store import Message

__all__ = [
    "FORMATS",
    "Acknowledged",
    "Answer",
    "WebhookFormat",
    "ack_messages",
    "build",
    "format_of",
    "messages_for",
    "register",
    "sample_transition",
    "wanted",
]


for _entry in webhook_formats().values():
    register(_entry.load())


def wanted(webhook: Webhook, transition: Transition) -> bool:
    """Whether this webhook takes this transition (severity floor, ends only if asked)."""
    if SEVERITY_RANK[transition.rule.severity] < SEVERITY_RANK[webhook.min_severity]:
        return False
    return transition.kind == "start" or webhook.notify_ended


def build(agent: AgentSection, webhook: Webhook, t: Transition, now: datetime) -> dict[str, Any]:
    """The webhook's body for ``t``, strict JSON (no NaN or infinity)."""
    body = format_of(webhook).build(agent, webhook, t, now)
    try:  # the usual case, checked at C speed: nothing to replace
        json.dumps(body, allow_nan=False)
    except ValueError:
        return json_safe(body)
    return body


def messages_for(
    config: Config, t: Transition, now: datetime, webhooks: Sequence[str] | None = None
) -> list[Message]:
    """One outbox message per webhook that wants this transition."""
    label = f"{t.kind} of {t.rule.name!r} (occurrence {t.occurrence_id})"
    return [
        Message(
            w.name, t.occurrence_id, t.kind, t.rule.severity, label, build(config.agent, w, t, now)
        )
        for w in config.webhooks
        if (webhooks is None or w.name in webhooks) and wanted(w, t)
    ]


def ack_messages(config: Config, ack: Acknowledged, webhooks: Sequence[str]) -> list[Message]:
    """What ``webhooks`` (those the occurrence was queued for) are told of an
    acknowledgement: a message each whose format has one (ilert-events: ACCEPT)."""
    label = f"acknowledgement of {ack.alarm!r} (occurrence {ack.occurrence_id})"
    found = []
    for w in config.webhooks:
        if w.name not in webhooks:
            continue
        tell = getattr(format_of(w), "acknowledgement", None)  # (a format may have none)
        body = tell(config.agent, w, ack) if tell is not None else None
        if body is not None:
            found.append(Message(w.name, ack.occurrence_id, "ack", ack.severity, label, body))
    return found


def sample_transition(config: Config) -> Transition:
    """A start of a made-up high alarm, for ``ixon-agent send-test``."""
    agent_id = config.agent.agent_id
    rule = AlarmRule.synthetic(
        "Test message from ixon-agent",
        short_id(agent_id, "alarm", "send-test"),
        "high",
        "This is a test of the alarm chain; no action is needed.",
        "test",
        inputs=(Input("agent.test", "Test"),),
    )
    now = datetime.now(UTC)
    return Transition(rule, "start", new_id(), (True,), now, now)


def ended(start: Transition) -> Transition:
    """The end of ``start`` (``send-test`` resolves what it opened), a moment later."""
    return Transition(
        start.rule,
        "end",
        start.occurrence_id,
        start.values,
        start.occurred_on,
        datetime.now(UTC),
    )


def test_messages(config: Config, webhooks: Sequence[Webhook], t: Transition) -> list[Message]:
    """``t`` for each of ``webhooks``, whatever their severity floor or ``notify_ended``: a
    test reaches the webhooks it names, and an opened test alert is always resolved."""
    label = f"{t.kind} of {t.rule.name!r} (occurrence {t.occurrence_id})"
    return [
        Message(
            w.name, t.occurrence_id, t.kind, t.rule.severity, label, build(config.agent, w, t, t.at)
        )
        for w in webhooks
    ]
