"""Check the batch's model names against the API before anything is paid (wraps `check`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inpaint_flows.batch import BatchRun
from inpaint_flows.check import NameCheck, check_names
from inpaint_flows.models import Job


@task(name="check-names", task_run_name="check model names", cache_policy=NO_CACHE)
async def check_model_names(jobs: list[Job], run: BatchRun) -> NameCheck:
    return await check_names(run.client, {job.params for job in jobs})
