"""Submit, poll and download the jobs of one chunk (wrapper over `batch.run_jobs`).

One task run per chunk, not one per stage: each job goes submit → poll → download on its own,
holding a slot of the run's in-flight gate, so slots are freed job by job instead of at stage
barriers (issue 6 measured the three stage tasks per chunk at 1.5x a plain asyncio loop).
Per-job API errors never raise out of this task: they become the job's outcome, so one bad
item cannot stop its chunk. Task retries cover only the unexpected (a crash in our code, a
full disk); a retry is safe because the ledger makes every step idempotent.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from inpaint_flows.batch import run_jobs
from inpaint_flows.pipeline import JobState, RunSettings


@task(
    name="inpaint-jobs",
    task_run_name="inpaint {label}",
    retries=2,
    retry_delay_seconds=exponential_backoff(2),
    cache_policy=NO_CACHE,
)
async def inpaint_jobs(
    states: list[JobState], settings: RunSettings, label: str, gate: str | None = None
) -> list[JobState]:
    """`gate` names the flow run's in-flight gate (`batch.in_flight_gate`), a plain string."""
    return await run_jobs(states, settings, gate)
