"""One job's durable progress in the job store (`ledger`): its state and what was paid for.

It is the part of a job's record (`job_record.JobRecord.entry`) that outlives the run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from inpaint_flows.models import FrozenModel

LedgerState = Literal["submitting", "submitted", "succeeded", "needs-submit"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_utc(iso: str) -> float:
    """The POSIX time of a timestamp `utc_now` wrote."""
    return datetime.fromisoformat(iso).timestamp()


class LedgerEntry(FrozenModel):
    """The durable record of one job.

    `state`:
    - submitting: a submit was sent and not answered (crash or unknown outcome); a paid task
      may exist that we cannot find: the next run submits again and says so.
    - submitted: `task_id` is live as far as we know; the next run polls it.
    - needs-submit: the remote task FAILED, expired, is unknown or its stored result is damaged;
      the next run submits anew.
    - succeeded: `outputs` (relative to the output dir) are complete; nothing more to do.
    """

    job_key: str
    name: str
    state: LedgerState
    task_id: str | None = None
    submits: int = 0  # submits that were sent (paid, or possibly paid), across all runs
    attempts: int = 0
    polls: int = 0
    remote_failures: int = 0
    submitted_at: str | None = None
    finished_at: str | None = None
    seed_used: str | None = None
    outputs: tuple[str, ...] = ()
    output_sizes: tuple[int, ...] = ()
    output_stem: str | None = None  # the stem `outputs` were named from (None: older entries)
    reason: str | None = None
    message: str | None = None

    def outputs_for(self, output_stem: str) -> tuple[str, ...]:
        """The entry's output paths as the job with `output_stem` names them."""
        stem = self.output_stem
        if stem is None:  # an entry written before stems were recorded: outputs as written
            return self.outputs
        if stem == output_stem:
            return self.outputs
        return tuple(
            output_stem + rel[len(stem) :] if rel.startswith(stem) else rel for rel in self.outputs
        )
