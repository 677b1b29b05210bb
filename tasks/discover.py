"""Find the jobs of a batch (thin wrapper over `inpaint_flows.jobs`)."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from inpaint_flows.jobs import discover_jobs
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams, Job


@task(name="discover-jobs", task_run_name="discover jobs in {source}", cache_policy=NO_CACHE)
async def discover(
    source: str,
    defaults: InpaintParams,
    mask: str | None = None,
    masks: MaskSettings | None = None,
) -> list[Job]:
    return await asyncio.to_thread(discover_jobs, source, defaults, mask, masks=masks)
