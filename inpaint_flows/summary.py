"""A batch's summary from its report rows: counts by status, top failure reasons, throughput
and latency; what the CLI prints, the dashboard's summary artifact and the gallery show."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from inpaint_flows.models import RERUN_STATUSES, JobOutcome, JobStatus


@dataclass(frozen=True)
class ReportSummary:
    """The numbers the dashboard and gallery headers show.

    Latency and throughput leave out `skipped-already-done` rows: their timestamps belong to
    the earlier run that did the work, and would stretch this run's wall time.
    """

    total: int
    counts: Mapping[JobStatus, int]  # every status, in JobStatus order, zeros included
    top_reasons: tuple[tuple[str, int], ...]  # failed and invalid rows, most frequent first
    outputs: int  # output files listed across all rows
    latency_count: int
    latency_total_s: float | None
    latency_mean_s: float | None
    latency_median_s: float | None
    latency_p95_s: float | None
    latency_max_s: float | None
    wall_s: float | None  # first submit to last finish of this run's rows
    images_per_min: float | None  # succeeded inputs per minute of wall time

    @property
    def failed(self) -> int:
        """Inputs that did not produce a result: failed, invalid and not submitted."""
        return sum(self.counts[status] for status in RERUN_STATUSES)

    def to_markdown(self) -> str:
        """A short markdown summary: counts, top failure reasons, latency, throughput."""
        lines = ["| Status | Count |", "|---|---:|"]
        lines += [f"| {status.value} | {n} |" for status, n in self.counts.items() if n]
        lines.append(f"| **total** | **{self.total}** |")
        if self.top_reasons:
            lines += ["", "**Top failure reasons**", ""]
            lines += [f"- `{reason}`: {n}" for reason, n in self.top_reasons]
        if self.latency_count:
            lines += [
                "",
                f"**Latency** over {self.latency_count} job(s): "
                f"mean {_fmt(self.latency_mean_s)}, median {_fmt(self.latency_median_s)}, "
                f"p95 {_fmt(self.latency_p95_s)}, max {_fmt(self.latency_max_s)}",
            ]
        if self.images_per_min is not None:
            lines += [
                "",
                f"**Throughput**: {self.images_per_min:.2f} images/min "
                f"over {_fmt(self.wall_s)} wall time",
            ]
        return "\n".join(lines) + "\n"


def _fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.1f} s"


def summarize(outcomes: Iterable[JobOutcome], *, top: int = 5) -> ReportSummary:
    """Counts by status, the `top` failure reasons, latency statistics and throughput."""
    rows = list(outcomes)
    counts = Counter(o.status for o in rows)
    reasons = Counter(o.reason or "UNKNOWN" for o in rows if o.status in RERUN_STATUSES)
    this_run = [o for o in rows if o.status != JobStatus.SKIPPED_ALREADY_DONE]
    latencies = sorted(o.latency_s for o in this_run if o.latency_s is not None)
    starts = [t for o in this_run if (t := _when(o.submitted_at)) is not None]
    ends = [t for o in this_run if (t := _when(o.finished_at)) is not None]
    wall_s = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    if wall_s is not None and wall_s < 0:
        wall_s = None
    succeeded = sum(o.status == JobStatus.SUCCEEDED for o in this_run)
    return ReportSummary(
        total=len(rows),
        counts={status: counts.get(status, 0) for status in JobStatus},
        top_reasons=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:top]),
        outputs=sum(len(o.outputs) for o in rows),
        latency_count=len(latencies),
        latency_total_s=math.fsum(latencies) if latencies else None,
        latency_mean_s=statistics.fmean(latencies) if latencies else None,
        latency_median_s=statistics.median(latencies) if latencies else None,
        latency_p95_s=_p95(latencies),
        latency_max_s=latencies[-1] if latencies else None,
        wall_s=wall_s,
        images_per_min=succeeded / (wall_s / 60) if wall_s else None,
    )


def _p95(ordered: list[float]) -> float | None:
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=20, method="inclusive")[18]


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # Naive timestamps are taken as UTC, like the pipeline writes them.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
