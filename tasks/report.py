"""Write the batch report and gallery (wrapper over `inpaint_flows.batch.finalize_report`)."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from inpaint_flows.finalize import BatchReport, GalleryLink, finalize_report
from inpaint_flows.gallery import Thumbnailer
from inpaint_flows.models import JobOutcome
from inpaint_flows.output_folder import OutputFolder


@task(
    name="write-report",
    task_run_name="write report to {out_dir}",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
)
async def write_report(
    outcomes: list[JobOutcome],
    out_dir: str | OutputFolder,
    title: str,
    merge: bool = False,
    api: str | None = None,
    thumbnails: Thumbnailer | None = None,
    link: GalleryLink | None = None,
) -> BatchReport:
    return await asyncio.to_thread(
        finalize_report,
        outcomes,
        out_dir,
        title=title,
        merge=merge,
        api=api,
        thumbnails=thumbnails,
        link=link or GalleryLink(),
    )
