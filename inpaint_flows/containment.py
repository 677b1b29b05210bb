"""What a chunk whose task failed after all its retries leaves in the report: one row per input.

A chunk task fails only for something unexpected (a bug, a full disk): per-job API errors are
outcomes, not exceptions. Even then the batch writes its report, with every input of that chunk
as `failed` / `CHUNK_CRASHED` and the cause, instead of ending with no report at all. The ledger
still holds whatever was paid for, so a rerun polls those tasks instead of paying again.
"""

from __future__ import annotations

from collections.abc import Sequence

from inpaint_flows.job_record import JobRecord, report_row
from inpaint_flows.models import Job, JobOutcome, JobStatus

CHUNK_CRASHED = "CHUNK_CRASHED"


def crashed_chunk_outcomes(
    chunk: Sequence[Job],
    error: BaseException | str,
    *,
    api: str | None,
    reason: str = CHUNK_CRASHED,
    what: str = "the task running its chunk failed after its retries",
) -> list[JobOutcome]:
    """One `failed` row per job of `chunk` (or of a shard: `reason`, `what`), with the cause."""
    cause = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return [
        report_row(
            JobRecord(
                job=job,
                status=JobStatus.FAILED,
                reason=reason,
                message=(
                    f"{job.name}: {what} ({cause}). "
                    "What was paid for is in the ledger: rerun the batch (or rerun-failed) to "
                    "finish it without paying twice."
                ),
                api=api,
            )
        )
        for job in chunk
    ]
