"""The door of the formats stage: what a webhook format is, and the registry of them.

A format turns an alarm transition into a request body (pure), adds its secret only when
the body is sent (the outbox never holds a key), says what an answer means, and names the
key a receiver rate-limits by. A new format is a new file in this folder that calls
``register`` once; nothing else in the agent names a format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from agent.alarms.states import Transition
    from agent.config import AgentSection, Webhook

#: what an answer means for a message: done, send again later, or never (dead letter)
Answer = Literal["delivered", "retry", "rejected"]


class WebhookFormat(Protocol):
    #: the value of ``format`` in a ``[[webhooks]]`` section
    name: str

    def build(
        self, agent: AgentSection, webhook: Webhook, t: Transition, now: datetime
    ) -> dict[str, Any]:
        """The body for one transition: pure, JSON-ready, without secrets."""
        ...

    def with_secret(self, body: dict[str, Any], webhook: Webhook) -> dict[str, Any]:
        """The body as it is sent (for example with an integration key added)."""
        ...

    def classify(self, status: int, answer: bytes, body: dict[str, Any]) -> Answer:
        """What the receiver's HTTP status and answer mean for this body."""
        ...

    def rate_key(self, webhook: Webhook) -> str | None:
        """The key the receiver counts sends by, when it is known to limit them (ilert):
        such a webhook is paced by default (``delivery.pacing``); None: it is not, unless
        its ``rate_limit`` says so. Webhooks with the same key share one budget."""
        ...

    def problems(self, webhook: Webhook) -> Iterator[str]:
        """What a webhook of this format lacks, as ``field: reason`` lines."""
        ...


#: ilert's event paths, whatever host is in front (ilert, a proxy, the stand-in): the key
#: is the last segment of /api/v1/events/<type>/<key> (the IXON source's among them) and
#: /api/events/<key>; /api/events alone takes it from the body (``integration_key``)
_KEY_IN_PATH = re.compile(r"/api/(?:v1/events/[^/]+|events)/([^/]+)/?$")
_EVENTS_API = re.compile(r"/api/events/?$")


def ilert_key(webhook: Webhook) -> str | None:
    """The key ilert counts this webhook's events by, when its URL's path is one of
    ilert's event paths; None for any other receiver."""
    path = urlsplit(webhook.url.get_secret_value()).path
    found = _KEY_IN_PATH.search(path)
    if found:
        return unquote(found.group(1))
    if _EVENTS_API.search(path) and webhook.integration_key is not None:
        return webhook.integration_key.get_secret_value()
    return None


def http_answer(status: int) -> Answer:
    """The plain HTTP reading every format starts from: 2xx done; 408, 429 and 5xx again."""
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "rejected"


@dataclass(frozen=True)
class Acknowledged:
    """An occurrence acknowledged at the machine (IXON's acknowledgedBy, acknowledgedOn,
    comment): what a format may tell its receiver."""

    occurrence_id: str
    alarm: str
    severity: str
    by: str
    at: datetime
    comment: str


class PlainFormat:
    """Defaults for a format without secrets or special answers, paced when its URL is
    one of ilert's event paths."""

    name = ""

    def with_secret(self, body: dict[str, Any], webhook: Webhook) -> dict[str, Any]:
        return body

    def classify(self, status: int, answer: bytes, body: dict[str, Any]) -> Answer:
        return http_answer(status)

    def rate_key(self, webhook: Webhook) -> str | None:
        return ilert_key(webhook)

    def problems(self, webhook: Webhook) -> Iterator[str]:
        return iter(())

    def acknowledgement(
        self, agent: AgentSection, webhook: Webhook, ack: Acknowledged
    ) -> dict[str, Any] | None:
        """The body telling the receiver of an acknowledgement; None: this format has no
        such message (ilert's IXON source has no accept), and nothing is sent."""
        return None


FORMATS: dict[str, WebhookFormat] = {}


def register(fmt: WebhookFormat) -> WebhookFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def format_of(webhook: Webhook) -> WebhookFormat:
    return FORMATS[webhook.format]
