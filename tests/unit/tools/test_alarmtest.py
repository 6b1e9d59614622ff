"""``ixon-agent test`` in simulated time: the example file, each alarm feature at its time,
failures with their diff, bad files located, JUnit XML, and skipped polls changing nothing."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.tools.alarmtest import EXIT_BAD_FILE, EXIT_FAILED, EXIT_PASSED, run_files
from agent.tools.alarmtest.simulate import simulate
from agent.tools.alarmtest.spec import load
from tests.conftest import REPO

CONFIG = """
[agent]
name = "Test line"
public_id = "TestLine0001"

[[sources]]
name = "plc"
host = "127.0.0.1"
poll_interval = "1s"
offline_after = "10s"
  [[sources.variables]]
  name = "temp"
  register = "holding"
  address = 0
  type = "float"
  [[sources.variables]]
  name = "run"
  register = "coil"
  address = 0
  type = "bool"
  [[sources.variables]]
  name = "level"
  register = "holding"
  address = 2
  type = "int"

[[alarms]]
name = "Hot"
variable = "plc.temp"
condition = ">"
threshold = 80.0
on_delay = "5s"
off_delay = "3s"
deadband = 2.0
severity = "high"

[[alarms]]
name = "Hot while running"
formula = "$plc.temp 70 > $plc.run true == &&"
severity = "medium"

[[alarms]]
name = "Level high"
variable = "plc.level"
condition = ">"
threshold = 5
severity = "low"
max_notifications = 2
flap_window = "60s"

[[webhooks]]
name = "ilert"
url = "http://127.0.0.1:9/api/v1/events/ixon/k"

[[webhooks]]
name = "events"
url = "http://127.0.0.1:9/api/events"
format = "ilert-events"
integration_key = "k"
min_severity = "high"
"""


def write(tmp_path: Path, tests: str) -> Path:
    (tmp_path / "agent.toml").write_text(CONFIG)
    path = tmp_path / "alarms.test.toml"
    path.write_text('config = "agent.toml"\n' + tests)
    return path


def run(path: Path, **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_files([path], out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def test_the_example_beside_agent_toml_passes() -> None:
    code, out, err = run(REPO / "alarms.test.toml")
    assert code == EXIT_PASSED, out + err
    assert out.count("PASS") == 5


FEATURES = """
[[tests]]
name = "on and off delays with a deadband"
duration = "40s"
  [tests.values]
  "plc.temp" = [["0s", 60.0], ["4s", 85.0], ["7s", 60.0], ["10s", 85.0], ["20s", 79.0], ["25s", 77.0], ["27s", 85.0], ["28s", 70.0]]
  [[tests.expect]]
  alarm = "Hot"
  start = "15s"                  # 4..7 s is shorter than on_delay; 10 s + 5 s
  end = "31s"                    # 79 is inside the deadband; below 78 at 25 s, back at 27 s
  value = 85.0                   # (the off delay restarts), below at 28 s + 3 s
  tolerance = "0s"
  webhooks = ["ilert", "events"]

[[tests]]
name = "a formula and a low alarm only the ilert webhook takes"
duration = "20s"
  [tests.values]
  "plc.temp" = [["0s", 75.0], ["12s", 60.0]]
  "plc.run" = [["0s", false], ["5s", true]]
  "plc.level" = [["0s", 0], ["2s", 9], ["3s", 0]]
  [[tests.expect]]
  alarm = "Hot while running"
  start = "5s"
  end = "12s"
  webhooks = ["ilert"]
  [[tests.expect]]
  alarm = "Level high"
  start = "2s"
  end = "3s"

[[tests]]
name = "flapping: two starts a minute, then the state it ends in"
duration = "90s"
  [tests.values]
  "plc.level" = [["0s", 9], ["1s", 0], ["2s", 9], ["3s", 0], ["4s", 9], ["5s", 0], ["6s", 9]]
  [[tests.expect]]
  alarm = "Level high"
  start = "0s"
  end = "1s"
  [[tests.expect]]
  alarm = "Level high"
  start = "2s"
  end = "3s"
  [[tests.expect]]
  alarm = "Level high"           # held back at 4 s and 6 s; still active when the window
  start = "60s"                  # reopens, so it is told then
  end = "(active)"

[[tests]]
name = "the source goes silent"
duration = "40s"
  [[tests.offline]]
  source = "plc"
  from = "10s"
  to = "30s"
  [[tests.expect]]
  alarm = "Source plc offline"
  start = "19s"                  # last answer at 9 s, plus offline_after 10 s
  end = "30s"
  tolerance = "0s"
