"""``ixon-agent test``: alarm tests for a config, in simulated time (DESIGN.md 9.1).

``spec`` reads a test file, ``simulate`` runs a test through the core step with an injected
clock, ``report`` compares what was sent with what was expected. The live mode, which needs
the stand-ins, is ``workbench.live``; it checks the same files with the same ``report``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from agent.tools.alarmtest.report import Outcome, compare, diff, junit, line
from agent.tools.alarmtest.simulate import Sent, simulate
from agent.tools.alarmtest.spec import AlarmTest, TestFile, TestFileError, load

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_FILE = 0, 1, 2

#: runs one test of a file and returns what was sent (simulated time by default)
Runner = Callable[[TestFile, AlarmTest], list[Sent]]


def simulated(file: TestFile, test: AlarmTest) -> list[Sent]:
    return simulate(file.config, test)[0]


def run_files(
    paths: Sequence[Path],
    junit_path: Path | None = None,
    runner: Runner = simulated,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    detail: str = "",
    prepare: Callable[[TestFile], TestFile] | None = None,
) -> int:
    """Every test of every file: a line each, a diff for a failure; the exit code."""
    files = []
    bad = False
    for path in paths:
        try:
            file = load(path)
            files.append(prepare(file) if prepare else file)
        except TestFileError as exc:
            print(exc, file=err)
            bad = True
    if bad:
        return EXIT_BAD_FILE
    suites: list[tuple[str, list[Outcome]]] = []
    failed = False
    for file in files:
        print(f"{file.path} (config {file.config_path})", file=out)
        outcomes = []
        for test in file.tests:
            began = time.perf_counter()
            sent = runner(file, test)
            outcome = compare(test.name, test.expect, sent)
            outcome.seconds, outcome.detail = time.perf_counter() - began, detail
            outcomes.append(outcome)
            print(line(outcome, test.duration), file=out)
            if not outcome.passed:
                failed = True
                print("\n".join(diff(outcome)), file=out)
        suites.append((str(file.path), outcomes))
    if junit_path is not None:
        junit(junit_path, suites)
    total = sum(len(o) for _, o in suites)
    passed = sum(o.passed for _, outcomes in suites for o in outcomes)
    print(f"{passed} of {total} test(s) passed", file=out)
    return EXIT_FAILED if failed else EXIT_PASSED
