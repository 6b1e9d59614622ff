"""Writes ``packaging-day.csv.gz``: a day of the packaging machine at 1 s, as ``record``
would, with noise near the default alarms' thresholds and one 2-minute outage.

    .venv/bin/python tests/data/make_sample.py

Deterministic (seeded), so the counts a test pins stay true. Only changed values are
written (an empty cell is no new sample), which keeps the file small.
"""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

from simulators.modbus_device import packaging_scenario

START = 1_795_000_000  # 2026-11-18 UTC, a whole second
OUTAGE = (50_000, 50_120)  # seconds into the day without samples
COLUMNS = ["plc.oil_temp", "plc.pressure", "plc.fault_word", "plc.cycle_count",
           "plc.motor_current", "plc.motor_running", "plc.guard_closed"]  # fmt: skip


def main() -> None:
    rng = random.Random(20261123)
    out = Path(__file__).parent / "packaging-day.csv.gz"
    last: dict[str, str] = {}
    with gzip.open(out, "wt", newline="", encoding="utf-8") as handle:
        table = csv.writer(handle)
        table.writerow(["time", *COLUMNS])
        for t in range(86_400):
            if OUTAGE[0] <= t < OUTAGE[1]:
                continue
            v = packaging_scenario(float(t), 5_400.0)  # an excursion every 90 minutes
            cells = {
                "plc.oil_temp": f"{v['oil_temp'] + rng.gauss(0, 0.8):.1f}",
                "plc.pressure": f"{v['pressure'] + rng.gauss(0, 0.15):.2f}",
                "plc.fault_word": str(v["fault_word"]),
                "plc.cycle_count": str(t),
                "plc.motor_current": f"{v['motor_current']:.1f}",
                "plc.motor_running": "1" if v["motor_running"] else "0",
                "plc.guard_closed": "1" if v["guard_closed"] else "0",
            }
            row = [str(START + t)]
            for name in COLUMNS:
                changed = cells[name] != last.get(name)
                row.append(cells[name] if changed or name == "plc.oil_temp" else "")
                last[name] = cells[name]
            table.writerow(row)


if __name__ == "__main__":
    main()
