"""The dashboard's content, built without Prefect: summary, report table, keys, progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inpaint_flows.artifacts import (
    MESSAGE_CHARS,
    artifact_key,
    finished_this_run,
    gallery_link,
    progress_percent,
    report_table,
    summary_markdown,
)
from inpaint_flows.finalize import BatchReport
from inpaint_flows.models import InpaintParams, JobOutcome, JobStatus
from inpaint_flows.summary import summarize

START = datetime(2026, 1, 2, 2, 0, tzinfo=UTC)


def outcome(name: str, status: JobStatus, minutes: float = 1, **kw: object) -> JobOutcome:
    fields: dict[str, object] = {
        "name": name,
        "image_path": f"in/{name}",
        "mask_path": f"in/masks/{name}",
        "status": status,
        "params": InpaintParams(),
        "submitted_at": (START + timedelta(minutes=minutes - 0.5)).isoformat(),
        "finished_at": (START + timedelta(minutes=minutes)).isoformat(),
        "latency_s": 30.0,
    }
    fields.update(kw)
    return JobOutcome.model_validate(fields)


def report_of(tmp_path: Path, *outcomes: JobOutcome) -> BatchReport:
    return BatchReport(
        csv=str(tmp_path / "report.csv"),
        parquet=str(tmp_path / "report.parquet"),
        gallery=str(tmp_path / "index.html"),
        summary=summarize(outcomes),
        outcomes=outcomes,
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [
        pytest.param("nightly", "inpaint-nightly-summary", id="plain"),
        pytest.param("Photos 2026/Jan", "inpaint-photos-2026-jan-summary", id="slugged"),
        pytest.param("///", "inpaint-batch-summary", id="nothing-left"),
    ],
)
def test_artifact_keys_are_stable_and_valid(name: str, key: str) -> None:
    assert artifact_key(name, "summary") == key


def test_summary_counts_this_run_apart_from_earlier_runs(tmp_path: Path) -> None:
    earlier = START - timedelta(days=1)
    report = report_of(
        tmp_path,
        outcome("a.png", JobStatus.SUCCEEDED, minutes=1),
        outcome("b.png", JobStatus.SUCCEEDED, minutes=2),
        outcome(
            "c.png",
            JobStatus.SKIPPED_ALREADY_DONE,
            submitted_at=earlier.isoformat(),
            finished_at=earlier.isoformat(),
        ),
        outcome(
            "d.png",
            JobStatus.INVALID,
            reason="MISSING_MASK",
            message="d.png: no mask found; add masks/d.png",
            submitted_at=None,
            finished_at=None,
        ),
    )

    text = summary_markdown(report, "nightly", elapsed_s=120.0, started_at=START)

    assert text.startswith("# Inpainting batch `nightly`: 3 of 4 done, 1 to redo")
    assert "| succeeded | 2 |" in text and "| invalid | 1 |" in text
    assert "| pending |" not in text  # zero counts are left out
    assert "2 image(s) inpainted (1.0 images/min)" in text
    assert "1 already done by an earlier run" in text
    assert "| `MISSING_MASK` | 1 | d.png: no mask found; add masks/d.png |" in text
    assert f"rerun-failed {tmp_path / 'report.csv'}" in text  # how to redo, with the path
    assert str(tmp_path / "index.html") in text


def test_summary_of_a_clean_run_has_no_redo_section(tmp_path: Path) -> None:
    report = report_of(tmp_path, outcome("a.png", JobStatus.SUCCEEDED))
    text = summary_markdown(report, "b", elapsed_s=60.0, started_at=START)
    assert "1 of 1 done\n" in text and "Redo" not in text


def test_rows_finished_before_the_run_do_not_count_as_this_runs_work() -> None:
    rows = [
        outcome("old.png", JobStatus.SUCCEEDED, minutes=-10),
        outcome("new.png", JobStatus.SUCCEEDED, minutes=3),
    ]
    assert [o.name for o in finished_this_run(rows, START)] == ["new.png"]


def test_table_puts_failures_first_and_keeps_cells_short(tmp_path: Path) -> None:
    report = report_of(
        tmp_path,
        outcome("a.png", JobStatus.SUCCEEDED, outputs=("a.png",)),
        outcome("z.png", JobStatus.FAILED, reason="TASK_FAILED", message="x | y\n" * 100),
        outcome("m.png", JobStatus.INVALID, reason="MISSING_MASK"),
    )

    rows = report_table(report)

    assert [r["name"] for r in rows] == ["m.png", "z.png", "a.png"]
    assert rows[2]["outputs"] == "a.png"
    message = rows[1]["message"]
    assert len(message) <= MESSAGE_CHARS and "|" not in message and "\n" not in message
    assert len(report_table(report, limit=2)) == 2


def test_progress_and_gallery_link(tmp_path: Path) -> None:
    assert progress_percent(1, 3) == 33.3
    assert progress_percent(5, 3) == 100.0
    assert progress_percent(0, 0) == 100.0
    report = report_of(tmp_path, outcome("a.png", JobStatus.SUCCEEDED))
    assert gallery_link(report) == (tmp_path / "index.html").resolve().as_uri()
