"""Batch-wide faults: the first one stops new submits for the whole run, at once.

Some answers say nothing about one image and everything about the account or the way to the
API: a refused key (401/403), an exhausted balance, a checkpoint that does not exist, or no
connection at all. Sending the rest of a night's batch after one of these only repeats the
refusal (or, unreachable, spends minutes per job in retries), so the run's `BatchHalt` is set
by the first of them; jobs not yet submitted are then reported `not-submitted` with the cause
and what to do, while jobs already in flight are still polled and downloaded.

"Unreachable" is a streak, not one job's bad luck: connection failures of any requests of the
run, with no answer from the API in between, for at least `UNREACHABLE_AFTER_S` seconds and
`UNREACHABLE_FAILURES` failures. A blip shorter than that is ridden out by the retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from inpaint_flows.contract import BATCH_STOPPING_REASONS
from inpaint_flows.errors import BatchStoppedError, NovitaAPIError, NovitaError

UNREACHABLE_AFTER_S = 5.0
UNREACHABLE_FAILURES = 6
UNREACHABLE = "API_UNREACHABLE"
RATE_LIMITED_TOO_LONG = "RATE_LIMITED_TOO_LONG"
INTERRUPTED = "INTERRUPTED"


@dataclass(frozen=True)
class Stop:
    reason: str
    message: str
    at: float  # wall-clock seconds


class BatchHalt:
    """Whether (and why) this run stopped sending new work; set once, by the first cause."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.stop: Stop | None = None
        self._streak_start: float | None = None
        self._streak = 0

    @property
    def stopped(self) -> bool:
        return self.stop is not None

    def halt(self, reason: str, message: str) -> None:
        """Stop new submits with `reason`; a later cause does not replace the first."""
        if self.stop is None:
            self.stop = Stop(reason=reason, message=message, at=time.time())

    def error(self) -> BatchStoppedError:
        """The error a job that may not be submitted any more is reported with."""
        assert self.stop is not None
        return BatchStoppedError(self.stop.message, reason=self.stop.reason)

    def check(self) -> None:
        """Raise `BatchStoppedError` when the batch was stopped."""
        if self.stop is not None:
            raise self.error()

    # ---- what the client tells it ------------------------------------------------------

    def answered(self) -> None:
        """The API answered (any status): it is reachable."""
        self._streak = 0
        self._streak_start = None

    def connection_failed(self, detail: str) -> None:
        """A request got no answer at all (connect refused, reset, timeout)."""
        now = self._clock()
        if self._streak_start is None:
            self._streak_start = now
        self._streak += 1
        if self._streak >= UNREACHABLE_FAILURES and now - self._streak_start >= UNREACHABLE_AFTER_S:
            self.unreachable(
                f"for {now - self._streak_start:.0f} s ({self._streak} requests in a row "
                f"failed; last: {detail})"
            )

    def unreachable(self, how: str) -> None:
        """Stop the batch: the API could not be reached `how` (e.g. "for 6 s (...)")."""
        self.halt(
            UNREACHABLE,
            f"The API could not be reached {how}. New submits stopped. Check the network or "
            "the base URL, then rerun the same command: finished jobs are skipped and nothing "
            "is paid twice.",
        )

    def api_error(self, error: NovitaError) -> None:
        """An error answer: stops the batch when its reason is about the account."""
        if not isinstance(error, NovitaAPIError):
            return
        hint = BATCH_STOPPING_REASONS.get(error.reason)
        if hint is None and error.status_code == 401:
            hint = BATCH_STOPPING_REASONS["INVALID_API_KEY"]
        if hint is not None:
            self.halt(error.reason, f"{error.message} New submits stopped: {hint}")
