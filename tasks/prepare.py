"""Load images and validate masks for one chunk of jobs (wrapper over `pipeline.prepare`)."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.cache_policies import NO_CACHE

from inpaint_flows.job_record import JobRecord
from inpaint_flows.models import Job
from inpaint_flows.pipeline import prepare_many


@task(
    name="load-and-validate",
    task_run_name="load+validate {label}",
    retries=1,
    retry_delay_seconds=2,
    cache_policy=NO_CACHE,
)
async def load_and_validate(jobs: list[Job], label: str) -> list[JobRecord]:
    """Decoding is CPU work: run it off the event loop so other chunks keep polling."""
    return await asyncio.to_thread(prepare_many, jobs)
