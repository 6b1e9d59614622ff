"""What one message costs on disk: bytes the real ``ixon-agent run`` writes to its state
database and journal, and the fsyncs it asks for, per message, beside the message's body.

    .venv/bin/python bench/disk.py [--seconds 60] [--dir DIR]

The default config (agent.toml) against the packaging scenario of the machine simulator
(10-second period: its alarms start and end a few times a minute), delivering into a local
sink, with a state database as weeks of running leave it (its history full). The agent
runs under ``strace`` (``--seccomp-bpf``: only the traced calls stop it), so every
``pwrite64`` to ``agent.db`` and ``agent.db-wal`` and every ``fsync``/``fdatasync`` is
counted, with its size; ``--dir`` should be on the disk the agent will use (an SD card
wears by the bytes written to it). Without strace the bench says so and stops.

Floor: the body itself, once (what a message is). Each message is written as a row of the
outbox with its alarm's state and journal entry in one transaction (fsynced: a crash must
not lose it), then claimed and deleted once delivered (not fsynced); SQLite writes whole
4 KB pages, to the journal first and to the file at each checkpoint.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PYTHON, REPO, Agent, received, received_bytes, receiver

_CALL = re.compile(
    r"^\d+\s+(\d+\.\d+)\s+(pwrite64|write|fsync|fdatasync)\((\d+)<([^>]*)>.*\)\s+=\s+(\d+)"
)
WARM_UP = 5.0  # seconds after READY before counting: the schema and first states are written


def config(state_dir: Path, modbus_port: int, sink: str) -> str:
    text = (REPO / "agent.toml").read_text()
    text = re.sub(r"^state_dir = .*$", f'state_dir = "{state_dir}"', text, flags=re.M)
    text = text.replace("port = 5020", f"port = {modbus_port}")
    text = text.replace("http://127.0.0.1:8025", sink)
    return text.replace("port = 9108", "port = 0")


def aged(state: Path) -> None:
    """A state database as weeks of running leave it: its history of occurrences full."""
    from agent.outbox.store import Store

    state.mkdir(parents=True)
    store = Store(state / "agent.db")
    at = "2026-11-01T00:00:00.000Z"
    store.record([], [], history=[
        {"kind": "start", "occurrence_id": f"Old{i:09d}", "alarm_id": "OldAlarm0001",
         "name": "Oil temperature high", "severity": "high", "at": at, "values": [85.0],
         "webhooks": ["ilert"]}
        for i in range(600)
    ])  # fmt: skip
    store.close()


def count(
    trace: Path, state_dir: Path, since: float, until: float
) -> tuple[Counter[str], Counter[str]]:
    """Bytes written and fsyncs between two wall times, per file of the state directory."""
    written: Counter[str] = Counter()
    synced: Counter[str] = Counter()
    for line in trace.read_text(errors="replace").splitlines():
        found = _CALL.match(line)
        if not found or not found.group(4).startswith(str(state_dir)):
            continue
        if not since <= float(found.group(1)) < until:
            continue
        call, name, result = found.group(2), Path(found.group(4)).name, int(found.group(5))
        if call in ("pwrite64", "write"):
            written[name] += result
        else:
            synced[name] += 1
    return written, synced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--dir", type=Path, default=None, help="where the state goes")
    args = parser.parse_args()
    strace = shutil.which("strace")
    if strace is None:
        print("disk: needs strace (Debian package: strace) to count writes and fsyncs")
        return
    work = Path(tempfile.mkdtemp(prefix="ixon-disk-", dir=args.dir))
    state = work / "state"
    device = subprocess.Popen(
        [PYTHON, "-m", "simulators.modbus_device", "--port", "0", "--period", "10"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert device.stdout is not None
        port = int(re.search(r":(\d+) ", device.stdout.readline()).group(1))  # type: ignore[union-attr]
        with receiver() as sink:
            trace = work / "trace"
            aged(state)
            agent = Agent(config(state, port, sink), work)
            agent.wrapper = [strace, "-f", "-y", "-ttt", "--seccomp-bpf", "-o", str(trace),
                             "-e", "trace=pwrite64,write,fsync,fdatasync"]  # fmt: skip
            agent.start()
            time.sleep(WARM_UP)
            since, began, body = time.time(), received(sink), received_bytes(sink)
            time.sleep(args.seconds)
            until = time.time()
            messages, body = received(sink) - began, received_bytes(sink) - body
            agent.stop()  # the agent, not strace (which would let go of it, running)
    finally:
        device.terminate()
        device.wait()
    written, synced = count(trace, state, since, until)
    total = sum(written.values())
    average = body / max(1, messages)
    print(f"disk: {messages} messages in {args.seconds:g} s (packaging scenario, 10 s period)")
    if not messages:
        print("  no message was sent: nothing to divide by")
        return
    files = ", ".join(f"{name} {size / messages / 1024:.1f} KB" for name, size in written.items())
    print(
        f"  per message: {total / messages / 1024:.1f} KB written ({files}),"
        f" {sum(synced.values()) / messages:.1f} fsyncs; floor: its body, {average / 1024:.1f} KB"
        f" ({total / max(1.0, average * messages):.0f}x the floor)"
    )
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"  kept: {work}")


if __name__ == "__main__":
    main()
