"""Publish a batch's dashboard artifacts (wrappers over `inpaint_flows.artifacts`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
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

from inpaint_flows import artifacts, progress
from inpaint_flows.finalize import BatchReport


@dataclass
class LiveProgress:
    """The run's progress, told as chunks finish: to its artifact and to in-process listeners.

    The artifact gets plain API calls, not task runs; listeners are `inpaint_flows.progress`'s.

    Chunks finish concurrently, so updates are sent one at a time, each with the count as it is
    when its turn comes: the server sees the percentage only rise, and the last update it gets
    is the latest (two updates in flight at once could otherwise land 100 % before 75 %).
    """

    artifact_id: UUID
    total: int
    done: int = 0
    _sending: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    async def start(cls, batch_name: str, total: int) -> LiveProgress:
        artifact_id = await acreate_progress_artifact(
            progress=0.0,
            key=artifacts.artifact_key(batch_name, "progress"),
            description=f"Jobs finished in batch {batch_name} (this run)",
        )
        return cls(artifact_id=artifact_id, total=total)

    async def advance(self, finished: int) -> None:
        """Count `finished` more jobs: listeners (the CLI bar) at once, the artifact in turn."""
        self.done += finished
        progress.report(self.done, self.total)
        if not self.total:
            return
        async with self._sending:
            await aupdate_progress_artifact(
                artifact_id=self.artifact_id,
                progress=artifacts.progress_percent(self.done, self.total),
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
