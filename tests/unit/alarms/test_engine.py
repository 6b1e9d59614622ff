"""The alarm engine with an injected clock: no sockets, no sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.alarms.rules import AlarmRule
from agent.alarms.states import AlarmState, State
from agent.config import Config

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


def config(*alarms: dict[str, Any]) -> Config:
    variables = [
        {"name": "oil_temp", "label": "Oil temperature", "register": "holding", "address": 0, "type": "float", "unit": "degC"},
        {"name": "pump_on", "label": "Pump on", "register": "coil", "address": 0, "type": "bool"},
    ]  # fmt: skip
    return Config.model_validate(
        {
            "agent": {"name": "Agent", "public_id": "Agent0000001"},
            "sources": [{"name": "plc", "host": "127.0.0.1", "variables": variables}],
            "alarms": list(alarms),
        }
    )


def rule(**kw: Any) -> AlarmRule:
    fields = {
        "name": "Oil hot",
        "variable": "plc.oil_temp",
        "condition": ">",
        "threshold": 80.0,
    } | kw
    if "formula" in kw:
        fields = {"name": "Oil hot"} | kw
    cfg = config(fields)
    return AlarmRule.compile(cfg.alarms[0], cfg)


class Run:
    """Feeds values to one alarm at given times (seconds); records what happened."""

    def __init__(self, **kw: Any) -> None:
        self.state = AlarmState(rule(**kw))
        self.events: list[tuple[float, str]] = []

    def feed(self, *samples: tuple[float, Any]) -> Run:
        for at, value in samples:
            transition = self.state.step(value, at, T0 + timedelta(seconds=at))
            if transition is not None:
                self.events.append((at, transition.kind))
        return self


def test_immediate_start_and_end_share_one_occurrence() -> None:
    state = AlarmState(rule())
    start = state.step(85.0, 0.0, T0)
    assert start is not None and start.kind == "start" and start.values == (85.0,)
    assert state.step(86.0, 1.0, T0) is None  # still active: no repeat
    end = state.step(70.0, 2.0, T0 + timedelta(seconds=2))
    assert end is not None and end.kind == "end"
    assert end.occurrence_id == start.occurrence_id and len(start.occurrence_id) == 12
    assert end.occurred_on == T0 and end.at == T0 + timedelta(seconds=2)
    again = state.step(90.0, 3.0, T0)
    assert again is not None and again.occurrence_id != start.occurrence_id


@pytest.mark.parametrize(
    ("condition", "threshold", "active", "normal"),
    [
        ("==", True, True, False),
        ("!=", "RUN", "STOP", "RUN"),
        (">", 80.0, 80.5, 80.0),
        (">=", 80.0, 80.0, 79.9),
        ("<", 2.0, 1.9, 2.0),
        ("<=", 2.0, 2.0, 2.1),
        ("between", (10.0, 20.0), 15.0, 25.0),
        ("outside", (10.0, 20.0), 25.0, 15.0),
    ],
)
def test_conditions(condition: str, threshold: Any, active: Any, normal: Any) -> None:
    run = Run(condition=condition, threshold=threshold).feed((0, normal), (1, active), (2, normal))
    assert run.events == [(1, "start"), (2, "end")]


def test_on_delay_is_respected_and_a_lapse_resets_it() -> None:
    run = Run(on_delay=5.0).feed((0, 85.0), (4.9, 85.0))
    assert run.events == []
    assert run.state.state is State.PENDING
    run.feed((5.0, 85.0))
    assert run.events == [(5.0, "start")]

    lapsed = Run(on_delay=5.0).feed((0, 85.0), (3, 70.0), (4, 85.0), (8.9, 85.0))
    assert lapsed.events == []  # the lapse at 3 s restarted the delay at 4 s
    lapsed.feed((9.0, 85.0))
    assert lapsed.events == [(9.0, "start")]


def test_off_delay_and_a_return_mid_delay() -> None:
    run = Run(off_delay=3.0).feed((0, 85.0), (1, 70.0), (2, 85.0), (3, 70.0), (5.9, 70.0))
    assert run.events == [(0, "start")]  # returned at 2 s: clearing restarted at 3 s
    run.feed((6.0, 70.0))
    assert run.events == [(0, "start"), (6.0, "end")]


def test_deadband_edges() -> None:
    run = Run(deadband=2.0).feed((0, 81.0), (1, 80.0), (2, 78.0))
    assert run.events == [(0, "start")]  # ">" with deadband 2 ends only below 78
    run.feed((3, 77.99))
    assert run.events == [(0, "start"), (3, "end")]
    run.feed((4, 80.0))  # restarting needs the trigger condition itself (> 80)
    assert run.events == [(0, "start"), (3, "end")]
    below = Run(condition="<", threshold=2.0, deadband=0.5).feed((0, 1.0), (1, 2.5), (2, 2.51))
    assert below.events == [(0, "start"), (2, "end")]
    band = Run(condition="between", threshold=(10.0, 20.0), deadband=1.0)
    band.feed((0, 15.0), (1, 20.9), (2, 21.1))
    assert band.events == [(0, "start"), (2, "end")]


def test_values_of_the_wrong_type_or_nan_change_nothing() -> None:
    run = Run().feed((0, "broken"), (1, 85.0), (2, float("nan")), (3, 85.0))
    assert run.events == [(1, "start")]


def test_engine_skips_alarms_without_fresh_values() -> None:
    from agent.alarms.engine import AlarmEngine

    engine = AlarmEngine([AlarmState(rule())])
    assert [t.kind for t in engine.evaluate("plc", {"plc.oil_temp": 90.0}, 0.0, T0)] == ["start"]
    assert engine.evaluate("plc", {}, 1.0, T0) == []  # source unreadable: stays active, no end
    assert [s.rule.name for s in engine.active()] == ["Oil hot"]


def test_public_id_is_stable_and_per_alarm() -> None:
    assert rule().public_id == rule().public_id
    assert rule().public_id != rule(name="Oil very hot").public_id
    assert len(rule().public_id) == 12 and rule().public_id.isalnum()


@given(
    st.lists(st.tuples(st.floats(0.01, 3.0), st.floats(60.0, 100.0)), max_size=60),
    st.floats(0.0, 5.0),
    st.floats(0.0, 5.0),
    st.floats(0.0, 5.0),
)
def test_starts_and_ends_alternate_and_respect_delays(
    steps: list[tuple[float, float]], on_delay: float, off_delay: float, deadband: float
) -> None:
    state = AlarmState(rule(on_delay=on_delay, off_delay=off_delay, deadband=deadband))
    now, kinds = 0.0, []
    since_true: float | None = None  # when the trigger condition last became true
    for gap, value in steps:
        now += gap
        if value <= 80.0:
            since_true = None
        elif since_true is None:
            since_true = now
        transition = state.step(value, now, T0)
        if transition is not None:
            kinds.append(transition.kind)
            if transition.kind == "start":
                assert since_true is not None and now - since_true >= on_delay
    assert kinds == ["start", "end"] * (len(kinds) // 2) + ["start"] * (len(kinds) % 2)


def test_unchanged_values_are_not_evaluated_again_unless_a_delay_runs() -> None:
    from dataclasses import replace

    from agent.alarms.engine import AlarmEngine

    calls: list[float] = []

    def counting(value: Any) -> bool:
        calls.append(value)
        return value > 80.0

    engine = AlarmEngine([AlarmState(replace(rule(on_delay=2.0), triggers=counting))])
    for at in (0.0, 1.0, 2.0):  # normal, unchanged: evaluated once
        engine.evaluate("plc", {"plc.oil_temp": 70.0}, at, T0)
    assert calls == [70.0]
    for at in (3.0, 4.0, 5.0):  # pending: the on-delay needs every cycle, changed or not
        engine.evaluate("plc", {"plc.oil_temp": 90.0}, at, T0)
    assert calls == [70.0, 90.0, 90.0, 90.0]
    assert [s.rule.name for s in engine.active()] == ["Oil hot"]


# --- formula alarms ----------------------------------------------------------------------


def test_formula_alarm_starts_and_ends_with_every_input() -> None:
    state = AlarmState(rule(formula="$plc.oil_temp 80 > $plc.pump_on true == &&"))
    assert state.rule.kind == "formula"
    assert [i.key for i in state.rule.inputs] == ["plc.oil_temp", "plc.pump_on"]
    assert state.step((85.0, False), 0, T0) is None
    start = state.step((85.0, True), 1, T0)
    assert start is not None and start.values == (85.0, True)
    end = state.step((85.0, False), 2, T0)
    assert end is not None and end.kind == "end" and end.occurrence_id == start.occurrence_id


def test_formula_division_by_zero_keeps_the_state() -> None:
    run = Run(formula="$plc.oil_temp $plc.oil_temp / 1 ==")
    run.feed((0, (5.0,)), (1, (0.0,)), (2, (0.0,)))
    assert run.events == [(0, "start")]  # 0/0 decides nothing: no end


def test_formula_across_values_in_the_engine_waits_for_all_inputs() -> None:
    from agent.alarms.engine import AlarmEngine

    cfg = config(
        {"name": "Hot and running", "formula": "$plc.oil_temp 80 > $plc.pump_on true == &&"}
    )
    engine = AlarmEngine.from_config(cfg)
    assert engine.evaluate("plc", {"plc.oil_temp": 90.0}, 0, T0) == []  # pump unknown: stale
    [start] = engine.evaluate("plc", {"plc.oil_temp": 90.0, "plc.pump_on": True}, 1, T0)
    assert start.values == (90.0, True)


# --- stale input -------------------------------------------------------------------------


def test_stale_input_freezes_running_delays() -> None:
    from agent.alarms.engine import AlarmEngine

    engine = AlarmEngine([AlarmState(rule(on_delay=5.0))])
    hot = {"plc.oil_temp": 90.0}
    assert engine.evaluate("plc", hot, 0, T0) == []  # pending from 0
    assert engine.evaluate("plc", hot, 2, T0) == []
    for at in range(3, 60):  # the source is unreadable for a long while
        assert engine.evaluate("plc", {}, at, T0) == []
    assert engine.evaluate("plc", hot, 60, T0) == []  # 2 s counted before, 0 during the gap
    assert engine.evaluate("plc", hot, 62.9, T0) == []  # 2 + 2.9 < 5
    [start] = engine.evaluate("plc", hot, 63, T0)
    assert start.kind == "start"


# --- flapping ----------------------------------------------------------------------------


def flap(engine: Any, samples: list[tuple[float, float]]) -> list[tuple[float, str]]:
    out = []
    for at, value in samples:
        out += [(at, t.kind) for t in engine.evaluate("plc", {"plc.oil_temp": value}, at, T0)]
    return out


def test_flapping_is_capped_and_the_final_state_is_delivered() -> None:
    from agent.alarms.engine import AlarmEngine

    state = AlarmState(rule(max_notifications=2, flap_window=100.0))
    engine = AlarmEngine([state])
    samples = [(t, 90.0 if t % 2 == 0 else 70.0) for t in range(0, 9)]  # 5 starts, 4 ends
    notified = flap(engine, samples)
    assert notified == [(0, "start"), (1, "end"), (2, "start"), (3, "end")]
    assert state.suppressed == 5  # starts at 4, 6, 8 and ends at 5, 7
    assert state.active and state.owed  # active since 8, nobody told yet
    assert flap(engine, [(50, 90.0)]) == []  # window still full, value unchanged
    [(at, kind)] = flap(engine, [(100, 90.0)])  # the first start left the window
    assert (at, kind) == (100, "start")
    assert not state.owed
    assert flap(engine, [(101, 70.0)]) == [(101, "end")]  # its end is never suppressed


def test_final_normal_state_needs_no_message() -> None:
    from agent.alarms.engine import AlarmEngine

    state = AlarmState(rule(max_notifications=1, flap_window=100.0))
    engine = AlarmEngine([state])
    assert flap(engine, [(0, 90.0), (1, 70.0), (2, 90.0), (3, 70.0)]) == [(0, "start"), (1, "end")]
    assert flap(engine, [(200, 70.0)]) == []  # the receiver already knows it is normal
    assert state.suppressed == 2


# --- shelving and out of service ------------------------------------------------------------


def test_a_shelved_alarm_notifies_no_start_and_is_notified_when_its_shelf_ends() -> None:
    from agent.alarms.engine import AlarmEngine
    from agent.alarms.states import Shelf

    state = AlarmState(rule())
    engine = AlarmEngine([state])
    state.shelf = Shelf(until=100.0, reason="sensor swap")
    assert flap(engine, [(0, 90.0), (10, 70.0), (20, 91.0)]) == []  # starts and ends, silent
    assert state.suppressed == 0  # not flapping: a person chose this
    assert flap(engine, [(99, 91.0)]) == []
    assert flap(engine, [(100, 91.0)]) == [(100, "start")]  # still active at the shelf's end
    assert flap(engine, [(101, 70.0)]) == [(101, "end")]


def test_an_alarm_notified_before_its_shelf_still_sends_its_end() -> None:
    from agent.alarms.engine import AlarmEngine
    from agent.alarms.states import Shelf

    state = AlarmState(rule())
    engine = AlarmEngine([state])
    assert flap(engine, [(0, 90.0)]) == [(0, "start")]
    state.shelf = Shelf(until=100.0)
    assert flap(engine, [(5, 70.0)]) == [(5, "end")]  # no alert stays open
    assert flap(engine, [(6, 90.0), (200, 90.0)]) == [(200, "start")]


def test_an_alarm_out_of_service_is_never_evaluated() -> None:
    from agent.alarms.engine import AlarmEngine

    cfg = config(
        {"name": "Oil hot", "variable": "plc.oil_temp", "condition": ">", "threshold": 80.0},
        {"name": "Oil warm", "variable": "plc.oil_temp", "condition": ">", "threshold": 60.0,
         "enabled": False},
    )  # fmt: skip
    engine = AlarmEngine.from_config(cfg)
    assert [s.rule.name for s in engine.states] == ["Oil hot"]
    assert [r.name for r in engine.out_of_service] == ["Oil warm"]
    out = engine.evaluate("plc", {"plc.oil_temp": 90.0}, 0.0, T0)
    assert [t.rule.name for t in out] == ["Oil hot"]


# --- restart -----------------------------------------------------------------------------


def test_snapshot_and_restore_keep_an_active_notified_alarm() -> None:
    from agent.alarms.engine import AlarmEngine

    engine = AlarmEngine([AlarmState(rule())])
    [start] = engine.evaluate("plc", {"plc.oil_temp": 90.0}, 0, T0)
    [dirty] = engine.take_dirty()
    saved = {dirty.rule.public_id: dirty.snapshot()}
    assert saved[dirty.rule.public_id]["active"] and saved[dirty.rule.public_id]["notified"]

    again = AlarmEngine([AlarmState(rule())])
    assert again.restore(saved | {"gone12345678": {"active": True}}) == ["gone12345678"]
    assert again.evaluate("plc", {"plc.oil_temp": 91.0}, 0, T0) == []  # still active: no repeat
    [end] = again.evaluate("plc", {"plc.oil_temp": 70.0}, 1, T0)
    assert end.kind == "end" and end.occurrence_id == start.occurrence_id
    assert end.occurred_on == start.occurred_on
