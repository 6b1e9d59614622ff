"""The metrics a fresh agent exports, read from a snapshot: no sockets."""

from __future__ import annotations

from prometheus_client import generate_latest

from agent.observe.snapshot import OutboxView, Snapshot, SourceView
from agent.observe.status import Metrics
from agent.sources.base import SourceStats


def snapshot() -> Snapshot:
    return Snapshot(
        agent_name="Line 3", started=0.0,
        sources=(SourceView("plc", "127.0.0.1:502", False, SourceStats()),),
        values=(), alarms=(),
        outbox=OutboxView(0, 0, 0.0, (), True, 0, 0),
        heartbeat_failures=0, problems=(),
    )  # fmt: skip


def test_error_counters_exist_at_zero_with_label_values_without_spaces() -> None:
    text = generate_latest(Metrics(snapshot).registry).decode()
    for kind in ("not_connected", "no_reply", "protocol_error", "device_busy"):
        assert f'ixon_agent_errors_total{{kind="{kind}",source="plc"}} 0.0' in text, kind
    errors = [line for line in text.splitlines() if line.startswith("ixon_agent_errors_total{")]
    assert all(" " not in line.split('kind="')[1].split('"')[0] for line in errors)


def test_the_process_collector_is_exported() -> None:
    text = generate_latest(Metrics(snapshot).registry).decode()
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
