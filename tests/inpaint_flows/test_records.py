"""Job records are updated with validation: a misspelt or mistyped field is an error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inpaint_flows.ledger import LedgerEntry
from inpaint_flows.models import InpaintParams, Job, JobOutcome, JobStatus
from inpaint_flows.pipeline import JobState

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


def test_a_misspelt_report_row_or_job_state_field_raises() -> None:
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
    state = JobState(prepared=None, job=JOB)
    with pytest.raises(ValidationError):
        state.evolve(task="x")
    with pytest.raises(ValidationError):
        state.evolve(resubmits="twice")
