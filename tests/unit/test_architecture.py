"""The tree shows the pipeline, and the imports keep to it (DESIGN.md section 8).

Read from the source files (``ast``), so a new import that breaks a rule fails here before
anyone has to notice it in a review. Every import counts, late ones inside functions too,
and importing ``a.b.c`` imports the packages ``a`` and ``a.b`` first; only imports for the
type checker (``if TYPE_CHECKING``) are left out.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

AGENT = REPO / "agent"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for inner in ast.walk(child)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
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
        ("sources", {"agent.common"}),  # each kind owns its config model
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


def loaded(name: str) -> Iterator[str]:
    """What importing ``name`` loads: ``a.b.c`` loads ``a``, ``a.b`` and ``a.b.c``."""
    parts = name.split(".")
    yield from (".".join(parts[:i]) for i in range(1, len(parts) + 1))


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    paths = {module_name(p): p for p in modules(AGENT)}
    for name, path in paths.items():
        graph[name] = {
            m
            for n in imports(path)
            for m in loaded(n)
            if m in paths and m != name and not name.startswith(m + ".")  # (its own package)
        }
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
    for stage in ("common", "sources", "sources/modbus", "sources/opcua", "sources/s7", "alarms", "formats", "outbox",
                  "delivery", "runtime", "observe", "tools"):  # fmt: skip
        door = AGENT / stage / "__init__.py"
        assert ast.get_docstring(ast.parse(door.read_text())), f"{door} says nothing"


def test_each_kind_of_source_is_a_folder_that_owns_its_config_model() -> None:
    from agent.sources.kinds import KINDS

    for kind in KINDS:
        assert kind.__module__ == f"agent.sources.{kind.KIND}.config"
        assert (AGENT / "sources" / kind.KIND / "driver.py").is_file()


def test_the_config_names_no_field_and_no_protocol_of_any_kind_of_source() -> None:
    """``agent/config.py`` composes the kinds; what is a kind's own is said only in its
    folder. (``host`` and ``port`` are the status listener's too, so they may appear.)"""
    from pydantic import BaseModel

    import agent.config as config
    from agent.sources.kinds import KINDS
    from agent.sources.schema import SourceBase

    def fields(model: type) -> set[str]:
        found = getattr(model, "__pydantic_fields__", {})
        return {info.alias or name for name, info in found.items()}

    own = set().union(*(fields(m) for m in vars(config).values()
                        if isinstance(m, type) and issubclass(m, BaseModel)
                        and m.__module__ == config.__name__))  # fmt: skip
    theirs: set[str] = set()
    for kind in KINDS:
        variable = kind.__pydantic_fields__["variables"].annotation
        theirs |= fields(kind) | fields(variable.__args__[0])  # type: ignore[union-attr]
        theirs |= set(kind.PROTOCOLS) | {kind.KIND}
    common = {"variables", "label", "type", "unit", "factor", "offset", "width", "signed"}
    theirs -= fields(SourceBase) | own | common  # what every kind's source or variable has
    tree = ast.parse((AGENT / "config.py").read_text())
    words = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    texts = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    words |= set(texts)  # a key or a protocol as a string: "host", "modbus-rtu"
    words |= {word for text in texts for word in re.findall(r"\.([\w-]+)", text)}  # ".host: …"
    assert theirs, "no field found: the test reads the models wrongly"
    assert sorted(words & theirs) == []
