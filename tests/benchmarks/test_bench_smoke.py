"""The benchmark script runs end to end on tiny N and prints its table and JSON.

No timing is asserted: figures on a shared machine vary; what must not break is that the one
documented command still starts its servers, runs the real flow for every figure and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.bench_pipeline import SCENARIOS
from tests.benchmarks.bench_support import REPO

pytestmark = pytest.mark.slow


def test_quick_benchmark_prints_a_table_and_json_for_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.bench_pipeline",
            "--quick",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--cache-dir",
            str(tmp_path / "cache"),
            *("--e2e-repeat", "2"),  # both orders: loop first, then CLI first
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    table, _, rest = result.stdout.partition("\n{")
    header = table.splitlines()[0]
    for column in ("figure", "value", "target", "met"):
        assert column in header
    printed = json.loads("{" + rest)
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert printed == saved
    assert set(saved["figures"]) == set(SCENARIOS)
    for figure in SCENARIOS:
        assert any(row["figure"].startswith(figure) for row in saved["table"]), figure
        assert figure in table
    assert saved["figures"]["edge"]["accepted"] == saved["figures"]["edge"]["jobs"]
    assert all(run["peak_rss_mb"] > 0 for run in saved["figures"]["memory"])
    unreachable = saved["figures"]["unreachable"]
    assert set(unreachable["statuses"]) <= {"not-submitted", "failed"}
    assert sum(unreachable["statuses"].values()) == unreachable["jobs"]
    eta0 = next(run for run in saved["figures"]["polling"] if "added_latency_mean_s" in run)
    assert eta0["mean_polls_per_job"] > 0
    (e2e,) = saved["figures"]["e2e"]
    assert [pair["order"] for pair in e2e["pairs"]] == ["loop first", "CLI first"]
    assert all(pair["statuses"] == {"succeeded": e2e["jobs"]} for pair in e2e["pairs"])
    assert e2e["cli_over_reference"] in {pair["cli_over_reference"] for pair in e2e["pairs"]}


def test_bucket_benchmark_runs_a_tiny_batch_through_a_bucket() -> None:
    pytest.importorskip("s3fs", reason="pip install -e '.[dev]' (CI installs it)")
    result = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_bucket", "--jobs", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    header, row = [line for line in result.stdout.splitlines() if line.strip()][-2:]
    assert "peak_work_folder_mb" in header
    jobs, _wall, rss, _folder, results = row.split()
    assert (jobs, results) == ("2", "2") and float(rss) > 0
