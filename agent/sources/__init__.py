"""Sources: poll a machine once, get values plus health.

``base`` is the stage's door (a ``Poller`` gives a ``PollResult``), ``schema`` what every
kind's config shares, ``kinds`` the list of kinds, ``drivers`` opens a kind's pollers.
Each protocol is a folder (``modbus/``, ``opcua/``) that owns its config model, planning,
decoding, poller and raw or browse view. Nothing is imported here, so that the config can
import the kinds' models without the pollers."""

from __future__ import annotations

from typing import Any

_LAZY = {
    "PollResult": "agent.sources.base",
    "Poller": "agent.sources.base",
    "SourceStats": "agent.sources.base",
    "open_pollers": "agent.sources.drivers",
}


def __getattr__(name: str) -> Any:
    """``from agent.sources import PollResult`` as before, loaded on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent.sources' has no attribute {name!r}")
