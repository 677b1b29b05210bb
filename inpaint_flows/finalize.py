"""The batch's closing files: report.csv, report.parquet and the gallery, from the report rows."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from inpaint_flows.gallery import INDEX_NAME, SHARED_NAME, Thumbnailer, write_gallery
from inpaint_flows.locations import public_url, sign
from inpaint_flows.models import RERUN_STATUSES, JobOutcome
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.report import (
    CSV_NAME,
    merge_outcomes,
    outcomes_from_frame,
    read_report,
    write_report_rows,
)
from inpaint_flows.summary import ReportSummary, summarize

REPORT_LOCK = ".report.lock"  # held while a run reads, merges and writes the report


class ReportRows(Sequence[JobOutcome]):
    """A report's rows, read-only: a sequence of `JobOutcome`, one value to Prefect.

    Not a tuple on purpose. When a flow returns, Prefect walks its return value field by field
    looking for futures, and asyncio, putting Ctrl-C back at the end of the run, builds a repr
    of the run's task, result included. For a tuple of rows both went through every field of
    every row: 0.15 s each at 800 rows, three times that at 3,000, all of it after the last
    download. Prefect does not walk into this type, and its repr is a count.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: Iterable[JobOutcome] = ()) -> None:
        self._rows = tuple(rows)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> JobOutcome: ...
    @overload
    def __getitem__(self, index: slice) -> ReportRows: ...
    def __getitem__(self, index: int | slice) -> JobOutcome | ReportRows:
        if isinstance(index, slice):
            return ReportRows(self._rows[index])
        return self._rows[index]

    def __iter__(self) -> Iterator[JobOutcome]:
        return iter(self._rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReportRows):
            return self._rows == other._rows
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._rows)

    def __repr__(self) -> str:
        return f"<{len(self._rows)} report rows>"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        rows = handler.generate_schema(tuple[JobOutcome, ...])
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.union_schema([core_schema.is_instance_schema(cls), rows]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                tuple, return_schema=rows
            ),
        )


class BatchReport(BaseModel):
    """Where a batch's report went, its summary and its rows."""

    model_config = ConfigDict(frozen=True)

    csv: str
    parquet: str
    gallery: str
    summary: ReportSummary
    outcomes: ReportRows
    api: str | None = None  # which API produced this run's results
    link: str | None = None  # what a person opens to see the gallery (None: the local file)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status in RERUN_STATUSES)


@dataclass(frozen=True)
class GalleryLink:
    """What the dashboard's gallery link opens when the output folder is in a bucket:
    `presigned` (`index.shared.html`, every link signed for `expiry_s`) or `bucket` (the
    page's plain URL, for buckets their readers may read)."""

    mode: Literal["presigned", "bucket"] = "presigned"
    expiry_s: int = 7 * 24 * 3600

    def signer(self, output: OutputFolder) -> Callable[[str], str] | None:
        if not output.remote or self.mode != "presigned":
            return None
        return lambda rel: sign(output.location(rel), self.expiry_s) or output.location(rel)

    def url_of(self, output: OutputFolder) -> str | None:
        if not output.remote:
            return None
        if self.mode == "presigned":
            return sign(output.location(SHARED_NAME), self.expiry_s)
        return public_url(output.location(INDEX_NAME))


def finalize_report(
    outcomes: Sequence[JobOutcome],
    out_dir: str | OutputFolder,
    *,
    title: str,
    merge: bool = False,
    api: str | None = None,
    thumbnails: Thumbnailer | None = None,
    link: GalleryLink = GalleryLink(),
) -> BatchReport:
    """Write report.csv, report.parquet and index.html; with `merge`, update the old report.

    `thumbnails`: the run's `Thumbnailer` (see `inpaint_flows.finishing`), so the gallery reuses
    the thumbnails made as jobs finished instead of making them all now.
    """
    rows = list(outcomes)
    output = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder(out_dir)
    thumbs = thumbnails or Thumbnailer(output)
    # Runs that share an output folder finish one at a time here, so a merging run never
    # reads a report that another run replaces before this one writes (its rows would be lost).
    # (For a bucket the lock is this machine's: runs in several containers at once need the
    # shared job store, and their reports are merged by the last one to finish.)
    with _writing_reports(output.work):
        if merge and output.pull(CSV_NAME):
            previous = read_report(output.work / CSV_NAME)
            rows = merge_outcomes(outcomes_from_frame(previous), rows)
        paths = write_report_rows(rows, output.work)
        signed = link.signer(output)
        gallery = write_gallery(
            rows, output, title=title, api=api, thumbnails=thumbs, signed=signed
        )
        # For a bucket: each file uploaded whole, the pages last so they never show missing
        # thumbnails.
        pages = (gallery.name, SHARED_NAME) if signed else (gallery.name,)
        output.publish(*thumbs.new_files(), paths.csv.name, paths.parquet.name, *pages)
    return BatchReport(
        csv=output.location(paths.csv.name),
        parquet=output.location(paths.parquet.name),
        gallery=output.location(gallery.name),
        link=link.url_of(output),
        summary=summarize(rows),
        outcomes=ReportRows(rows),
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
