"""What a batch shows in the Prefect dashboard: summary, report table, progress, gallery link.

The content is built here by plain functions (tested without Prefect); `tasks/artifacts.py`
sends it. Keys are stable per batch name, so the Artifacts page shows each batch's summary,
table, progress and gallery link over time, one version per run.

A report may hold rows of earlier runs (a merged rerun-failed report, or jobs skipped because an
earlier run did them): "this run" means rows finished since the run started.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from inpaint_flows.finalize import BatchReport
from inpaint_flows.locations import is_remote, parent_of
from inpaint_flows.models import RERUN_STATUSES, JobOutcome, JobStatus

ARTIFACT_KEY_RE = re.compile(r"[^a-z0-9-]+")
TABLE_COLUMNS = (
    "name",
    "status",
    "reason",
    "message",
    "task_id",
    "submits",
    "polls",
    "latency_s",
    "outputs",
)
MESSAGE_CHARS = 160


def artifact_key(batch_name: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    slug = ARTIFACT_KEY_RE.sub("-", batch_name.lower()).strip("-")[:40] or "batch"
    return f"inpaint-{slug}-{kind}"


def _when(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return None


def finished_this_run(outcomes: Sequence[JobOutcome], started_at: datetime) -> list[JobOutcome]:
    """Succeeded rows whose result was downloaded after `started_at` (not earlier runs')."""
    return [
        o
        for o in outcomes
        if o.status == JobStatus.SUCCEEDED
        and (t := _when(o.finished_at)) is not None
        and t >= started_at
    ]


def summary_markdown(
    report: BatchReport, batch_name: str, elapsed_s: float, started_at: datetime | None = None
) -> str:
    """Counts by status, top failure reasons, throughput, outputs, and how to redo failures."""
    s = report.summary
    to_redo = report.failed
    done = s.total - to_redo
    headline = f"{done} of {s.total} done" + (f", {to_redo} to redo" if to_redo else "")
    lines = [f"# Inpainting batch `{batch_name}`: {headline}", ""]
    lines += ["| status | jobs |", "|---|---:|"]
    lines += [f"| {status.value} | {n} |" for status, n in s.counts.items() if n]
    lines += [f"| **total** | **{s.total}** |", ""]
    if report.api:
        lines += [f"- **API:** {report.api}"]
    limited = sum(o.rate_limited for o in report.outcomes)
    if limited:
        lines += [f"- **429s met:** {limited} (each waited for its turn; none failed a job)"]

    new = finished_this_run(report.outcomes, started_at) if started_at else []
    skipped = s.counts.get(JobStatus.SKIPPED_ALREADY_DONE, 0)
    run_line = f"- **This run:** {elapsed_s:.1f} s, {len(new)} image(s) inpainted"
    if new and elapsed_s > 0:
        run_line += f" ({len(new) / elapsed_s * 60:.1f} images/min)"
    if skipped:
        run_line += f"; {skipped} already done by an earlier run (nothing sent for them)"
    lines.append(run_line)
    if s.latency_median_s is not None:
        lines.append(
            f"- **Latency per job** (submit to result): median {s.latency_median_s:.1f} s, "
            f"p95 {s.latency_p95_s or 0:.1f} s"
        )

    if s.top_reasons:
        examples: dict[str, JobOutcome] = {}
        for o in report.outcomes:
            if o.status in RERUN_STATUSES:
                examples.setdefault(o.reason or "UNKNOWN", o)
        lines += ["", "## Top failure reasons", "", "| reason | jobs | e.g. |", "|---|---:|---|"]
        for reason, count in s.top_reasons:
            example = examples.get(reason)
            text = _cell(_with_name(example)) if example else ""
            lines.append(f"| `{reason}` | {count} | {text} |")

    out_dir = parent_of(report.csv) if is_remote(report.csv) else Path(report.csv).parent
    lines += [
        "",
        "## Outputs",
        f"- folder: `{out_dir}` ({s.outputs} result file(s))",
        f"- report: `{report.csv}` and `{report.parquet}`",
        f"- gallery: `{report.gallery}` (original, mask and result side by side)",
    ]
    if to_redo:
        lines += [
            "",
            "## Redo what failed",
            "Fix the inputs named above, then either press **Retry** on this flow run, or run "
            f"the `rerun-failed` deployment with `report={report.csv}` (or "
            f"`inpaint-flows rerun-failed {report.csv}`). Succeeded jobs are not sent again; "
            "a job whose remote task is still alive is polled, not paid for twice.",
        ]
    return "\n".join(lines) + "\n"


def _with_name(outcome: JobOutcome) -> str:
    message = outcome.message or ""
    return message if message.startswith(outcome.name) else f"{outcome.name}: {message}"


def _cell(text: str) -> str:
    """One markdown table cell: no pipes or newlines, and short."""
    flat = " ".join(text.replace("|", "/").split())
    return flat if len(flat) <= MESSAGE_CHARS else flat[: MESSAGE_CHARS - 1] + "…"


def report_table(report: BatchReport, limit: int = 500) -> list[dict[str, Any]]:
    """Rows for the table artifact: failures first, capped so the UI stays quick."""
    rows = sorted(report.outcomes, key=lambda o: (o.status not in RERUN_STATUSES, o.name))
    table = []
    for o in rows[:limit]:
        data = o.model_dump(mode="json")
        data["outputs"] = ";".join(o.outputs)
        data["message"] = _cell(o.message) if o.message else None
        table.append({k: data.get(k) for k in TABLE_COLUMNS})
    return table


def gallery_link(report: BatchReport) -> str:
    """What a person opens: for a bucket, the presigned page or the bucket's URL (as the
    batch asked); locally, a file:// link that opens on the machine (or share) holding it."""
    if report.link:
        return report.link
    if is_remote(report.gallery):
        return report.gallery
    return Path(report.gallery).resolve().as_uri()


def progress_percent(done: int, total: int) -> float:
    return 100.0 if total <= 0 else round(100.0 * min(done, total) / total, 1)
