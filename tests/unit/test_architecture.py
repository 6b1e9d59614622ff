"""The tree shows the pipeline, and the imports keep to it (DESIGN.md section 8).

Read from the source files (``ast``), so a new import that breaks a rule fails here before
anyone has to notice it in a review. Imports inside functions are late on purpose (the
config reads the formats registry when it checks a file) and are left out of the cycle
check, not of the layering rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

AGENT = REPO / "agent"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def imported(folder: Path) -> set[str]:
    return {name for path in modules(folder) for name in imports(path)}


def within(names: set[str], *packages: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in packages)}


def test_the_product_never_imports_the_stand_ins_or_the_workbench() -> None:
    assert within(imported(AGENT), "simulators", "workbench", "tests") == set()


def test_the_modbus_source_and_the_alarm_and_format_stages_do_not_know_each_other() -> None:
    assert within(imported(AGENT / "sources"), "agent.alarms", "agent.formats") == set()
    assert within(imported(AGENT / "alarms"), "agent.sources", "agent.formats") == set()
    assert within(imported(AGENT / "formats"), "agent.sources") == set()


@pytest.mark.parametrize(
    ("stage", "allowed"),
    [
        ("common", set()),  # primitives import no stage
        ("sources", {"agent.common", "agent.config"}),
        ("alarms", {"agent.common", "agent.config"}),
        ("formats", {"agent.common", "agent.config", "agent.alarms", "agent.outbox"}),
        ("outbox", {"agent.common"}),
        ("delivery", {"agent.common", "agent.config", "agent.formats", "agent.observe.logs",
                      "agent.outbox"}),
        ("observe", {"agent.common", "agent.alarms", "agent.outbox", "agent.sources",
                     "agent.delivery"}),
    ],
)  # fmt: skip
def test_each_stage_imports_only_what_comes_before_it(stage: str, allowed: set[str]) -> None:
    own = f"agent.{stage}"
    found = {n for n in within(imported(AGENT / stage), "agent") if n != "agent.__version__"}
    foreign = {
        n for n in found if not within({n}, own, *allowed) and n not in ("agent", "agent.agent")
    }
    assert foreign == set(), f"agent/{stage} imports {sorted(foreign)}"
    assert within(found, "agent.runtime", "agent.cli", "agent.tools") == set()


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    paths = {module_name(p): p for p in modules(AGENT)}
    for name, path in paths.items():
        graph[name] = {n for n in imports(path, top_level_only=True) if n in paths and n != name}
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            raise AssertionError(
                "import cycle: " + " -> ".join([*trail[trail.index(node) :], node])
            )
        if node in done:
            return
        for nxt in graph[node]:
            visit(nxt, [*trail, node])
        done.add(node)

    for node in graph:
        visit(node, [])


def test_every_stage_has_a_folder_with_a_docstring_at_its_door() -> None:
    for stage in ("common", "sources", "sources/modbus", "alarms", "formats", "outbox",
                  "delivery", "runtime", "observe", "tools"):  # fmt: skip
        door = AGENT / stage / "__init__.py"
        assert ast.get_docstring(ast.parse(door.read_text())), f"{door} says nothing"
