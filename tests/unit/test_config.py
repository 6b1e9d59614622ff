"""Config validation: every user error names its place and exits 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import ConfigError, load_config, parse_duration
from tests.conftest import CONFIG, REPO, write_config


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return info.value.problems


def edited(tmp_path: Path, old: str, new: str) -> Path:
    assert old in CONFIG, old
    return write_config(tmp_path, CONFIG.replace(old, new, 1))


def test_repository_default_config_is_valid() -> None:
    config = load_config(REPO / "agent.toml", environ={})
    assert config.agent.name == "Packaging line 3"
    assert {a.variable for a in config.alarms} <= {key for key, _, _ in config.variables()}
    assert config.agent.state_dir == REPO / "var"  # relative to the file's folder


def test_durations_and_defaults(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, poll="250ms", on_delay="2m"), environ={})
    source = config.sources[0]
    assert source.poll_interval == 0.25
    assert config.alarms[0].on_delay == 120.0
    assert source.byte_order == "ABCD" and source.unit_id == 1
    oil = source.variables[0]
    assert (oil.width, oil.signed, oil.factor) == (32, True, 1.0)
    assert source.variables[1].width == 16


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(1.5, 1.5), (2, 2.0), ("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("3", 3.0)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 parsecs", "-1", -1, True, "", "1.5.5s"])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_missing_file(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path / "nope.toml")
    assert problem.startswith("file not found") and "ixon-agent init" in problem


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nname = "x"\n[[sources]\n')
    (problem,) = problems_of(path)
    assert problem.startswith("TOML syntax error") and "line 3" in problem


def test_unknown_key_names_its_place(tmp_path: Path) -> None:
    path = edited(tmp_path, 'type = "bool"', 'type = "bool"\n  colour = "red"')
    assert problems_of(path) == [
        "sources[0].variables[2] (motor_running).colour: unknown key (not part of the config schema)"
    ]


def test_bad_enum_value(tmp_path: Path) -> None:
    path = edited(tmp_path, 'register = "coil"', 'register = "coils"')
    (problem,) = problems_of(path)
    assert problem.startswith(
        "sources[0].variables[2] (motor_running).register: Input should be 'coil'"
    )


def test_bad_width_for_type(tmp_path: Path) -> None:
    path = edited(tmp_path, 'type = "float"', 'type = "float"\n  width = 16')
    assert problems_of(path) == [
        "sources[0].variables[0] (oil_temp).width: width 16 is not valid for float: use one of (32, 64)"
    ]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = CONFIG.replace('type = "float"', 'type = "double"').replace(
        'severity = "high"', 'severity = "urgent"'
    )
    problems = problems_of(write_config(tmp_path, text))
    places = [p.split(":")[0] for p in problems]
    assert "sources[0].variables[0] (oil_temp).type" in places
    assert "alarms[0] (Oil temperature high).severity" in places


def test_alarm_on_unknown_variable(tmp_path: Path) -> None:
    path = edited(tmp_path, 'variable = "plc.oil_temp"', 'variable = "plc.oil_tmp"')
    (problem,) = problems_of(path)
    assert problem.startswith(
        "alarms[0] (Oil temperature high).variable: no variable 'plc.oil_tmp'; did you mean 'plc.oil_temp'?"
    )


def test_duplicate_names(tmp_path: Path) -> None:
    path = edited(tmp_path, 'name = "pressure"', 'name = "oil_temp"')
    assert problems_of(path) == [
        "sources[0].variables[1] (oil_temp).name: duplicate name 'oil_temp' (first at sources[0].variables[0])"
    ]


def test_duplicate_alarm_names(tmp_path: Path) -> None:
    alarm = CONFIG[CONFIG.index("[[alarms]]") : CONFIG.index("[[webhooks]]")]
    path = write_config(tmp_path, CONFIG.replace(alarm, alarm + alarm))
    assert problems_of(path) == [
        "alarms[1] (Oil temperature high).name: duplicate name 'Oil temperature high' (first at alarms[0])"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('condition = ">"', 'condition = "between"', "alarms[0] (Oil temperature high).threshold: condition 'between' needs [low, high]"),
        ("threshold = 80.0", "threshold = true", "alarms[0] (Oil temperature high).threshold: plc.oil_temp is a number; the threshold must be one too"),
        ("threshold = 80.0", "threshold = [90, 10]", "alarms[0] (Oil temperature high).threshold: [low, high] needs low <= high, got [90, 10]"),
        ('variable = "plc.oil_temp"', 'variable = "plc.motor_running"', "alarms[0] (Oil temperature high).condition: '>' needs a numeric variable; plc.motor_running is bool"),
        ('host = "127.0.0.1"\n', "", "sources[0] (plc).host: required for protocol 'modbus-tcp'"),
        ('type = "bool"', 'type = "int"', "sources[0].variables[2] (motor_running).type: a coil holds one bit: type must be 'bool'"),
        ('unit = "bar"', 'unit = "bar"\n  length = 4', "sources[0].variables[1] (pressure).length: length applies to type 'str' only"),
        ('address = 102', 'address = 65535\n  width = 32', "sources[0].variables[1] (pressure).address: pressure would end at register 65536, past the last Modbus address 65535"),
        ('poll_interval = "100ms"', 'poll_interval = "soon"', "sources[0] (plc).poll_interval: 'soon' is not a duration: use seconds (1.5) or a string like '500ms', '5s', '2m', '1h'"),
    ],
)  # fmt: skip
def test_specific_errors(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = CONFIG.replace(old.replace("100ms", "{poll}"), new, 1)
    assert problems_of(write_config(tmp_path, text)) == [expected]


def test_webhook_url_error_does_not_echo_the_secret(tmp_path: Path) -> None:
    path = write_config(tmp_path, ilert="ftp://127.0.0.1:8025")
    problems = problems_of(path)
    assert problems == ["webhooks[0] (ilert).url: must be an http:// or https:// URL"]
    assert "il1ixon0demo" not in "".join(problems)


def test_environment_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    env = {
        "AGENT_SOURCES__0__PORT": "1502",
        "AGENT_AGENT__NAME": "Line 4",
        "AGENT_SOURCES__0__VARIABLES__1__FACTOR": "0.1",
        "AGENT_CONFIG": "ignored.toml",
    }
    config = load_config(path, environ=env)
    assert config.sources[0].port == 1502
    assert config.agent.name == "Line 4"
    assert config.sources[0].variables[1].factor == 0.1


def test_environment_override_errors_name_the_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert problems_of(path, {"AGENT_SOURCES__0__PORT": "none"}) == [
        "sources[0] (plc).port: Input should be a valid integer, unable to parse string as an integer"
        " (set by environment variable AGENT_SOURCES__0__PORT)"
    ]
    assert problems_of(path, {"AGENT_SOURCES__3__PORT": "1"}) == [
        "AGENT_SOURCES__3__PORT: no item '3' in sources"
    ]


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_config(tmp_path)
    assert main(["check", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "source plc" in out and "2 request(s) per cycle" in out
    assert "il1ixon0demo" not in out

    bad = edited(tmp_path, 'register = "coil"', 'register = "coils"')
    assert main(["check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "sources[0].variables[2] (motor_running).register" in err and "Traceback" not in err


def test_check_as_a_process_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent", "check", "--config", str(tmp_path / "missing.toml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "missing.toml: 1 problem(s)" in result.stderr and "file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_formula_alarms_are_checked_at_load(tmp_path: Path) -> None:
    alarm = '[[alarms]]\nname = "Hot and stopped"\nformula = "$plc.oil_temp 80 > $plc.motor_running false == &&"\n'
    text = CONFIG.replace("[[webhooks]]", alarm + "\n[[webhooks]]")
    config = load_config(write_config(tmp_path, text), environ={})
    assert config.alarms[1].formula is not None

    bad = CONFIG.replace("[[webhooks]]", alarm.replace("80 >", "80 > >") + "\n[[webhooks]]")
    assert problems_of(write_config(tmp_path, bad)) == [
        "alarms[1] (Hot and stopped).formula: token 4 '>': needs two operands, the stack has 1"
    ]
    both = CONFIG.replace('condition = ">"', 'formula = "$plc.oil_temp 1 >"\ncondition = ">"')
    assert problems_of(write_config(tmp_path, both)) == [
        "alarms[0] (Oil temperature high).variable: not used with formula; give one or the other",
        "alarms[0] (Oil temperature high).condition: not used with formula; give one or the other",
        "alarms[0] (Oil temperature high).threshold: not used with formula; give one or the other",
    ]
    neither = CONFIG.replace('variable = "plc.oil_temp"\n', "")
    assert problems_of(write_config(tmp_path, neither)) == [
        "alarms[0] (Oil temperature high).variable: required (or give a formula)"
    ]


@pytest.mark.parametrize("state_dir", ["/proc/ixon-agent-state", "{file}/state"])
def test_check_rejects_a_state_dir_that_run_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state_dir: str
) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("")
    state_dir = state_dir.format(file=afile)
    path = edited(tmp_path, 'state_dir = "state"', f'state_dir = "{state_dir}"')
    path.chmod(0o600)
    assert main(["check", "--config", str(path)]) == 2
    checked = capsys.readouterr().err
    assert main(["run", "--config", str(path)]) == 2
    ran = capsys.readouterr().err
    assert f"agent.state_dir: cannot use {state_dir}" in checked
    assert ran.strip().splitlines()[-1] in checked  # the very same words
    assert not list(tmp_path.glob("**/.ixon-agent-probe-*"))  # the probe left nothing


@pytest.mark.parametrize("command", ["check", "run", "outbox", "send-test", "shelve"])
@pytest.mark.parametrize("refused", ["name too long", "through a file", "in a loop of links"])
def test_a_path_the_os_refuses_is_a_located_error_in_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, refused: str
) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    state_dir = {
        "name too long": "d" * 300,  # past NAME_MAX: the OS answers ENAMETOOLONG
        "through a file": "a-file/state",
        "in a loop of links": "loop/state",  # ELOOP
    }[refused]
    path = edited(tmp_path, 'state_dir = "state"', f'state_dir = "{state_dir}"')
    path.chmod(0o600)
    assert main([command, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"agent.state_dir: cannot use {tmp_path / state_dir}" in err
    assert "Traceback" not in err


def test_a_config_path_the_os_refuses_is_a_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    too_long = tmp_path / ("c" * 300)
    assert main(["check", "--config", str(too_long)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{too_long}: 1 problem(s)",
        "  cannot use this path: File name too long",
    ]


def test_warnings_for_what_runs_but_is_likely_not_meant(tmp_path: Path) -> None:
    from agent.config import config_warnings

    text = CONFIG.replace("address = 102", "address = 101")  # pressure inside oil_temp's float
    text = text.split("[[webhooks]]")[0]  # no webhook
    text += """
