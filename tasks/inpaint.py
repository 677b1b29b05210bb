"""Submit, poll and download the jobs of one chunk (wrapper over `BatchRun.run_jobs`).

One task run per chunk, not one per stage: each job goes submit → poll → download on its own,
holding a slot of the run's in-flight limit, so slots are freed job by job. Per-job API errors
never raise out of this task: they become the job's outcome, so one bad item cannot stop its
chunk. Task retries cover only the unexpected (a crash in our code, a full disk); a retry is safe
because the ledger makes every step idempotent.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from inpaint_flows.batch import BatchRun
from inpaint_flows.finishing import JobFinisher, run_and_finish
from inpaint_flows.job_record import JobRecord


@task(
    name="inpaint-jobs",
    task_run_name="inpaint {label}",
    retries=2,
    retry_delay_seconds=exponential_backoff(2),
    cache_policy=NO_CACHE,
)
async def inpaint_jobs(
    records: list[JobRecord], run: BatchRun, label: str, finisher: JobFinisher | None = None
) -> list[JobRecord]:
    """`run` is the flow run's shared client, ledger and limits (passed, never looked up);
    `finisher` gets each job as it ends (its gallery thumbnails are made meanwhile)."""
    return await run_and_finish(run, records, finisher)
