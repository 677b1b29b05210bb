"""Batch-level plain functions: chunking, labels, the saved batch spec, the final report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from inpaint_flows.gallery import write_gallery
from inpaint_flows.models import InpaintParams, JobOutcome, JobStatus
from inpaint_flows.report import (
    ReportSummary,
    merge_outcomes,
    outcomes_from_frame,
    outcomes_to_frame,
    read_report,
    summarize,
    write_report,
)
from inpaint_flows.storage import atomic_write_text

T = TypeVar("T")

SPEC_FILE = "batch.json"
REPORT_CSV = "report.csv"
FAILED_STATUSES = (JobStatus.FAILED, JobStatus.INVALID)


class BatchSpec(BaseModel):
    """What a batch was asked to do, saved beside its report so `rerun-failed` can redo it.

    Holds no secret: the key is named by its Secret block, or read from the environment.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    out: str
    defaults: InpaintParams
    mask: str | None = None
    base_url: str | None = None
    api_key_secret: str | None = None
    images_per_minute: float | None = None
    max_in_flight: int = 8
    state_dir: str | None = None


class BatchReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    csv: str
    parquet: str
    gallery: str
    summary: ReportSummary
    outcomes: tuple[JobOutcome, ...]

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status in FAILED_STATUSES)


def chunk_size_for(total: int, max_in_flight: int, requested: int | None = None) -> int:
    """Jobs per stage task: few task runs for big batches, one file per task for small ones.

    Prefect records ~80 task runs/s on SQLite; at ~1 % of the batch per chunk a 10,000-job
    batch makes ~400 task runs instead of 40,000, and a 4-image batch keeps per-file tasks.
    """
    if requested:
        return max(1, requested)
    return max(1, min(max_in_flight, math.ceil(total / 100)))


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def chunk_label(index: int, count: int, names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"chunk {index + 1}/{count} ({names[0]} … {names[-1]})"


def save_spec(spec: BatchSpec) -> Path:
    path = Path(spec.out) / SPEC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, spec.model_dump_json(indent=2))
    return path


def load_spec(report_path: str | Path) -> BatchSpec:
    path = Path(report_path).parent / SPEC_FILE
    return BatchSpec.model_validate_json(path.read_text(encoding="utf-8"))


def failed_names(report_path: str | Path) -> list[str]:
    """Names of the rows a rerun should redo: failed and invalid."""
    outcomes = outcomes_from_frame(read_report(report_path))
    return [o.name for o in outcomes if o.status in FAILED_STATUSES]


def finalize_report(
    outcomes: Sequence[JobOutcome], out_dir: str, *, title: str, merge: bool = False
) -> BatchReport:
    """Write report.csv, report.parquet and index.html; with `merge`, update the old report."""
    rows = list(outcomes)
    previous = Path(out_dir) / REPORT_CSV
    if merge and previous.exists():
        rows = merge_outcomes(outcomes_from_frame(read_report(previous)), rows)
    paths = write_report(outcomes_to_frame(rows), out_dir)
    gallery = write_gallery(rows, out_dir, title=title)
    return BatchReport(
        csv=str(paths.csv),
        parquet=str(paths.parquet),
        gallery=str(gallery),
        summary=summarize(rows),
        outcomes=tuple(rows),
    )