[[sources.variables]]
name = "fault_bit_3"
register = "holding"
address = 101
type = "bool"
bit = 3
"""
    config = load_config(write_config(tmp_path, text), environ={})
    environ = {
        "AGENT_SOURCE__0__HOST": "10.0.0.5",  # SOURCE, not SOURCES
        "AGENT_CONFIG": "/etc/agent.toml",  # ours, and meaningful
        "AGENT_OUTBOX": "x",  # a section, not a setting
        "PATH": "/usr/bin",
    }
    warnings = config_warnings(config, environ)
    assert warnings == [
        "environment variable AGENT_OUTBOX names a section, not a setting, and is ignored:"
        " AGENT_OUTBOX__KEY (list items by index: AGENT_SOURCES__0__HOST)",
        "environment variable AGENT_SOURCE__0__HOST matches no setting and is ignored;"
        " did you mean 'AGENT_SOURCES__0__HOST'?",
        "webhooks: none configured: alarms are evaluated and logged, but nobody is notified",
        "sources[0].variables[1] (pressure): reads holding 101, as does"
        " sources[0].variables[0] (oil_temp); check the addresses",
    ], warnings  # the bit of register 101 beside them is meant to share it


def test_an_unknown_key_gets_the_likely_one(tmp_path: Path) -> None:
    text = CONFIG.replace("threshold = 80.0", "treshold = 80.0")
    problems = problems_of(write_config(tmp_path, text))
    assert (
        "alarms[0] (Oil temperature high).treshold: unknown key (not part of the config schema);"
        " did you mean 'threshold'?"
    ) in problems


def test_environment_overrides_reach_a_fault_words_bit_table() -> None:
    """A table's keys are strings, digits too: ``BITS__5`` is bit 5's entry, not a new one."""
    config = load_config(
        REPO / "agent.toml",
        environ={"AGENT_ALARMS__2__BITS__5__SEVERITY": "low", "AGENT_ALARMS__2__BITS__3": "Oil"},
    )
    bits = config.alarms[2].bits
    assert bits is not None and sorted(bits) == [3, 5]
    assert (bits[3].text, bits[5].text, bits[5].severity) == ("Oil", "Cooling fan", "low")


def test_rtu_over_tcp_needs_a_host_and_its_units_share_the_device_servers_timeout(
    tmp_path: Path,
) -> None:
    gateway = """
[[sources]]
name = "unit{n}"
protocol = "modbus-rtu-over-tcp"
host = "10.0.0.7"
port = 4001
unit_id = {n}
timeout = "{timeout}"
"""
    text = CONFIG + gateway.format(n=2, timeout="1s") + gateway.format(n=3, timeout="2s")
    assert problems_of(write_config(tmp_path, text)) == [
        "sources[2] (unit3).timeout: differs from sources[1] on the same device server"
        " 10.0.0.7:4001 (1.0)"
    ]
    text = CONFIG + gateway.format(n=2, timeout="1s").replace('host = "10.0.0.7"\n', "")
    assert problems_of(write_config(tmp_path, text)) == [
        "sources[1] (unit2).host: required for protocol 'modbus-rtu-over-tcp'"
    ]
