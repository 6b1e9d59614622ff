"""IXON CSV exports to agent.toml, from sample files in IXON's format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.tools.ixon_import import import_ixon

DATA = Path(__file__).resolve().parents[2] / "data"


def test_import_writes_a_config_that_loads(tmp_path: Path) -> None:
    result = import_ixon(
        DATA / "ixon_variables.csv", DATA / "ixon_alarms.csv", host="10.0.0.5", port=502
    )
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nname = "Imported line"\n\n' + result.toml)
    config = load_config(path, environ={})
    [source] = config.sources
    assert (source.host, source.port, source.unit_id) == ("10.0.0.5", 502, 1)
    variables = {v.name: v for v in source.variables}
    assert list(variables) == [
        "oil_temp",
        "pressure",
        "cycle_count",
        "recipe",
        "motor_running",
        "guard_closed",
        "motor_current",
    ]
    oil, pressure, count, recipe = (
        variables[n] for n in ("oil_temp", "pressure", "cycle_count", "recipe")
    )
    assert (oil.table, oil.address, oil.type, oil.width, oil.unit, oil.label) == (
        "holding",
        100,
        "float",
        32,
        "°C",
        "Oil temperature",
    )
    assert (pressure.factor, pressure.signed) == (0.01, True)
    assert (count.width, count.signed) == (32, False)
    assert (recipe.type, recipe.length) == ("str", 10)
    assert (variables["motor_running"].table, variables["guard_closed"].table) == (
        "coil",
        "discrete_input",
    )
    assert variables["motor_current"].table == "input" and variables["motor_current"].factor == 0.1

    alarms = {a.name: a for a in config.alarms}
    assert list(alarms) == [
        "Oil temperature high",
        "Hydraulic pressure low",
        "Motor stopped",
        "Wrong recipe",
    ]
    oil_alarm = alarms["Oil temperature high"]
    assert (oil_alarm.variable, oil_alarm.condition, oil_alarm.threshold, oil_alarm.severity) == (
        "plc.oil_temp",
        ">",
        80.0,
        "high",
    )
    assert oil_alarm.on_delay == 5.0 and oil_alarm.instructions == "Check cooling pump P1."
    assert alarms["Hydraulic pressure low"].threshold == 2.0  # "2,0" written the European way
    assert alarms["Hydraulic pressure low"].on_delay == 60.0  # "1 Minutes"
    assert (alarms["Motor stopped"].condition, alarms["Motor stopped"].threshold) == ("!=", True)
    assert alarms["Wrong recipe"].threshold == "PACK-A"


def test_rows_that_cannot_be_translated_are_reported() -> None:
    result = import_ixon(DATA / "ixon_variables.csv", DATA / "ixon_alarms.csv")
    assert result.problems == [
        "ixon_variables.csv line 9 (PLC clock): address '5.1' is not <function code 1-4>.<address>",
        "ixon_variables.csv line 10 (Torque): type 'dint' is not bool, int, float or str",
        "ixon_alarms.csv line 6 (Mail alarm): an SMTP (unary) alarm has no Modbus variable",
        "ixon_alarms.csv line 7 (Guard open): severity 'Urgent' is not low, medium or high",
        "ixon_alarms.csv line 8 (Counter odd): condition 'Modulo' is not one this agent knows",
    ]
    assert (result.variables, result.alarms) == (7, 4)


def test_import_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    variables = tmp_path / "vars.csv"
    shutil.copy(DATA / "ixon_variables.csv", variables)
    variables.write_text("\n".join(variables.read_text().splitlines()[:8]) + "\n")  # the good rows
    out = tmp_path / "imported.toml"
    assert (
        main(
            [
                "import-ixon",
                "--variables",
                str(variables),
                "--source",
                "press",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert '[[sources]]\nname = "press"' in out.read_text()
    assert "7 variable(s) and 0 alarm(s) imported, 0 row(s) left out" in capsys.readouterr().err
    assert main(["import-ixon", "--variables", str(DATA / "ixon_variables.csv")]) == 1
    assert main(["import-ixon", "--variables", str(tmp_path / "missing.csv")]) == 2


def test_utf16_tab_separated_as_excel_saves_unicode_text(tmp_path: Path) -> None:
    text = (DATA / "ixon_variables.csv").read_text(encoding="utf-8")
    delimiter = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    utf16 = tmp_path / "variables.txt"
    utf16.write_bytes(text.replace(delimiter, "\t").encode("utf-16"))
    plain = import_ixon(DATA / "ixon_variables.csv")
    same = import_ixon(utf16).toml.replace("variables.txt", "ixon_variables.csv")
    assert same == plain.toml and plain.variables > 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x00\xff\xfe\xfa binary", "not a text file (neither UTF-8 nor UTF-16)"),
        (b"Name,Colour\nx,red\n", "no 'address' or 'type' column (found: colour, name)"),
    ],
)
def test_a_file_that_is_not_an_ixon_export_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str
) -> None:
    from agent import cli

    path = tmp_path / "export.csv"
    path.write_bytes(content)
    assert cli.main(["import-ixon", "--variables", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err


def test_the_other_alarm_types_where_the_rows_carry_what_they_need(tmp_path: Path) -> None:
    result = import_ixon(DATA / "ixon_types_variables.csv", DATA / "ixon_types_alarms.csv")
    assert result.problems == [
        "ixon_types_alarms.csv line 5 (Pressure bit): error_bits reads the bits of an unscaled"
        " int variable; pressure is not",
        "ixon_types_alarms.csv line 6 (Past the end): an error_bits row needs its bit number"
        " (0 to 15) in Bit or Threshold",
        "ixon_types_alarms.csv line 8 (No mask): a bit_pattern row needs Mask and Pattern"
        " columns (IXON's CSV has none)",
        "ixon_types_alarms.csv line 10 (No window): a rate_of_change row needs Per and Window"
        " columns (IXON's CSV has none)",
        "ixon_types_alarms.csv line 4 (Overcurrent again): bit 0 of Drive fault word appears twice",
    ]
    assert '  [alarms.bits]\n  0 = { text = "Overcurrent", instructions' in result.toml
    assert "mask = 0x00F0\npattern = 0x0030" in result.toml
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nname = "Imported line"\n\n' + result.toml)
    config = load_config(path, environ={})  # what it wrote passes every check
    alarms = {a.name: a for a in config.alarms}
    assert list(alarms) == ["Manual with guard open", "Oil heating too fast", "Drive fault word"]
    word = alarms["Drive fault word"]
    assert (word.form, word.variable, word.severity) == ("error_bits", "plc.drive_faults", "medium")
    assert word.bits is not None and sorted(word.bits) == [0, 3]
    assert (word.bits[3].text, word.bits[3].severity) == ("Lubrication", "high")
    assert word.bits[0].severity is None and word.bits[0].instructions == "Check the motor."
    pattern = alarms["Manual with guard open"]
    assert (pattern.form, pattern.mask, pattern.pattern) == ("bit_pattern", 0xF0, 0x30)
    rate = alarms["Oil heating too fast"]
    assert (rate.form, rate.condition, rate.threshold) == ("rate_of_change", ">", 5.0)
    assert (rate.per, rate.window, rate.instructions) == (60.0, 30.0, "Check the cooler.")


def test_opcua_rows_become_an_opcua_source_with_their_node_ids(tmp_path: Path) -> None:
    """IXON writes an OPC UA variable's address as its node id (``ns=2;s=20001``)."""
    result = import_ixon(
        DATA / "ixon_opcua_variables.csv",
        DATA / "ixon_opcua_alarms.csv",
        source="oven",
        endpoint="opc.tcp://10.0.0.9:4840",
    )
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nname = "Imported oven"\n\n' + result.toml)
    config = load_config(path, environ={})
    [source] = config.sources
    assert source.protocol == "opcua" and source.address == "opc.tcp://10.0.0.9:4840"
    nodes = {v.name: (v.node, v.type) for v in source.variables}  # type: ignore[attr-defined]
    assert nodes == {
        "zone1_temp": ("ns=3;s=Zone1.Temperature", "float"),
        "running": ("ns=2;i=2", "bool"),
        "pressure": ("nsu=urn:acme:oven;s=Press", "int"),
    }
    [alarm] = config.alarms
    assert (alarm.variable, alarm.threshold, alarm.on_delay) == ("oven.zone1_temp", 250.0, 2.0)
    assert result.problems == [
        "ixon_opcua_variables.csv line 5 (Old meter): a modbus address in an export of opcua"
        " variables",
        "ixon_opcua_variables.csv line 6 (Broken): 'ns=x;s=1': ns= takes a namespace index"
        " 0..65535, not 'x'",
    ]
