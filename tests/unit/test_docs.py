"""The documentation in docs/ and the README tells the truth: its examples are checked
against the code that the agent runs."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import UTC, datetime
from typing import Any

from agent.alarms.engine import AlarmEngine
from agent.config import Config, Webhook, load_config
from agent.formats import build
from tests.conftest import REPO


def blocks(name: str, language: str) -> list[str]:
    text = (REPO / "docs" / name).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def shape(value: Any) -> Any:
    """The keys of a JSON document, all the way down (values ignored)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__ if value is None else "value"


def test_the_payload_examples_are_what_the_formats_build() -> None:
    config = load_config(REPO / "agent.toml", environ={})
    state = AlarmEngine.from_config(config).states[0]
    at = datetime(2026, 11, 22, 10, 0, 3, 120000, tzinfo=UTC)
    state.step(84.2, 0.0, at)
    start = state.step(84.2, 3.0, at)
    assert start is not None
    ixon_doc, events_doc, _ = (json.loads(b) for b in blocks("payloads.md", "json"))
    ixon = build(config.agent, config.webhooks[0], start, at)
    assert shape(ixon_doc) == shape(ixon)
    assert ixon_doc["alarm"]["publicId"] == ixon["alarm"]["publicId"]  # stable ids
    assert ixon_doc["longContent"] == ixon["longContent"]
    events = Webhook.model_validate(
        {"name": "e", "url": "http://127.0.0.1/api/events", "format": "ilert-events"}
    )
    built = build(config.agent, events, start, at)
    assert shape(events_doc) == shape(built)
    assert {k: v for k, v in events_doc.items() if k != "alertKey"} == {
        k: v for k, v in built.items() if k != "alertKey"
    }


def test_the_config_examples_load() -> None:
    base = tomllib.loads((REPO / "agent.toml").read_text())
    for text in blocks("config.md", "toml"):
        data = base | tomllib.loads(text)
        Config(**data)  # raises on any unknown key or bad value


def test_the_readme_stands_alone() -> None:
    readme = (REPO / "README.md").read_text()
    assert "../" not in readme and "shared/DESIGN" not in readme
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        if not link.startswith("http"):
            assert (REPO / link).exists(), link


def test_the_accept_example_is_what_the_format_sends() -> None:
    from agent.formats import Acknowledged, format_of

    config = load_config(REPO / "agent.toml", environ={})
    *_, accept_doc = (json.loads(b) for b in blocks("payloads.md", "json"))
    events = Webhook.model_validate(
        {"name": "e", "url": "http://127.0.0.1/api/events", "format": "ilert-events"}
    )
    at = datetime(2026, 12, 5, 10, 3, tzinfo=UTC)
    ack = Acknowledged("Kq3vTz9LmW2x", "Oil temperature high", "high", "jane", at, "on my way")
    body = format_of(events).acknowledgement(config.agent, events, ack)
    assert body == accept_doc
