"""The command line in-process: exit codes, what each command prints, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import cli
from agent.outbox.store import Message, Store
from agent.runtime.service import DB_NAME
from tests.conftest import REPO, write_config


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_the_read_plan_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "check", "--config", str(write_config(tmp_path)))
    assert code == cli.EXIT_OK
    assert "plc" in out and "request" in out and "[high] Oil temperature high" in out
    # the test config's webhook posts to ilert's IXON path: paced by its key, never shown
    assert "  ilert: ixon, at most 50/min to its receiver's key (ilert's limit" in out
    assert "il1ixon0demo" not in out


def test_a_config_problem_is_one_placed_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('type = "float"', 'type = "double"', 1))
    code, out, err = run(capsys, "check", "--config", str(path))
    assert code == cli.EXIT_CONFIG and "sources[0].variables[0] (oil_temp).type" in err
    assert "Traceback" not in out + err


def test_outbox_lists_pending_messages_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    store = Store(tmp_path / "state" / DB_NAME)
    store.record([], [Message("ilert", "Occ1", "start", "high", "start of 'Oil hot'", {"a": 1})])
    store.close()
    code, out, _ = run(capsys, "outbox", "--config", str(path))
    assert code == cli.EXIT_OK
    assert "1 pending, 0 dead letter(s)" in out and "start of 'Oil hot'" in out
    assert "il1ixon0demo" not in out  # the webhook's key is in its URL: never shown


def test_demo_without_the_workbench_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.tools, "WORKBENCH", "no_such_workbench")
    code, _, err = run(capsys, "demo", "--duration", "1")
    assert code == cli.EXIT_FAILED and "needs the workbench package" in err


def test_read_json_of_nothing_read_is_still_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "read", "--json", "--config", str(write_config(tmp_path, port=1)))
    assert code == cli.EXIT_FAILED and "source plc" in err
    assert json.loads(out) == {"errors": {"plc": "not connected"}}  # which source, and why


def test_output_into_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    """``ixon-agent check | head -1``: the reader goes away; no BrokenPipeError on stderr."""
    import subprocess
    import sys

    config = write_config(tmp_path)
    # head exits before the agent writes: the reader is gone when the output comes
    shell = f"{sys.executable} -m agent check --config {config} | (exec 0<&-; true)"
    done = subprocess.run(shell, shell=True, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_read_says_which_source_failed_in_one_line_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "read", "--config", str(write_config(tmp_path, port=1)))
    assert code == cli.EXIT_FAILED and "(not read)" in out
    assert err.strip().splitlines() == ["source plc: not connected"], err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_record_onto_a_full_disk_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["record", "--config", str(write_config(tmp_path, port=1)), "--duration", "2s"]
    code, _, err = run(capsys, *argv, "--out", "/dev/full")
    assert code == cli.EXIT_FAILED and "record: /dev/full: No space left on device" in err


def test_shelve_names_the_alarm_it_could_not_find_and_checks_its_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    code, _, err = run(capsys, "shelve", "Oil temprature high", "--for", "2h", "--config", config)
    assert code == cli.EXIT_CONFIG and "did you mean 'Oil temperature high'?" in err
    code, _, err = run(capsys, "shelve", "Oil temperature high", "--config", config)
    assert code == cli.EXIT_CONFIG and "--for" in err
    for bad in ("forever", "0s", "31d"):
        code, _, err = run(
            capsys, "shelve", "Oil temperature high", "--for", bad, "--config", config
        )
        assert code == cli.EXIT_CONFIG and "--for" in err, bad


def test_shelve_list_and_unshelve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    code, out, _ = run(
        capsys, "shelve", "Source plc offline", "--for", "45m", "--reason", "PLC swap",
        "--config", config,
    )  # fmt: skip
    assert code == cli.EXIT_OK and "shelved for 45 min" in out
    code, out, _ = run(capsys, "shelve", "--config", config)
    assert out.startswith("Source plc offline: shelved for 45 min more: PLC swap")
    code, out, _ = run(capsys, "unshelve", "Source plc offline", "--config", config)
    assert code == cli.EXIT_OK and "unshelved" in out
    code, out, _ = run(capsys, "unshelve", "Source plc offline", "--config", config)
    assert "was not shelved" in out
    code, out, _ = run(capsys, "shelve", "--config", config)
    assert out.strip() == "no alarm is shelved"


def test_check_shows_an_alarm_out_of_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path)
    path.write_text(
        path.read_text().replace('severity = "high"', 'severity = "high"\nenabled = false')
    )
    code, out, _ = run(capsys, "check", "--config", str(path))
    assert code == cli.EXIT_OK and "[high] Oil temperature high: plc.oil_temp > 80" in out
    assert "out of service (enabled = false)" in out
    code, _, err = run(
        capsys, "shelve", "Oil temperature high", "--for", "1h", "--config", str(path)
    )
    assert code == cli.EXIT_CONFIG and "out of service" in err


def test_init_writes_a_starter_config_that_checks_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside the repository, as after a plain `pip install`
    code, _, err = run(capsys, "check")
    assert code == cli.EXIT_CONFIG and "file not found" in err and "ixon-agent init" in err
    code, out, _ = run(capsys, "init")
    assert code == cli.EXIT_OK and "wrote agent.toml" in out
    assert (tmp_path / "agent.toml").stat().st_mode & 0o777 == 0o600  # it will hold keys
    code, out, _ = run(capsys, "check")
    assert code == cli.EXIT_OK and "agent.toml: OK" in out
    (tmp_path / "agent.toml").write_text("# mine\n")
    code, _, err = run(capsys, "init")
    assert code == cli.EXIT_CONFIG and "not overwritten" in err
    assert (tmp_path / "agent.toml").read_text() == "# mine\n"
    code, out, _ = run(capsys, "init", "--force", "site/line4.toml")
    assert code == cli.EXIT_OK and "--config site/line4.toml" in out
    assert "# " in (tmp_path / "site/line4.toml").read_text()  # commented


def test_shelving_a_fault_word_shelves_each_of_its_bits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text((REPO / "agent.toml").read_text())
    code, out, _ = run(capsys, "shelve", "Machine fault", "--for", "1h", "--config", str(config))
    assert code == cli.EXIT_OK and "(its bits: Lubrication, Cooling fan)" in out
    code, out, _ = run(capsys, "shelve", "--config", str(config))
    assert out.splitlines() == [
        "Machine fault: Lubrication: shelved for 60 min more",
        "Machine fault: Cooling fan: shelved for 60 min more",
    ]
    code, out, _ = run(capsys, "unshelve", "Machine fault: Cooling fan", "--config", str(config))
    assert code == cli.EXIT_OK and "its bits" not in out
    code, out, _ = run(capsys, "shelve", "--config", str(config))
    assert out.splitlines() == ["Machine fault: Lubrication: shelved for 60 min more"]
