"""TIA Portal DB exports to an s7 source, from an export made for the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.sources.s7.config import S7Source
from agent.tools.tia_import import import_tia

DATA = Path(__file__).resolve().parents[2] / "data"


def test_a_db_export_becomes_variables_at_their_addresses(tmp_path: Path) -> None:
    result = import_tia([DATA / "tia_db10.xml"], source="press", host="10.0.0.10")
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nname = "Imported press"\n\n' + result.toml)
    [source] = load_config(path, environ={}).sources
    assert isinstance(source, S7Source) and source.host == "10.0.0.10"
    found = {v.name: (v.address, v.type, v.width, v.signed, v.length) for v in source.variables}
    assert found == {
        "running": ("DB10.DBX0.0", "bool", None, True, None),
        "door_open": ("DB10.DBX0.5", "bool", None, True, None),
        "speed": ("DB10.DBW2", "int", 16, True, None),
        "count": ("DB10.DBD4", "int", 32, False, None),
        "oil_temperature": ("DB10.DBD8", "float", 32, True, None),
        "energy": ("DB10.DBB12", "float", 64, True, None),
        "recipe": ("DB10.DBB20", "str", None, True, 20),
        "fault_word": ("DB10.DBW42", "int", 16, False, None),
    }
    assert source.variables[4].label == "Oil temperature"
    assert result.problems == [
        "tia_db10.xml: Stamp: data type DTL has no place in bool, int, float or str"
    ]


def test_a_file_that_is_not_an_export_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.xml"
    bad.write_text("<notes><note>hello</note></notes>")
    assert main(["import-tia", str(bad)]) == 2
    assert "no DB members found; is this a TIA Portal DB export?" in capsys.readouterr().err
