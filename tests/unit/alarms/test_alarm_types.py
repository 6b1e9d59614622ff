"""IXON's other alarm types (fault words, bit patterns, rates of change), in simulated time
through ``ixon-agent test`` (the core step ``run`` uses), and their messages and restarts."""

from __future__ import annotations

import io
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alarms.engine import AlarmEngine
from agent.config import Config, ConfigError, load_config
from agent.core import step
from agent.formats import build
from agent.outbox.store import Store
from agent.sources.base import PollResult
from agent.tools.alarmtest import EXIT_PASSED, run_files

CONFIG = """
[agent]
name = "Types"
public_id = "TypesAgent01"

[[sources]]
name = "plc"
host = "127.0.0.1"
poll_interval = "1s"
offline_after = 0
  [[sources.variables]]
  name = "fault_word"
  label = "Drive fault word"
  register = "holding"
  address = 0
  type = "int"
  signed = false
  [[sources.variables]]
  name = "status_word"
  register = "holding"
  address = 1
  type = "int"
  signed = false
  [[sources.variables]]
  name = "oil_temp"
  label = "Oil temperature"
  register = "holding"
  address = 2
  type = "float"
  unit = "degC"

[[alarms]]
name = "Drive fault"
type = "error_bits"
variable = "plc.fault_word"
severity = "medium"
instructions = "Check the drive's display."
  [alarms.bits]
  0 = "Overcurrent"
  3 = { text = "Lubrication", severity = "high", instructions = "Refill it." }

[[alarms]]
name = "Manual with guard open"
type = "bit_pattern"
variable = "plc.status_word"
mask = 0x00F0
pattern = 0x0030
severity = "low"

[[alarms]]
name = "Oil heating too fast"
type = "rate_of_change"
variable = "plc.oil_temp"
condition = ">"
threshold = 5.0
per = "1m"
window = "30s"
severity = "medium"

[[webhooks]]
name = "all"
url = "http://127.0.0.1:9/all"

[[webhooks]]
name = "urgent"
url = "http://127.0.0.1:9/urgent"
min_severity = "high"
"""

TESTS = """
config = "agent.toml"

[[tests]]
name = "two fault bits rise and fall independently; one overrides the severity"
duration = "60s"
  [tests.values]
  "plc.fault_word" = [["0s", 0], ["10s", 0x0001], ["20s", 0x0009], ["30s", 0x0008], ["40s", 0]]
  [[tests.expect]]
  alarm = "Drive fault: Overcurrent"
  start = "10s"
  end = "30s"
  value = 1
  tolerance = "0s"
  webhooks = ["all"]                # medium: not for the urgent webhook
  [[tests.expect]]
  alarm = "Drive fault: Lubrication"
  start = "20s"
  end = "40s"
  value = "0x0009"                  # as the message gives it (or 9)
  tolerance = "0s"
  webhooks = ["all", "urgent"]      # its own severity: high

[[tests]]
name = "a pattern matches, unmatches, and matches again"
duration = "40s"
  [tests.values]
  "plc.status_word" = [["0s", 0x0010], ["10s", 0x0031], ["20s", 0x0071], ["30s", 0x8030]]
  [[tests.expect]]
  alarm = "Manual with guard open"
  start = "10s"                     # 0x31 & 0xF0 == 0x30
  end = "20s"                       # 0x71 & 0xF0 == 0x70
  tolerance = "0s"
  [[tests.expect]]
  alarm = "Manual with guard open"
  start = "30s"                     # bits outside the mask do not matter
  tolerance = "0s"

[[tests]]
name = "a ramp crosses the rate threshold and returns"
duration = "300s"
  [tests.values]                    # 10 degC per minute from 60 s to 180 s, flat around it
  "plc.oil_temp" = { points = [["0s", 60.0], ["60s", 60.0], ["180s", 80.0], ["300s", 80.0]], interpolate = "linear" }
  [[tests.expect]]
  alarm = "Oil heating too fast"
  start = "76s"                     # over 30 s, more than 5 degC/min from 75 s on
  end = "195s"                      # and no more from 195 s
  tolerance = "1s"

[[tests]]
name = "a jump while the source is offline is not a rate"
duration = "200s"
  [tests.values]
  "plc.oil_temp" = [["0s", 60.0], ["50s", 90.0]]
  [[tests.offline]]
  source = "plc"
  from = "20s"
  to = "80s"                        # across the gap: 30 degC in 60 s, 30 degC/min
"""


