"""A config pointed at the stand-ins: what the demo and the live tests run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import SecretStr

from agent.config import Config, Webhook
from simulators.ilert import EVENTS_KEY, IXON_KEY


def default_key(index: int, webhook: Webhook) -> str:
    """The stand-in's default alert sources: one for IXON messages, one for events."""
    return IXON_KEY if webhook.format == "ixon" else EVENTS_KEY


def to_stand_ins(
    base: Config,
    ports: Mapping[str, int],
    ilert_url: str,
    state_dir: Path,
    key: Callable[[int, Webhook], str] = default_key,
    status: bool = True,
) -> Config:
    """``base`` with the simulated sources (``ports``: source -> its port on loopback) and
    every webhook pointed at the ilert stand-in (alert source ``key``), whatever its URL:
    nothing is sent off this machine, and no heartbeat is pinged. ``status``: keep the
    status page (on a free port, never clashing with a running agent)."""
    sources = [s.on_loopback(ports[s.name]) if s.name in ports else s for s in base.sources]
    webhooks = []
    for n, w in enumerate(base.webhooks):
        if w.format == "ixon":
            url = f"{ilert_url}/api/v1/events/ixon/{key(n, w)}"
            webhooks.append(w.model_copy(update={"url": SecretStr(url)}))
        else:
            update = {
                "url": SecretStr(f"{ilert_url}/api/events"),
                "integration_key": SecretStr(key(n, w)),
            }
            webhooks.append(w.model_copy(update=update))
    return base.model_copy(
        update={
            "sources": sources,
            "webhooks": webhooks,
            "agent": base.agent.model_copy(update={"state_dir": state_dir}),
            "status": base.status.model_copy(update={"port": 0, "enabled": status}),
            "heartbeat": None,
        }
    )
