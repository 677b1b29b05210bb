"""Run the fault matrix and print its faults x outcomes table (markdown).

    python -m tests.reliability.fault_table            # runs the matrix, then prints the table
    python -m tests.reliability.fault_table ROWS.jsonl # prints a table from rows already written

Each case of `test_fault_matrix.py` appends one JSON line to the file named by
`INPAINT_FAULT_TABLE` when that variable is set; this script sets it, runs pytest, and renders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MATRIX = Path(__file__).with_name("test_fault_matrix.py")
ENV = "INPAINT_FAULT_TABLE"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def _paid(paid: dict[str, int]) -> str:
    # {"1": 5, "2": 3} -> "5x1, 3x2": how many jobs were paid for once, twice, ...
    return ", ".join(f"{n}×{k}" for k, n in sorted(paid.items(), key=lambda kv: int(kv[0])))


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| fault | jobs | injected (server counters) | run 1: outcome | run 1: failure reasons "
        "| paid tasks per job after run 1 | rerun (faults off): outcome | paid per job after "
        "rerun | run 1 / rerun s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        injected = dict(row["injected"])
        if row["restarts"]:
            injected["restarts"] = row["restarts"]
        if row["expired_downloads"]:
            injected["expired URL downloads"] = row["expired_downloads"]
        first, rerun = row["first"], row["rerun"]
        lines.append(
            f"| {row['fault']} | {row['jobs']} | {_counts(injected)} "
            f"| {_counts(first['statuses'])} | {_counts(first['reasons'])} "
            f"| {_paid(first['paid'])} | {_counts(rerun['statuses'])} | {_paid(rerun['paid'])} "
            f"| {first['elapsed_s']} / {rerun['elapsed_s']} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv:
        path = Path(argv[0])
    else:
        path = Path(tempfile.mkdtemp()) / "fault_table.jsonl"
        env = {**os.environ, ENV: str(path)}
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(MATRIX)],
            env=env,
        )
        if code != 0:
            print(f"the fault matrix failed (exit {code}); table of the cases that ran:")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
