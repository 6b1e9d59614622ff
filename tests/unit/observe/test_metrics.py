"""The metrics a fresh agent exports, read from a snapshot: no sockets."""

from __future__ import annotations

from prometheus_client import generate_latest

from agent.observe.snapshot import OutboxView, Snapshot, SourceView
from agent.observe.status import Metrics
from agent.sources.base import SourceStats
from agent.sources.modbus.poller import KINDS as MODBUS_KINDS


def snapshot() -> Snapshot:
    return Snapshot(
        agent_name="Line 3", started=0.0,
        sources=(SourceView("plc", "127.0.0.1:502", False, SourceStats(kinds=MODBUS_KINDS)),),
        values=(), alarms=(),
        outbox=OutboxView(0, 0, 0.0, (), True, 0, 0),
        heartbeat_failures=0, problems=(),
    )  # fmt: skip


def test_error_counters_exist_at_zero_with_label_values_without_spaces() -> None:
    """Each protocol's own kinds (a Modbus exception reply here), at 0 from the start."""
    text = generate_latest(Metrics(snapshot).registry).decode()
    for kind in ("not_connected", "no_reply", "protocol_error", "device_busy"):
        assert f'ixon_agent_errors_total{{kind="{kind}",source="plc"}} 0.0' in text, kind
    errors = [line for line in text.splitlines() if line.startswith("ixon_agent_errors_total{")]
    assert all(" " not in line.split('kind="')[1].split('"')[0] for line in errors)


def test_the_process_collector_is_exported() -> None:
    text = generate_latest(Metrics(snapshot).registry).decode()
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text


def test_the_panel_of_a_large_config_stays_a_page() -> None:
    """10k alarms, 3k of them active: the most urgent 100 in full, the rest counted."""
    from dataclasses import replace

    from agent.alarms.states import State
    from agent.common.values import Value
    from agent.observe.page import MAX_CARDS, MAX_VALUES, render
    from agent.observe.snapshot import AlarmView, VariableView

    alarms = tuple(
        AlarmView(f"a{i}", "high" if i % 2 else "low", State.ACTIVE if i < 3000 else State.NORMAL,
                  i < 3000, True, 0, None, inputs=(f"plc.v{i}",))
        for i in range(10_000)
    )  # fmt: skip
    value: Value = 1.0
    values = tuple(VariableView(f"plc.v{i}", f"v{i}", None, value) for i in range(10_000))
    view = replace(snapshot(), alarms=alarms, values=values)
    page = render(view)
    assert page.count("<article") == MAX_CARDS
    assert f"and {3000 - MAX_CARDS} more not normal" in page
    assert f"and {7000 - MAX_VALUES} more</li>" in page


def test_the_panel_shows_a_word_whose_bits_alarms_read_in_hex() -> None:
    from dataclasses import replace

    from agent.observe.page import render
    from agent.observe.snapshot import VariableView

    values = (
        VariableView("plc.fault_word", "Fault word", None, 40, digits=4),
        VariableView("plc.count", "Count", None, 40),
    )
    page = render(replace(snapshot(), values=values))
    assert '<td class="num">0x0028</td>' in page and '<td class="num">40</td>' in page


def test_a_fault_bits_sparkline_is_its_own_bit() -> None:
    from dataclasses import replace

    from agent.alarms.states import State
    from agent.observe.page import render
    from agent.observe.snapshot import AlarmView

    card = AlarmView("Machine fault: Cooling fan", "high", State.ACTIVE, True, True, 0, None,
                     inputs=("plc.fault_word",), bit=5)  # fmt: skip
    trends = {"plc.fault_word": (0.0, 8.0, 40.0, 40.0, 8.0)}  # bit 5: 0 0 1 1 0
    page = render(replace(snapshot(), alarms=(card,), trends=trends))
    assert "false and true" in page and "0 to 40" not in page
    assert 'points="0.0,22.0 25.0,22.0 50.0,2.0 75.0,2.0 100.0,22.0"' in page


def test_an_active_card_shows_its_acknowledgement_or_the_form_for_a_viewer() -> None:
    """The card reads its occurrence from the snapshot's ``current`` when the recent
    history no longer holds it (an alarm active for long, many others since)."""
    from dataclasses import replace

    from agent.alarms.states import State
    from agent.observe.page import render
    from agent.observe.snapshot import AlarmView
    from agent.outbox.journal import Occurrence

    card = AlarmView("Oil hot", "high", State.ACTIVE, True, True, 0, None,
                     alarm_id="A1", occurrence_id="occ1")  # fmt: skip
    view = replace(snapshot(), alarms=(card,), viewer="jane", token="t0k")
    page = render(view)
    assert "not acknowledged" in page and 'value="A1"' in page and 'value="t0k"' in page
    acked = Occurrence("occ1", "A1", "Oil hot", "high", "2026-12-05T10:00:00+00:00", None,
                       [90.0], None, (), "jane", "2026-12-05T10:03:00+00:00", "on it")  # fmt: skip
    page = render(replace(view, current={"occ1": acked}))
    assert "acknowledged by jane" in page and "on it" in page and "<form" not in page
    assert "<form" not in render(replace(view, viewer=None))  # no login: no actions
