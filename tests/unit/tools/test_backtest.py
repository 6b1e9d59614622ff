"""``ixon-agent replay``: agreement with ``test``, --compare, bad data, long form, the sample."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from agent import cli
from agent.config import load_config
from agent.tools.alarmtest.simulate import simulate
from agent.tools.alarmtest.spec import load
from agent.tools.backtest.data import DataError, Reading, rows
from agent.tools.backtest.replay import replay
from tests.conftest import REPO

DATA = REPO / "tests" / "data"


def test_replay_and_test_send_the_same_for_the_same_series(tmp_path: Path) -> None:
    """Each test of the example file, written as a CSV at the poll interval, replays into
    exactly the notifications ``ixon-agent test`` sends."""
    file = load(REPO / "alarms.test.toml")
    keys = [key for key, _, _ in file.config.variables()]
    for test in file.tests:
        if test.offline:
            continue  # an outage is a gap in data: covered below
        path = tmp_path / "series.csv"
        lines = ["time," + ",".join(keys)]
        steps = int(test.duration / 0.5)
        for n in range(steps + 1):
            t = n * 0.5
            lines.append(
                f"{1_795_000_000 + t}," + ",".join(str(test.series[k].at(t)) for k in keys)
            )
        path.write_text("\n".join(lines) + "\n")
        replayed = replay(file.config, rows(path, file.config, Reading()))
        sent = simulate(file.config, test)[0]
        expected = Counter((s.alarm, s.webhook, s.kind) for s in sent)
        found = Counter(
            {(name, w, k): n for name, f in replayed.alarms.items() for (w, k), n in f.sent.items()}
        )
        assert found == expected, test.name


def test_a_gap_longer_than_offline_after_is_the_offline_alarm(tmp_path: Path) -> None:
    config = load_config(REPO / "agent.toml")
    path = tmp_path / "gap.csv"
    path.write_text("time,plc.oil_temp\n0,65\n1,65\n2,65\n100,65\n101,65\n")
    [offline] = [
        f for n, f in replay(config, rows(path, config, Reading())).alarms.items() if "offline" in n
    ]
    assert offline.sent == Counter({("ilert", "start"): 1, ("ilert", "end"): 1})
    assert offline.active == pytest.approx(100 - 32)  # from last sample + 30 s to the next


def test_compare_reports_a_known_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = (REPO / "agent.toml").read_text()
    slow = base.replace('on_delay = "2s"', 'on_delay = "10s"', 1)  # the oil alarm
    (tmp_path / "slow.toml").write_text(slow)
    (tmp_path / "agent.toml").write_text(base)
    data = tmp_path / "blips.csv"
    lines = ["time,plc.oil_temp,plc.pressure,plc.motor_running"]
    for t in range(120):  # three 5-second blips over 80 and one of 20 seconds
        hot = any(a <= t < a + 5 for a in (10, 30, 50)) or 80 <= t < 100
        lines.append(f"{t},{85.0 if hot else 65.0},4.5,true")
    data.write_text("\n".join(lines) + "\n")
    code = cli.main(["replay", "--config", str(tmp_path / "agent.toml"), str(data),
                     "--compare", str(tmp_path / "slow.toml"), "--json"])  # fmt: skip
    assert code == cli.EXIT_OK
    report = json.loads(capsys.readouterr().out)
    first, second = (c["alarms"]["Oil temperature high"] for c in report["configs"])
    assert (first["pages"], second["pages"]) == (4, 1)
    assert report["difference"]["Oil temperature high"] == -3
    assert report["difference"]["Machine fault: Lubrication"] == 0
    code = cli.main(["replay", "--config", str(tmp_path / "agent.toml"), str(data),
                     "--compare", str(tmp_path / "slow.toml")])  # fmt: skip
    table = capsys.readouterr().out
    assert "-3 pages" in table and "pages [slow.toml]" in table


def test_bad_data_names_its_line_and_column_and_skip_bad_counts(tmp_path: Path) -> None:
    config = load_config(REPO / "agent.toml")
    path = tmp_path / "bad.csv"
    path.write_text(
        "time,plc.oil_temp,plc.motor_running,plc.mystery\n"
        "0,65,true,1\n1,hot,true,1\n2,65,maybe,1\nsoon,65,true,1\n4,66,1,1\n"
    )
    with pytest.raises(DataError, match=r"bad.csv:3: column 'plc.oil_temp': could not convert"):
        list(rows(path, config, Reading()))
    reading = Reading()
    kept = list(rows(path, config, reading, skip_bad=True))
    assert [t for t, _ in kept] == [0.0, 4.0] and reading.skipped == 3
    assert reading.unknown == ["plc.mystery"] and kept[1][1]["plc.motor_running"] is True
    for body, problem in [
        ("time,plc.motor_running\n0,true\n1,maybe\n", ":3: column 'plc.motor_running': 'maybe' is not"),
        ("time,plc.oil_temp\n0,65\nsoon,65\n", ":3: column 'time': Invalid isoformat"),
        ("when,plc.oil_temp\n0,65\n", ":1: the first column must be 'time'"),
    ]:  # fmt: skip
        other = tmp_path / "other.csv"
        other.write_text(body)
        with pytest.raises(DataError, match=problem):
            list(rows(other, config, Reading()))


def test_the_long_form_and_iso_times(tmp_path: Path) -> None:
    config = load_config(REPO / "agent.toml")
    path = tmp_path / "long.csv"
    path.write_text(
        "time,variable,value\n"
        "2026-11-23T08:00:00Z,plc.oil_temp,65\n2026-11-23T08:00:00Z,plc.motor_running,1\n"
        "2026-11-23T08:00:10Z,plc.oil_temp,90\n2026-11-23T08:00:20,plc.oil_temp,60\n"
        "2026-11-23T08:00:20,plc.elsewhere,1\n"
    )
    reading = Reading()
    found = list(rows(path, config, reading))
    assert [t - found[0][0] for t, _ in found] == [0.0, 10.0, 20.0]  # a time without zone is UTC
    assert found[0][1] == {"plc.oil_temp": 65.0, "plc.motor_running": True}
    assert reading.unknown == ["plc.elsewhere"]


def test_the_sample_day_pages_as_pinned(capsys: pytest.CaptureFixture[str]) -> None:
    """tests/data/packaging-day.csv.gz (make_sample.py): the counts the README quotes."""
    code = cli.main(["replay", "--config", str(REPO / "agent.toml"),
                     str(DATA / "packaging-day.csv.gz"), "--compare",
                     str(DATA / "agent-tuned.toml"), "--json"])  # fmt: skip
    assert code == cli.EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 86_280
    pages = [{n: a["pages"] for n, a in c["alarms"].items()} for c in report["configs"]]
    assert pages[0] == {
        "Oil temperature high": 19, "Hydraulic pressure low": 23,
        "Machine fault: Lubrication": 16, "Machine fault: Cooling fan": 16,
        "Oil heating too fast": 0, "Main motor stopped": 16, "Source plc offline": 1,
    }  # fmt: skip
    assert (
        pages[1]["Hydraulic pressure low"] == 16
        and report["difference"]["Hydraulic pressure low"] == -7
    )


def test_the_command_exits_2_on_bad_data_and_counts_skipped_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.csv"
    data.write_text("time,plc.oil_temp\n0,65\n1,hot\n2,66\n")
    args = ["replay", "--config", str(REPO / "agent.toml"), str(data)]
    assert cli.main(args) == cli.EXIT_CONFIG
    assert "d.csv:3: column 'plc.oil_temp'" in capsys.readouterr().err
    assert cli.main([*args, "--skip-bad"]) == cli.EXIT_OK
    assert "skipped bad rows: 1" in capsys.readouterr().out
