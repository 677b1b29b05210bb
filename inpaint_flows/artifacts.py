"""What a batch shows in the Prefect dashboard: summary, report table, progress, gallery link.

The content is built by plain functions (tested without Prefect); `publish_*` send it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from inpaint_flows.batch import BatchReport
from inpaint_flows.models import JobStatus

ARTIFACT_KEY_RE = re.compile(r"[^a-z0-9-]+")


def artifact_key(batch_name: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    slug = ARTIFACT_KEY_RE.sub("-", batch_name.lower()).strip("-")[:40] or "batch"
    return f"inpaint-{slug}-{kind}"


def summary_markdown(report: BatchReport, batch_name: str, elapsed_s: float) -> str:
    s = report.summary
    lines = [f"# Inpainting batch `{batch_name}`", ""]
    lines += ["| status | jobs |", "|---|---|"]
    lines += [f"| {status} | {count} |" for status, count in sorted(s.counts.items())]
    lines += ["", f"**Total:** {s.total} jobs in {elapsed_s:.1f} s"]
    done = s.counts.get(JobStatus.SUCCEEDED, 0)
    if elapsed_s > 0 and done:
        lines.append(f"**Throughput:** {done / elapsed_s * 60:.1f} images/min")
    if s.top_reasons:
        lines += ["", "## Top failure reasons", "", "| reason | jobs |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in s.top_reasons]
    lines += [
        "",
        "## Outputs",
        f"- report: `{report.csv}` and `{report.parquet}`",
        f"- gallery: `{report.gallery}`",
    ]
    return "\n".join(lines)


TABLE_COLUMNS = ("name", "status", "reason", "task_id", "submits", "polls", "latency_s", "outputs")


def report_table(report: BatchReport, limit: int = 500) -> list[dict[str, Any]]:
    """Rows for the table artifact: failures first, capped so the UI stays quick."""
    rows = sorted(report.outcomes, key=lambda o: (o.status == "succeeded", o.name))
    table = []
    for o in rows[:limit]:
        data = o.model_dump(mode="json")
        data["outputs"] = ";".join(o.outputs)
        table.append({k: data.get(k) for k in TABLE_COLUMNS})
    return table


def gallery_link(report: BatchReport) -> str:
    return Path(report.gallery).resolve().as_uri()
