"""An ilert stand-in: alert sources, escalation policies, alert actions, heartbeats, a web page.

Run ``python -m simulators.ilert [--host 127.0.0.1] [--port 8025] [--config ilert.toml]
[--forward URL]``. With no config it has an IXON alert source (key ``il1ixon0demo``), an
Events API source (key ``il1api0demo``), a heartbeat (key ``il1hbt0demo``), one escalation
policy with two levels, and three users. ``--forward URL`` adds an alert action that sends
every lifecycle event to URL (basic auth from the URL's userinfo, as ilert does; no other
headers: a Sumo source's category is the source's own setting).

Inbound (what the agent calls):
- ``POST /api/v1/events/ixon/{key}``: an IXON Cloud Notify message. A start message opens an
  alert (summary from ``shortContent``: alarm and agent name; details from ``longContent``:
  instructions and values). With the source's ``alert_key_template`` (ilert's
  ``alertKeyTemplate``, e.g. ``{{alarm.occurrenceId}}``) a message whose key matches an open
  alert appends to it instead; without one every start opens an alert. An end message
  resolves the open alert with its key (without a template: its occurrence's alerts). The
  source may route by ``user`` (``user.publicId``), ``system_label`` (``systemLabel``) or
  ``company`` (``company.publicId``) to the policy with that routing key, else its own.
- ``POST /api/events`` (also ``/api/events/{key}`` and ``/api/v1/events/{type}/{key}``):
  ilert events. ALERT appends to the open alert with the same ``alertKey`` (case-insensitive)
  or opens one, with the source's priority when the event has none (a LOW source ignores
  the event's priority, as ilert does); ACCEPT and RESOLVE act on it or answer 400
  ``NO_OPEN_ALERT_WITH_KEY``; 202 with ``correlation-id``; 400 for a missing field, a bad
  enum or a ``severity`` outside 1..5; 404 for an unknown key.
- ``GET|POST|HEAD /api/heartbeats/{key}`` (also ``/api/v1/heartbeats/{key}``,
  ``/api/pings/{key}``): a heartbeat ping. Silent for longer than its interval: an alert;
  pinged again: resolved.

Limits, as ilert documents them and counts them, in fixed one-minute windows that start on
the wall clock's whole minutes: 50 events per alert source key (the IXON source's and the
Events API's alike), 5 pings per heartbeat key, 700 requests per client address on the
alert API; past one, 429 with no ``Retry-After`` until the next window. ``[limits]`` in the
config changes them (``events``, ``heartbeats``, ``api``, ``window`` in seconds).

Alerts (what an operator does): ``GET /api/alerts[?status=]``, ``GET /api/alerts/{id}``, and
``PUT`` or ``POST /api/alerts/{id}/<action>``: ``accept``, ``resolve``, ``raise`` (priority to
HIGH), ``escalate`` (the current level's time runs out now), ``assign`` (``{"user"}`` or
``{"escalationPolicy"}``), ``comments`` (``{"content"}``), ``responders`` (``{"user"}``),
``channels`` (``{"name"}``); ``DELETE .../responders/{user}`` and ``.../channels/{name}``.
A policy with ``escalation_timeout`` escalates a pending alert by itself; past its last level
the escalation ends.

Alert actions POST lifecycle events named by ilert's trigger types (``TRIGGER_TYPES``), in
order, filtered by trigger type and source, as ilert's documented default payload or as the
action's ``body_template`` (Mustache, ilert's variables, values not escaped).
``alert-escalation-ended`` waits ``escalation_ended_delay`` and ``v-alert-not-resolved``
comes ``not_resolved_delay`` after the alert was created, if it is still not resolved.

A config file (``--config``) replaces the defaults; every key is optional::

    [[users]]
    username = "ada"                # first_name, last_name, email
    [[escalation_policies]]
    name = "Night shift"
    levels = [["ada"], ["lead"]]    # who is notified at each level
    escalation_timeout = 900        # seconds a level has to accept; default: never escalates
    routing_key = "UsrWebhook01"    # for a source's routing_field
    [[sources]]
    name = "IXON Cloud"
    key = "il1ixon0demo"
    integration = "ixon"            # or "api" (Events API, the default)
    escalation_policy = "Night shift"
    alert_key_template = "{{alarm.occurrenceId}}"   # ixon: group a resent message
    routing_field = "user"          # ixon: user | system_label | company
    priority = "HIGH"               # api: for an event without one; LOW ignores the event's
    [[alert_actions]]
    name = "sumo"
    url = "http://user:pass@127.0.0.1:8030/receiver/v1/http/demo"
    event_types = ["alert-created", "alert-resolved"]   # default: every trigger type
    body_template = '{"text": "{{alertSummary}} is {{alertStatus}}"}'  # default: ilert's
    not_resolved_delay = 60         # seconds; escalation_ended_delay = 0
    headers = {}                    # ilert's custom headers
    [limits]
    events = 50                     # per alert source key and window; heartbeats = 5,
    window = 60                     # api = 700 (per client address)

Fault switches for the agent's tests (inbound endpoints only): ``--fault 5xx|429|delay|drop``
(with ``--fault-count``, ``--fault-delay``) or ``POST /admin/faults`` with
``{"mode", "count", "status", "delay", "retry_after"}``. ``GET /admin/stats[?since=T]``:
requests answered, events accepted, 429s per limit, and (since wall time T) the arrival time
of every inbound request and a summary of every accepted event, for benches in another
process. ``GET /`` is a read-only page of the alerts that refreshes itself.
"""

from simulators.ilert.alerts import Alert, AlertSource, Policy, render
from simulators.ilert.conf import (
    EVENTS_KEY,
    HEARTBEAT_KEY,
    IXON_KEY,
    OCCURRENCE_KEY,
    PAYLOAD_FIELDS,
    TEMPLATE_VARIABLES,
    TRIGGER_TYPES,
    ActionConf,
    FaultConf,
    HeartbeatConf,
    IlertConf,
    LimitsConf,
    PolicyConf,
    SourceConf,
    UserConf,
    load,
    recommended,
)
from simulators.ilert.server import IlertSimulator, main

__all__ = [
    "EVENTS_KEY",
    "HEARTBEAT_KEY",
    "IXON_KEY",
    "OCCURRENCE_KEY",
    "PAYLOAD_FIELDS",
    "TEMPLATE_VARIABLES",
    "TRIGGER_TYPES",
    "ActionConf",
    "Alert",
    "AlertSource",
    "FaultConf",
    "HeartbeatConf",
    "IlertConf",
    "IlertSimulator",
    "LimitsConf",
    "Policy",
    "PolicyConf",
    "SourceConf",
    "UserConf",
    "load",
    "main",
    "recommended",
    "render",
]
