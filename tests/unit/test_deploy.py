"""The deployment files agree with the agent they deploy."""

from __future__ import annotations

import re
from pathlib import Path

from agent.cli import build_parser
from agent.config import load_config
from tests.conftest import REPO


def environment(text: str, pattern: str) -> dict[str, str]:
    return dict(re.findall(pattern, text, re.MULTILINE))


def test_systemd_unit() -> None:
    unit = (REPO / "deploy" / "ixon-agent.service").read_text()
    assert "Restart=on-failure" in unit and "StateDirectory=ixon-agent" in unit
    assert "RestartPreventExitStatus=2" in unit  # a user error or a damaged database: no loop
    assert "User=ixon-agent" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "Type=notify" in unit and re.search(r"^WatchdogSec=\d+$", unit, re.MULTILINE)
    start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.MULTILINE)
    assert start and start.group(1).endswith("/.venv/bin/ixon-agent")
    args = build_parser().parse_args(start.group(2).split())
    assert args.command == "run" and args.config == "/etc/ixon-agent/agent.toml"
    env = environment(unit, r"^Environment=(AGENT_\w+)=(\S+)$")
    config = load_config(REPO / "agent.toml", environ=env)
    assert config.agent.state_dir == Path("/var/lib/ixon-agent")


def test_dockerfile() -> None:
    docker = (REPO / "Dockerfile").read_text()
    env = environment(docker, r"(AGENT_\w+)=(\S+)")
    config = load_config(REPO / "agent.toml", environ=env)
    assert config.agent.state_dir == Path("/var/lib/ixon-agent")
    assert config.status.host == "0.0.0.0" and f"EXPOSE {config.status.port}" in docker
    assert 'ENTRYPOINT ["ixon-agent"]' in docker and "USER ixon-agent" in docker
    health = re.search(r'^\s+CMD \["ixon-agent", "health"\]$', docker, re.MULTILINE)
    assert health, "the health check asks the agent, on the port its config gives"
    assert build_parser().parse_args(["health"]).command == "health"
    assert "--device /dev/ttyUSB0" in docker  # RTU in a container
    packages = {line.split()[1] for line in docker.splitlines() if line.startswith("COPY ")}
    assert {"agent", "simulators", "workbench"} <= packages  # every installed package


def test_the_starter_config_is_the_repositorys_and_ships_in_the_wheel(tmp_path: Path) -> None:
    """A plain `pip install .` has a config to start from (`init`, `demo`)."""
    import subprocess
    import sys
    import zipfile

    from agent.config import STARTER

    assert STARTER.read_text() == (REPO / "agent.toml").read_text()
    load_config(STARTER, environ={})
    import shutil

    source = tmp_path / "src"  # a copy: building leaves build/ behind
    for name in ("agent", "simulators", "workbench"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("ixon_agent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "agent/data/agent.toml" in names


def test_make_shows_what_pip_is_doing() -> None:
    """A first `make demo` spends most of its time installing: it must not look hung."""
    makefile = (REPO / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs and all("--quiet" not in line and " -q" not in line for line in installs)
