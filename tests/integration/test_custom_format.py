"""The formats stage's protocol is real: a format defined here, in one class and one entry
point (what a plugin's pyproject.toml would list), is configured, built, sent, answered and
rate-limited like the built-in ones, without a change anywhere in the agent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from agent.alarms.states import Transition, describe_values
from agent.config import (
    FORMAT_GROUP,
    AgentSection,
    ConfigError,
    Webhook,
    load_config,
    webhook_formats,
)
from agent.formats import FORMATS, register
from agent.formats.base import Answer, http_answer
from agent.runtime.service import Agent
from simulators.modbus_device import ModbusDeviceSimulator
from tests.conftest import CONFIG, wait_for, write_config
from tests.receiver import Receiver


class ChatFormat:
    """A chat room's incoming webhook: one line of text, the room's token in the body."""

    name = "chat"

    def build(
        self, agent: AgentSection, webhook: Webhook, t: Transition, now: datetime
    ) -> dict[str, Any]:
        verb = "started" if t.kind == "start" else "ended"
        return {"text": f"{t.rule.name} {verb} on {agent.name}: {describe_values(t)}"}

    def with_secret(self, body: dict[str, Any], webhook: Webhook) -> dict[str, Any]:
        assert webhook.integration_key is not None
        return {**body, "token": webhook.integration_key.get_secret_value()}

    def classify(self, status: int, answer: bytes, body: dict[str, Any]) -> Answer:
        return "delivered" if answer == b'{"status": 409}' else http_answer(status)

    def rate_key(self, webhook: Webhook) -> str | None:
        return "chat-room"

    def problems(self, webhook: Webhook) -> Iterator[str]:
        if webhook.integration_key is None:
            yield "integration_key: the room's token is required"


CHAT_FORMAT = ChatFormat()


@pytest.fixture
def chat() -> Iterator[None]:
    # a plugin's pyproject.toml: [project.entry-points."ixon_agent.formats"]
    #                            chat = "tests.integration.test_custom_format:CHAT_FORMAT"
    entry = EntryPoint("chat", f"{__name__}:CHAT_FORMAT", FORMAT_GROUP)
    webhook_formats()["chat"] = entry  # as if installed (the list is read once a process)
    register(entry.load())  # what agent.formats does with every entry point at import
    yield
    FORMATS.pop("chat")
    webhook_formats().pop("chat")


CHAT = CONFIG.replace(
    'user_id = "UsrWebhook01"', 'format = "chat"\nintegration_key = "room-token-1"'
)


async def test_a_format_defined_in_one_class_goes_through_the_whole_chain(
    chat: None, tmp_path: Any, machine: ModbusDeviceSimulator, receiver: Receiver
) -> None:
    receiver.script = [409]  # this format's own reading: a 409 is a duplicate, so done
    path = write_config(tmp_path, CHAT, port=machine.port, ilert=receiver.url)
    agent = Agent(load_config(path, environ={}))
    await agent.start()
    try:
        await machine.hold(oil_temp=91.5)
        await wait_for(lambda: receiver.attempts, what="the start message")
        await wait_for(lambda: agent.store.pending_count() == 0, what="the 409 taken as done")
        await machine.hold(oil_temp=60.0)
        await wait_for(lambda: len(receiver.bodies) == 1, what="the end message")
        await wait_for(lambda: agent.store.pending_count() == 0, what="the end recorded as sent")
        assert agent.store.dead_count() == 0
    finally:
        await agent.stop()
    start, end = (body for _, body in receiver.attempts)
    assert start == {
        "text": "Oil temperature high started on Test line: Oil temperature = 91.5 degC",
        "token": "room-token-1",
    }
    assert end["text"].startswith("Oil temperature high ended") and end["token"] == "room-token-1"
    stored = (agent.store.path).read_bytes().decode("latin-1")
    assert "room-token-1" not in stored  # the secret is added at send time only


def test_a_format_states_its_own_config_problems(chat: None, tmp_path: Any) -> None:
    without_token = CONFIG.replace('user_id = "UsrWebhook01"', 'format = "chat"')
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, without_token), environ={})
    assert raised.value.problems == [
        "webhooks[0] (ilert).integration_key: the room's token is required"
    ]
    unknown = CONFIG.replace('user_id = "UsrWebhook01"', 'format = "pager"')
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, unknown), environ={})
    assert raised.value.problems == [
        "webhooks[0] (ilert).format: 'pager' is not a format: one of 'chat', 'ilert-events', 'ixon'"
    ]