"""


def test_each_alarm_feature_is_sent_at_its_time(tmp_path: Path) -> None:
    path = write(tmp_path, FEATURES.replace('end = "(active)"\n', ""))
    code, out, err = run(path)
    assert code == EXIT_PASSED, out + err
    assert out.count("PASS") == 4 and "4 of 4 test(s) passed" in out


def test_a_missing_and_an_unexpected_notification_each_fail_with_a_diff(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[tests]]
name = "expects the wrong things"
duration = "30s"
  [tests.values]
  "plc.temp" = [["0s", 60.0], ["10s", 85.0]]
  "plc.level" = [["0s", 0], ["20s", 9]]
  [[tests.expect]]
  alarm = "Hot"
  start = "10s"
  tolerance = "1s"
""",
    )
    code, out, _ = run(path)
    assert code == EXIT_FAILED
    assert "FAIL  expects the wrong things" in out
    rows = out.splitlines()
    header = next(r for r in rows if "expected" in r and "| sent" in r)
    assert header.index("|") == rows[rows.index(header) + 1].index("|")  # side by side
    assert "Hot: start 10s, end (active) ±1s  | Hot: start 15s, end (active), value 85" in out
    assert "(nothing expected)" in out and "Level high: start 20s, end (active)" in out
    assert "0 of 1 test(s) passed" in out


@pytest.mark.parametrize(
    ("tests", "problem"),
    [
        ('[[tests]]\nname = "t"\nduration = "5s"\n[tests.values]\n"plc.oil_tmp" = 1.0\n',
         'tests[0].values."plc.oil_tmp": no such variable (known: plc.level, plc.run, plc.temp)'),
        ('[[tests]]\nname = "t"\nduration = "5s"\n[tests.values]\n"plc.run" = 3\n',
         'tests[0].values."plc.run": at 0 s: 3 is not true/false (bool variable)'),
        ('[[tests]]\nname = "t"\nduration = "5s"\n[[tests.expect]]\nalarm = "Cold"\nstart = "1s"\n',
         "tests[0].expect[0].alarm: no alarm 'Cold'"),
        ('[[tests]]\nname = "t"\nduration = "5s"\n[[tests.offline]]\nsource = "dcs"\nfrom = "1s"\nto = "2s"\n',
         "tests[0].offline[0].source: no source 'dcs'"),
        ('[[tests]]\nname = "t"\nduration = "soon"\n', "tests[0].duration: Value error"),
        ('[[tests]]\nname = "t"\nduration = "5s"\ncolour = 1\n', "tests[0].colour: Extra inputs"),
        ('[[tests]\n', "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_test_file_exits_2_and_names_the_place(
    tmp_path: Path, tests: str, problem: str
) -> None:
    code, out, err = run(write(tmp_path, tests))
    assert code == EXIT_BAD_FILE and problem in err, err
    assert "Traceback" not in err and "PASS" not in out


def test_a_test_file_whose_config_is_wrong_says_so(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('config = "missing.toml"\n[[tests]]\nname = "t"\nduration = "1s"\n')
    code, _, err = run(path)
    assert code == EXIT_BAD_FILE and "config:" in err and "missing.toml" in err


def test_junit_xml_for_ci(tmp_path: Path) -> None:
    path = write(tmp_path, FEATURES.replace('end = "(active)"\n', 'end = "80s"\n'))
    junit = tmp_path / "report.xml"
    code, _, _ = run(path, junit_path=junit)
    assert code == EXIT_FAILED
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("4", "1")
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [
        "flapping: two starts a minute, then the state it ends in"
    ]
    text = failed[0].find("failure").text or ""  # type: ignore[union-attr]
    assert "Level high: start 60s, end 80s" in text


levels = st.lists(st.tuples(st.integers(1, 40), st.integers(0, 12)), max_size=12)
temps = st.lists(
    st.tuples(st.integers(1, 40), st.sampled_from([60.0, 75.0, 79.0, 85.0])), max_size=12
)
windows = st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20)), max_size=2)


@settings(max_examples=60)
@given(levels=levels, temps=temps, runs=st.lists(st.integers(1, 60), max_size=4), gaps=windows)
def test_skipping_settled_polls_sends_exactly_what_polling_every_interval_sends(
    tmp_path_factory: pytest.TempPathFactory,
    levels: list[tuple[int, int]], temps: list[tuple[int, float]], runs: list[int],
    gaps: list[tuple[int, int]],
) -> None:  # fmt: skip
    def series(points: list[tuple[int, Any]], first: Any) -> str:
        times = sorted({t: v for t, v in points}.items())
        return repr([["0s", first], *[[f"{t}s", v] for t, v in times]]).replace("'", '"')

    run_points = [(t, i % 2 == 0) for i, t in enumerate(sorted(set(runs)))]
    offline = "".join(
        f'[[tests.offline]]\nsource = "plc"\nfrom = "{a}s"\nto = "{a + d}s"\n' for a, d in gaps
    )
    body = (
        f'[[tests]]\nname = "random"\nduration = "120s"\n{offline}[tests.values]\n'
        f'"plc.level" = {series(levels, 0)}\n"plc.temp" = {series(temps, 60.0)}\n'
        f'"plc.run" = {series(run_points, True).replace("True", "true").replace("False", "false")}\n'
    )
    path = write(tmp_path_factory.mktemp("prop"), body)
    file = load(path)
    [test] = file.tests
    sparse, sparse_polls = simulate(file.config, test)
    dense, dense_polls = simulate(file.config, test, dense=True)

    def seen(sent: list[Any]) -> list[tuple[Any, ...]]:
        return [(s.at, s.webhook, s.kind, s.alarm, s.value) for s in sent]

    assert seen(sparse) == seen(dense)
    assert sparse_polls <= dense_polls
