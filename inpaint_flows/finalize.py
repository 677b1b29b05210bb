"""The batch's closing files: report.csv, report.parquet and the gallery, from the report rows."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from inpaint_flows.gallery import Thumbnailer, write_gallery
from inpaint_flows.models import RERUN_STATUSES, JobOutcome
from inpaint_flows.report import (
    CSV_NAME,
    merge_outcomes,
    outcomes_from_frame,
    outcomes_to_frame,
    read_report,
    write_report,
)
from inpaint_flows.summary import ReportSummary, summarize

REPORT_LOCK = ".report.lock"  # held while a run reads, merges and writes the report


class BatchReport(BaseModel):
    """Where a batch's report went, its summary and its rows."""

    model_config = ConfigDict(frozen=True)

    csv: str
    parquet: str
    gallery: str
    summary: ReportSummary
    outcomes: tuple[JobOutcome, ...]
    api: str | None = None  # which API produced this run's results

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status in RERUN_STATUSES)


def finalize_report(
    outcomes: Sequence[JobOutcome],
    out_dir: str,
    *,
    title: str,
    merge: bool = False,
    api: str | None = None,
    thumbnails: Thumbnailer | None = None,
) -> BatchReport:
    """Write report.csv, report.parquet and index.html; with `merge`, update the old report.

    `thumbnails`: the run's `Thumbnailer` (see `inpaint_flows.finishing`), so the gallery reuses
    the thumbnails made as jobs finished instead of making them all now.
    """
    rows = list(outcomes)
    previous = Path(out_dir) / CSV_NAME
    # Runs that share an output folder finish one at a time here, so a merging run never
    # reads a report that another run replaces before this one writes (its rows would be lost).
    with _writing_reports(Path(out_dir)):
        if merge and previous.exists():
            rows = merge_outcomes(outcomes_from_frame(read_report(previous)), rows)
        paths = write_report(outcomes_to_frame(rows), out_dir)
        gallery = write_gallery(rows, out_dir, title=title, api=api, thumbnails=thumbnails)
    return BatchReport(
        csv=str(paths.csv),
        parquet=str(paths.parquet),
        gallery=str(gallery),
        summary=summarize(rows),
        outcomes=tuple(rows),
        api=api,
    )


@contextlib.contextmanager
def _writing_reports(out_dir: Path) -> Iterator[None]:
    """An OS lock on the output folder's report, across processes of this machine (released
    by the kernel if the holder dies)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / REPORT_LOCK, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