def write(tmp_path: Path, config: str = CONFIG) -> Path:
    (tmp_path / "agent.toml").write_text(config)
    path = tmp_path / "types.test.toml"
    path.write_text(TESTS)
    return path


def test_each_type_notifies_at_its_time_in_simulated_time(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run_files([write(tmp_path)], out=out, err=out)
    assert code == EXIT_PASSED, out.getvalue()
    assert "4 of 4 test(s) passed" in out.getvalue()


def test_without_the_gap_rule_the_same_jump_would_page(tmp_path: Path) -> None:
    """The offline test above can fail: the same jump with the source online pages."""
    path = write(tmp_path)
    path.write_text(path.read_text().replace("from = \"20s\"", "from = \"500s\"").replace(
        'to = "80s"', 'to = "600s"'))  # fmt: skip
    out = io.StringIO()
    assert run_files([path], out=out, err=out) != EXIT_PASSED
    assert "Oil heating too fast: start 50s" in out.getvalue()


T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
TYPES = Config.model_validate(tomllib.loads(CONFIG))


def poll(values: dict[str, int | float], answered: bool = True) -> PollResult:
    return PollResult("plc", values if answered else {}, answered=answered)


def test_the_messages_carry_the_word_in_hex_the_bit_and_the_rate_per_unit(tmp_path: Path) -> None:
    config = load_config(write(tmp_path).with_name("agent.toml"))
    engine = AlarmEngine.from_config(config)
    sent = []
    for t, word, oil in ((0, 0, 60.0), (30, 0x0008, 60.0), (60, 0x0008, 66.0)):
        done = step(engine, config, poll({"plc.fault_word": word, "plc.status_word": 0,
                                         "plc.oil_temp": oil}), t, t, T0)  # fmt: skip
        sent += done.transitions
    bit, rate = sent
    assert bit.rule.name == "Drive fault: Lubrication" and bit.rule.severity == "high"
    assert bit.rule.instructions == "Refill it."
    body = build(config.agent, config.webhooks[0], bit, T0)
    extra = {e["key"]: e["value"] for e in body["longContent"]["extraInformation"]}
    assert extra["Drive fault word"] == "0x0008" and extra["bit"] == 3
    assert extra["condition"] == "bit 3 set" and extra["variable"] == "plc.fault_word"
    assert body["alarm"]["name"] == "Drive fault: Lubrication"
    body = build(config.agent, config.webhooks[0], rate, T0)
    extra = {e["key"]: e["value"] for e in body["longContent"]["extraInformation"]}
    assert extra["Oil temperature rate"] == 12.0 and extra["unit"] == "degC/min"
    assert extra["condition"] == "rate > 5.0 degC/min (over 30 s)"


def test_each_bit_has_its_own_stable_id_and_occurrences(tmp_path: Path) -> None:
    config = load_config(write(tmp_path).with_name("agent.toml"))
    engine = AlarmEngine.from_config(config)
    ids = {s.rule.name: s.rule.public_id for s in engine.states}
    again = {s.rule.name: s.rule.public_id for s in AlarmEngine.from_config(config).states}
    assert ids == again and len(set(ids.values())) == len(ids) == 4
    renamed = load_config(config_path(tmp_path, CONFIG.replace('"Overcurrent"', '"Over current"')))
    moved = {s.rule.name: s.rule.public_id for s in AlarmEngine.from_config(renamed).states}
    assert moved["Drive fault: Over current"] == ids["Drive fault: Overcurrent"]  # name + bit
    done = step(engine, config, poll({"plc.fault_word": 9, "plc.status_word": 0,
                                      "plc.oil_temp": 60.0}), 0, 0, T0)  # fmt: skip
    first, second = done.transitions
    assert first.occurrence_id != second.occurrence_id


def config_path(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other" / "agent.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_a_restart_while_a_bit_is_active_sends_nothing_again(tmp_path: Path) -> None:
    """As ``run`` does: states saved in the outbox's transaction, restored at start."""
    config = load_config(write(tmp_path).with_name("agent.toml"))
    values = {"plc.fault_word": 0x0009, "plc.status_word": 0, "plc.oil_temp": 60.0}
    store = Store(tmp_path / "agent.db")
    engine = AlarmEngine.from_config(config)
    done = step(engine, config, poll(values), 0, 0, T0)
    assert len(done.transitions) == 2
    store.record(done.states, done.messages)
    store.close()

    store = Store(tmp_path / "agent.db")  # the restart
    engine = AlarmEngine.from_config(config)
    assert engine.restore(store.alarm_states()) == []
    assert step(engine, config, poll(values), 100, 100, T0).transitions == []
    done = step(engine, config, poll(values | {"plc.fault_word": 0x0008}), 101, 101, T0)
    [end] = done.transitions  # the overcurrent bit ends, under its first occurrence
    assert end.kind == "end" and end.rule.name == "Drive fault: Overcurrent"
    store.close()


def test_a_rate_decides_nothing_until_its_samples_span_the_window(tmp_path: Path) -> None:
    config = load_config(write(tmp_path).with_name("agent.toml"))
    engine = AlarmEngine.from_config(config)
    [rate] = [s for s in engine.states if s.rule.rate is not None]
    for t in range(0, 30):  # 60 degC a minute, for 29 s: not yet a window's worth
        step(engine, config, poll({"plc.oil_temp": 60.0 + t}), t, t, T0)
        assert rate.last_value is None
    done = step(engine, config, poll({"plc.oil_temp": 90.0}), 30, 30, T0)
    assert [t.rule.name for t in done.transitions] == ["Oil heating too fast"]
    assert rate.last_value == 60.0


BAD = [
    ('variable = "plc.oil_temp"\n  [alarms.bits]\n  0 = "x"', "type = \"error_bits\"",
     "alarms[0] (Bad).variable: type 'error_bits' reads the bits of an int variable; plc.oil_temp is float"),
    ('variable = "plc.oil_temp"\nmask = 1\npattern = 1', "type = \"bit_pattern\"",
     "alarms[0] (Bad).variable: type 'bit_pattern' reads the bits of an int variable; plc.oil_temp is float"),
    ('variable = "plc.flag"\ncondition = ">"\nthreshold = 1\nper = "1m"\nwindow = "30s"',
     'type = "rate_of_change"',
     "alarms[0] (Bad).variable: a rate of change needs a number; plc.flag is bool"),
    ('variable = "plc.word"\n  [alarms.bits]\n  16 = "Past the end"', 'type = "error_bits"',
     "alarms[0] (Bad).bits.16: bit 16 is past the 16 bits of plc.word (0 to 15)"),
    ('variable = "plc.word"\nmask = 0x1F0000\npattern = 0', 'type = "bit_pattern"',
     "alarms[0] (Bad).mask: 0x1f0000 does not fit the 16 bits of plc.word"),
    ('variable = "plc.word"\nmask = 0x00F0\npattern = 0x0130', 'type = "bit_pattern"',
     "alarms[0] (Bad).pattern: 0x130 has bits outside the mask 0xf0 (0x100): it could never match"),
    ('variable = "plc.oil_temp"\ncondition = ">"\nthreshold = 1\nper = "0s"\nwindow = "30s"',
     'type = "rate_of_change"', "alarms[0] (Bad).per: Input should be greater than 0"),
    ('variable = "plc.oil_temp"\ncondition = ">"\nthreshold = 1\nper = "1m"\nwindow = "-5s"',
     'type = "rate_of_change"', "alarms[0] (Bad).window: "),
    ('variable = "plc.word"\n  [alarms.bits]\n  0 = "Jam"\n  1 = { text = "Jam" }',
     'type = "error_bits"', "alarms[0] (Bad).bits.1: text 'Jam' is bit 0's too"),
    ('variable = "plc.word"', 'type = "error_bits"', "alarms[0] (Bad).bits: required for error_bits"),
    ('variable = "plc.word"\nmask = 0x00F0', 'type = "bit_pattern"',
     "alarms[0] (Bad).pattern: required for type 'bit_pattern'"),
    ('variable = "plc.oil_temp"\ncondition = ">"\nthreshold = 1\nper = "1m"', 'type = "rate_of_change"',
     "alarms[0] (Bad).window: required for type 'rate_of_change'"),
    ('variable = "plc.oil_temp"\ncondition = ">"\nthreshold = 1\nper = "1m"\nwindow = "500ms"',
     'type = "rate_of_change"',
     "alarms[0] (Bad).window: 0.5 s is shorter than the poll interval of plc (1 s)"),
    ('variable = "plc.word"\nmask = 0x00F0\npattern = 0x0030\n  [alarms.bits]\n  0 = "x"',
     'type = "bit_pattern"', "alarms[0] (Bad).bits: only for type 'error_bits'"),
    ('variable = "plc.word"\ncondition = "=="\nthreshold = 1\n  [alarms.bits]\n  0 = "x"',
     'type = "error_bits"', "alarms[0] (Bad).condition: not used with type 'error_bits'"),
    ('variable = "plc.scaled"\n  [alarms.bits]\n  0 = "x"', 'type = "error_bits"',
     "alarms[0] (Bad).variable: plc.scaled is scaled (factor/offset)"),
    ('variable = "plc.word"\n  [alarms.bits]\n  0 = { text = "x", colour = "red" }',
     'type = "error_bits"', "alarms[0] (Bad).bits.0.colour: unknown key"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "kind", "problem"), BAD)
def test_check_rejects_each_invalid_form_with_its_place(
    tmp_path: Path, body: str, kind: str, problem: str
) -> None:
    text = f"""
[agent]
name = "Bad"
[[sources]]
name = "plc"
host = "127.0.0.1"
  [[sources.variables]]
  name = "word"
  register = "holding"
  address = 0
  type = "int"
  [[sources.variables]]
  name = "oil_temp"
  register = "holding"
  address = 2
  type = "float"
  [[sources.variables]]
  name = "flag"
  register = "coil"
  address = 0
  type = "bool"
  [[sources.variables]]
  name = "scaled"
  register = "holding"
  address = 4
  type = "int"
  factor = 0.1

[[alarms]]
name = "Bad"
{kind}
{body}
"""
    with pytest.raises(ConfigError) as caught:
        load_config(config_path(tmp_path, text))
    assert problem in str(caught.value), str(caught.value)


@given(words=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_each_bit_follows_its_own_bit_whatever_the_other_bits_do(words: list[int]) -> None:
    """Any sequence of fault words: a bit's alarm is active exactly while its bit is set,
    its starts and ends alternate under one occurrence each, and no other bit's change
    touches it."""
    engine = AlarmEngine.from_config(TYPES)
    seen: dict[str, list[tuple[str, str]]] = {}
    for t, word in enumerate(words):
        done = step(engine, TYPES, poll({"plc.fault_word": word}), t, t, T0)
        for transition in done.transitions:
            seen.setdefault(transition.rule.name, []).append(
                (transition.kind, transition.occurrence_id)
            )
        for state in engine.states:
            if state.rule.bit is not None:
                assert state.active == bool(word >> state.rule.bit & 1)
    for events in seen.values():
        kinds = [kind for kind, _ in events]
        assert kinds == ["start", "end"] * (len(kinds) // 2) + ["start"] * (len(kinds) % 2)
        pairs = zip(events[::2], events[1::2], strict=False)
        assert all(start[1] == end[1] for start, end in pairs)
