"""One job's record: its input, its check, its durable progress and this run's extras.

A job's progress has one typed shape, `JobRecord`, updated only through its validated `evolve`
(a misspelt or mistyped field is an error). Each fact is held once:

- `job`: the input as discovery found it;
- `prepared`: what its check measured (None when the inputs were refused);
- `entry`: its durable progress, the `LedgerEntry` the job store saves as it is (task id,
  submits, polls, seed, outputs...): the runner writes `record.entry`, never a copy;
- `images`, `resubmits`, `rate_limited`: what only this run needs while the job is in flight;
- `status`, `reason`, `message`, `api`, `shared_task`: how it ended, set once it is final.

The report row is derived from the record by `report_row`, never stored beside it.
"""

from __future__ import annotations

from inpaint_flows.ledger_entry import LedgerEntry, parse_utc
from inpaint_flows.models import (
    FrozenModel,
    Job,
    JobOutcome,
    JobStatus,
    PreparedJob,
    ResultImage,
)

__all__ = ["JobRecord", "report_row"]


class JobRecord(FrozenModel):
    """Everything known about one job, from its discovery to its report row."""

    job: Job
    prepared: PreparedJob | None = None  # None: not checked, or the inputs were refused
    entry: LedgerEntry | None = None  # the job store's entry for its job key, once read
    # In flight, this run only.
    images: tuple[ResultImage, ...] = ()  # the finished task's results, to download
    resubmits: int = 0  # new submits this run made after the remote task failed or vanished
    rate_limited: int = 0  # 429s this run's submits met
    # How it ended: `status` is set once, when the job is final.
    status: JobStatus | None = None
    reason: str | None = None
    message: str | None = None
    api: str | None = None  # which API this job met (None: it never reached one)
    shared_task: bool = False  # its outputs are another input's (same content): nothing paid

    @property
    def final(self) -> bool:
        return self.status is not None

    @property
    def outcome(self) -> JobOutcome | None:
        """The report row, once the job is final (`report_row`)."""
        return report_row(self) if self.final else None


def report_row(record: JobRecord) -> JobOutcome:
    """A final job's report row, derived from its input, its checks and its store entry."""
    if record.status is None:
        raise ValueError(f"{record.job.name} is not final yet: it has no report row.")
    job, prepared, entry = record.job, record.prepared, record.entry
    row: dict[str, object] = {
        "name": job.name,
        "status": record.status,
        "reason": record.reason,
        "message": record.message,
        "image_path": job.image_path,
        "mask_path": job.mask_path,
        "params": job.params,
        "mask_source": job.mask_source,
        "mask_ops": job.mask_ops,
        "rate_limited": record.rate_limited,
        "api": record.api,
    }
    if prepared is not None:
        row.update(
            job_key=prepared.job_key,
            width=prepared.width,
            height=prepared.height,
            mask_coverage_pct=prepared.mask_coverage_pct,
            mask_warnings="; ".join(prepared.mask_warnings) or None,
        )
    if entry is not None:
        done = record.status in (JobStatus.SUCCEEDED, JobStatus.SKIPPED_ALREADY_DONE)
        row.update(
            task_id=entry.task_id,
            submits=entry.submits,
            attempts=entry.attempts,
            polls=entry.polls,
            submitted_at=entry.submitted_at,
            finished_at=entry.finished_at,
            seed_used=entry.seed_used,
            # a finished job lists its own files (copies, when another input's task served it)
            outputs=entry.outputs_for(job.output_stem) if done else entry.outputs,
        )
        if record.shared_task:  # paid for by the row of the input that made the task
            row.update(submits=0, attempts=0, polls=0)
        if entry.submitted_at and entry.finished_at:
            latency = parse_utc(entry.finished_at) - parse_utc(entry.submitted_at)
            row["latency_s"] = round(latency, 3)
    return JobOutcome.model_validate(row)
