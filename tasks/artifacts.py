"""Publish a batch's dashboard artifacts (wrappers over `inpaint_flows.artifacts`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    acreate_link_artifact,
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from inpaint_flows import artifacts
from inpaint_flows.batch import BatchReport


async def start_progress(batch_name: str) -> UUID:
    """A progress artifact the flow updates as chunks finish (plain calls, not task runs)."""
    return await acreate_progress_artifact(
        progress=0.0,
        key=artifacts.artifact_key(batch_name, "progress"),
        description=f"Jobs finished in batch {batch_name} (this run)",
    )


async def update_progress(artifact_id: UUID, done: int, total: int) -> None:
    if total:
        await aupdate_progress_artifact(
            artifact_id=artifact_id, progress=artifacts.progress_percent(done, total)
        )


@task(name="publish-artifacts", task_run_name="publish dashboard artifacts", cache_policy=NO_CACHE)
async def publish(report: BatchReport, batch_name: str, elapsed_s: float) -> None:
    started_at = datetime.now(UTC) - timedelta(seconds=elapsed_s)
    await acreate_markdown_artifact(
        markdown=artifacts.summary_markdown(report, batch_name, elapsed_s, started_at),
        key=artifacts.artifact_key(batch_name, "summary"),
        description="Counts by status, top failure reasons, throughput, outputs",
    )
    await acreate_table_artifact(
        table=artifacts.report_table(report),
        key=artifacts.artifact_key(batch_name, "report"),
        description=f"One row per input, failures first ({report.csv})",
    )
    await acreate_link_artifact(
        link=artifacts.gallery_link(report),
        link_text=f"Open the gallery of {batch_name} (original, mask, result)",
        key=artifacts.artifact_key(batch_name, "gallery"),
        description="The HTML gallery; a file:// link, it opens where the output folder is",
    )
