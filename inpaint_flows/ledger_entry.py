"""One job's durable record in the ledger (`ledger`): its state and what was paid for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

LedgerState = Literal["submitting", "submitted", "succeeded", "needs-submit"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LedgerEntry(BaseModel):
    """The durable record of one job.

    `state`:
    - submitting: a submit was sent and not answered (crash or unknown outcome); a paid task
      may exist that we cannot find: the next run submits again and says so.
    - submitted: `task_id` is live as far as we know; the next run polls it.
    - needs-submit: the remote task FAILED, expired, is unknown or its stored result is damaged;
      the next run submits anew.
    - succeeded: `outputs` (relative to the output dir) are complete; nothing more to do.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

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

    def evolve(self, **changes: object) -> LedgerEntry:
        """A copy with `changes`, validated: an unknown or mistyped field is an error."""
        return LedgerEntry.model_validate({**dict(self), **changes})
