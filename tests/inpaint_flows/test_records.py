"""Job records are updated with validation: a misspelt or mistyped field is an error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inpaint_flows.job_record import JobRecord, report_row
from inpaint_flows.ledger import LedgerEntry
from inpaint_flows.models import InpaintParams, Job, JobOutcome, JobStatus

JOB = Job(
    name="a.png",
    image_path="a.png",
    mask_path="a_mask.png",
    params=InpaintParams(),
    output_stem="a",
)


def test_a_misspelt_ledger_field_raises() -> None:
    entry = LedgerEntry(job_key="k", name="a.png", state="submitted")
    assert entry.evolve(polls=3).polls == 3
    with pytest.raises(ValidationError, match="stat"):
        entry.evolve(stat="succeeded")
    with pytest.raises(ValidationError):
        entry.evolve(state="done")  # not a ledger state
    with pytest.raises(ValidationError):
        entry.evolve(polls="many")


def test_a_misspelt_report_row_or_job_record_field_raises() -> None:
    row = JobOutcome(
        name="a.png",
        image_path="a.png",
        mask_path=None,
        status=JobStatus.FAILED,
        params=InpaintParams(),
    )
    assert row.evolve(status=JobStatus.SUCCEEDED).status is JobStatus.SUCCEEDED
    with pytest.raises(ValidationError):
        row.evolve(statsu=JobStatus.SUCCEEDED)
    record = JobRecord(job=JOB)
    assert record.evolve(resubmits=1).resubmits == 1
    with pytest.raises(ValidationError, match="task_id"):
        record.evolve(task_id="x")  # the task id lives in the store entry, once
    with pytest.raises(ValidationError):
        record.evolve(resubmits="twice")
    with pytest.raises(ValidationError):
        record.evolve(status="done")  # not a job status
    with pytest.raises(ValidationError):
        record.evolve(entry={"job_key": "k", "name": "a.png", "state": "finished"})


def test_the_report_row_is_derived_from_the_record() -> None:
    """Task id, seed and tallies come from the store entry; nothing is stored twice."""
    entry = LedgerEntry(
        job_key="k",
        name="a.png",
        state="succeeded",
        task_id="t-1",
        submits=1,
        attempts=2,
        polls=3,
        submitted_at="2024-01-01T00:00:00.000+00:00",
        finished_at="2024-01-01T00:00:01.500+00:00",
        seed_used="42",
        outputs=("a.png",),
        output_stem="a",
    )
    record = JobRecord(job=JOB, entry=entry, rate_limited=1)
    assert not record.final and record.outcome is None
    with pytest.raises(ValueError, match="not final"):
        report_row(record)
    done = record.evolve(status=JobStatus.SUCCEEDED, api="local")
    row = report_row(done)
    assert row == done.outcome
    assert (row.task_id, row.seed_used, row.submits, row.attempts, row.polls) == (
        "t-1",
        "42",
        1,
        2,
        3,
    )
    assert (row.latency_s, row.outputs, row.rate_limited, row.api) == (1.5, ("a.png",), 1, "local")
    # another input with the same content: its own file names, nothing paid on its row
    twin = JOB.evolve(name="b.png", image_path="b.png", output_stem="b")
    copied = report_row(
        JobRecord(job=twin, entry=entry, status=JobStatus.SUCCEEDED, shared_task=True)
    )
    assert (copied.outputs, copied.submits, copied.attempts, copied.polls) == (("b.png",), 0, 0, 0)
    assert copied.task_id == "t-1"
