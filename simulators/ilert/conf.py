"""The stand-in's configuration: users, escalation policies, alert sources, heartbeats,
alert actions, fault switches and limits (``--config FILE``, every key optional)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IXON_KEY = "il1ixon0demo"
EVENTS_KEY = "il1api0demo"
HEARTBEAT_KEY = "il1hbt0demo"
STATUSES = ("PENDING", "ACCEPTED", "RESOLVED")
OPEN = ("PENDING", "ACCEPTED")
#: ilert's ``AlertAction.triggerTypes``: the ``eventType`` of every lifecycle webhook
TRIGGER_TYPES = (
    "alert-created",
    "alert-assigned",
    "alert-auto-escalated",
    "alert-acknowledged",
    "alert-raised",
    "alert-comment-added",
    "alert-escalation-ended",
    "alert-resolved",
    "alert-responder-added",
    "alert-responder-removed",
    "alert-channel-attached",
    "alert-channel-detached",
    "v-alert-not-resolved",
)
#: the fields of ilert's default webhook payload, and nothing else
PAYLOAD_FIELDS = (
    "id",
    "status",
    "summary",
    "details",
    "reportTime",
    "eventType",
    "priority",
    "alertKey",
    "alertSource",
    "assignedTo",
    "responders",
)
#: the variables of a custom body template (ilert's documented list)
TEMPLATE_VARIABLES = (
    "alertId",
    "alertKey",
    "alertDetails",
    "alertSummary",
    "alertStatus",
    "alertPriority",
    "alertUrl",
    "alertSourceId",
    "alertSourceName",
    "escalationPolicyId",
    "escalationPolicyName",
    "reportTime",
    "link",
    "eventType",
)


# -- configuration ------------------------------------------------------------------------


class _Conf(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserConf(_Conf):
    username: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""


class PolicyConf(_Conf):
    name: str
    routing_key: str | None = None
    levels: list[list[str]] = Field(default_factory=lambda: [["oncall"], ["lead"]])
    #: seconds a level has to accept a pending alert before it escalates (None: never)
    escalation_timeout: float | None = Field(default=None, gt=0)


class SourceConf(_Conf):
    name: str
    key: str
    integration: Literal["ixon", "api"] = "api"
    escalation_policy: str = "Default policy"
    routing_field: Literal["user", "system_label", "company"] | None = None
    priority: Literal["HIGH", "LOW"] = "HIGH"  # for an event without one (Events API)
    alert_key_template: str | None = None  # IXON source: ilert's alertKeyTemplate


class HeartbeatConf(_Conf):
    name: str
    key: str
    interval: float = Field(default=120.0, gt=0)
    escalation_policy: str = "Default policy"


class ActionConf(_Conf):
    name: str
    url: str  # basic auth from its userinfo: http://user:pass@host/path
    event_types: list[str] = Field(default_factory=list)  # trigger types; empty: all of them
    sources: list[str] = Field(default_factory=list)  # empty: every source
    headers: dict[str, str] = Field(default_factory=dict)  # ilert's custom headers
    body_template: str | None = None  # ilert's custom body: Mustache over TEMPLATE_VARIABLES
    escalation_ended_delay: float = Field(default=0.0, ge=0)  # ilert: 0 or 30..7200 s
    not_resolved_delay: float = Field(default=60.0, gt=0)  # ilert: 60..7200 s

    @field_validator("event_types")
    @classmethod
    def _known(cls, types: list[str]) -> list[str]:
        unknown = [t for t in types if t not in TRIGGER_TYPES]
        if unknown:
            raise ValueError(f"unknown {unknown}: ilert's trigger types are {list(TRIGGER_TYPES)}")
        return types

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class FaultConf(_Conf):
    mode: Literal["none", "5xx", "429", "delay", "drop"] = "none"
    count: int | None = None  # requests affected; None: all until switched off
    status: int = 503
    delay: float = 0.0
    retry_after: int = 1


class LimitsConf(_Conf):
    """ilert's documented limits (docs.ilert.com, alert source throttle), each per fixed
    window of ``window`` seconds; past one, 429 with no ``Retry-After``."""

    events: int = Field(default=50, ge=1)  # per alert source key (IXON and Events API alike)
    heartbeats: int = Field(default=5, ge=1)  # pings per heartbeat key
    api: int = Field(default=700, ge=1)  # REST API requests per client address
    window: float = Field(default=60.0, gt=0)


class IlertConf(_Conf):
    users: list[UserConf] = Field(
        default_factory=lambda: [
            UserConf(username=u, first_name=first, last_name=u.title(), email=f"{u}@example.com")
            for u, first in (("oncall", "Olivia"), ("lead", "Liam"), ("maint", "Mia"))
        ]
    )
    escalation_policies: list[PolicyConf] = Field(
        default_factory=lambda: [PolicyConf(name="Default policy")]
    )
    sources: list[SourceConf] = Field(
        default_factory=lambda: [
            SourceConf(name="IXON Cloud", key=IXON_KEY, integration="ixon"),
            SourceConf(name="Edge agent events", key=EVENTS_KEY),
        ]
    )
    heartbeats: list[HeartbeatConf] = Field(
        default_factory=lambda: [HeartbeatConf(name="Edge agent heartbeat", key=HEARTBEAT_KEY)]
    )
    alert_actions: list[ActionConf] = Field(default_factory=list)
    faults: FaultConf = Field(default_factory=FaultConf)
    limits: LimitsConf = Field(default_factory=LimitsConf)
    no_open_alert_code: str = "NO_OPEN_ALERT_WITH_KEY"


#: ilert's alertKeyTemplate for an IXON source that the README recommends: a resent message
#: (delivery is at least once) appends to its open alert instead of paging again
OCCURRENCE_KEY = "{{alarm.occurrenceId}}"


def recommended() -> IlertConf:
    """The default set-up with the IXON source grouping by occurrence, as the README says."""
    conf = IlertConf()
    conf.sources[0].alert_key_template = OCCURRENCE_KEY
    return conf


def load(path: Path | None) -> IlertConf:
    return (
        IlertConf() if path is None else IlertConf.model_validate(tomllib.loads(path.read_text()))
    )
