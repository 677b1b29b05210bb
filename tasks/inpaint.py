"""Submit, poll and download for one chunk of jobs (wrappers over `pipeline.advance_many`).

Per-job API errors never raise out of these tasks: they become the job's outcome, so one bad
item cannot stop its chunk. Task retries cover only the unexpected (a crash in our code, a
full disk); a retry is safe because the ledger makes every step idempotent.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from inpaint_flows.pipeline import JobState, RunSettings, Stage, advance_many

_RETRIES = {"retries": 2, "retry_delay_seconds": exponential_backoff(2), "cache_policy": NO_CACHE}


@task(name="submit-inpainting", task_run_name="submit {label}", **_RETRIES)  # type: ignore[call-overload]
async def submit_inpainting(
    states: list[JobState], settings: RunSettings, label: str
) -> list[JobState]:
    return await advance_many(states, settings, Stage.SUBMITTED)


@task(name="poll-results", task_run_name="poll {label}", **_RETRIES)  # type: ignore[call-overload]
async def poll_results(states: list[JobState], settings: RunSettings, label: str) -> list[JobState]:
    return await advance_many(states, settings, Stage.POLLED)


@task(name="download-results", task_run_name="download {label}", **_RETRIES)  # type: ignore[call-overload]
async def download_results(
    states: list[JobState], settings: RunSettings, label: str
) -> list[JobState]:
    return await advance_many(states, settings, Stage.DONE)
