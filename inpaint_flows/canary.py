"""Try a few jobs first, then ask a person before the rest of the batch is paid for.

A batch with `canary = K` runs K of its jobs (spread over the batch, so a canary of a folder
sorted by camera or by date sees more than its first few files), shows them (a gallery of their
own, `OUT/canary/index.html`, and a summary), then waits for one of three answers:

- approve: the rest runs as asked;
- approve with other request defaults: the jobs are found again with the new defaults; a canary
  job whose parameters did not change keeps its result (same job key, nothing sent), one whose
  parameters changed is redone, and the rest runs with the new defaults (each content is still
  paid at most once: the ledger is keyed by content + parameters);
- cancel: nothing more is sent; the rest is reported `not-submitted` with why.

Nobody answering within `canary_timeout_s` applies `canary_timeout_action`: `stop` (the default:
cancel's outcome, but the run ends Failed so a failure automation tells someone, and running the
batch again asks again without paying for the canary twice) or `approve`.

Who is asked: the Prefect dashboard by default (the run pauses with a form, `CanaryDecision`);
a process that can ask someone itself (the CLI in a terminal) registers a `Decider` with
`deciding_with`, as the CLI's progress bar listens to `progress`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from inpaint_flows.job_record import JobRecord, report_row
from inpaint_flows.models import InpaintParams, Job, JobOutcome, JobStatus

CANARY_DIR = "canary"  # under the output folder: the canary's own gallery
REASON_CANCELLED = "CANARY_CANCELLED"
REASON_TIMEOUT = "CANARY_NOT_APPROVED"
PAUSE_KEY = "canary"
# Prefect's own pause deadline lies this far after ours: at ours the run leaves the pause itself
# and writes its report; a pause Prefect lets expire can only end Failed, with Prefect's message.
PAUSE_GRACE_S = 60.0

Action = Literal["approve", "cancel", "timeout"]


# ------------------------------------------------------------------------------- choosing


def pick_canary(jobs: Sequence[Job], k: int) -> tuple[list[Job], list[Job]]:
    """(canary, rest): `k` jobs spread evenly over the batch, the others in their order.

    Only jobs without a discovery problem are picked (an input already known to be unusable
    tells nothing about the settings). A canary as large as the batch is no canary: nothing
    would be left to approve, so the batch simply runs. The pick is deterministic, so running
    the same batch again picks the same canary, which the ledger then skips (nothing paid
    twice).
    """
    usable = [i for i, job in enumerate(jobs) if job.problem is None]
    if k <= 0 or k >= len(usable):
        return [], list(jobs)  # off, or the whole batch: nothing would wait for an answer
    step = len(usable) / k
    chosen = {usable[min(len(usable) - 1, math.floor((i + 0.5) * step))] for i in range(k)}
    canary = [job for i, job in enumerate(jobs) if i in chosen]
    rest = [job for i, job in enumerate(jobs) if i not in chosen]
    return canary, rest


def changed_jobs(canary: Sequence[Job], found_again: Sequence[Job]) -> list[Job]:
    """The canary's jobs as found again with new defaults, where their parameters changed.

    A manifest row that sets a field itself keeps it whatever the defaults say, so only the
    jobs whose effective request changed are redone.
    """
    before = {job.name: job.params for job in canary}
    return [job for job in found_again if job.name in before and job.params != before[job.name]]


def held_back(jobs: Sequence[Job], reason: str, message: str, api: str | None) -> list[JobOutcome]:
    """Report rows for jobs the canary's answer kept from being sent (nothing paid)."""
    return [
        report_row(
            JobRecord(
                job=job,
                status=JobStatus.NOT_SUBMITTED,
                reason=reason,
                message=f"{job.name}: {message}",
                api=api,
            )
        )
        for job in jobs
    ]


def action_help(review: CanaryReview) -> str:
    """The help under the form's `action` field: what was tried, where to look, what each
    choice does (shown even where a dashboard hides the form's description)."""
    return (
        f"{review.headline()}. Look at the canary gallery first: {review.gallery} . "
        f"approve: run the rest ({review.waiting} job(s)). cancel: send nothing more (the rest "
        "is reported not-submitted)."
    )


# ------------------------------------------------------------------------------- the answer


# ------------------------------------------------------------------------------- the review


@dataclass(frozen=True)
class CanaryReview:
    """What the person deciding is shown: the canary's rows, its gallery, what waits."""

    batch_name: str
    outcomes: tuple[JobOutcome, ...]
    waiting: int  # jobs not sent yet, held until the answer
    gallery: str
    defaults: InpaintParams
    timeout_s: float
    timeout_action: Literal["stop", "approve"]

    @property
    def succeeded(self) -> int:
        ok = (JobStatus.SUCCEEDED, JobStatus.SKIPPED_ALREADY_DONE)
        return sum(1 for o in self.outcomes if o.status in ok)

    def headline(self) -> str:
        return (
            f"Canary of {self.batch_name}: {self.succeeded} of {len(self.outcomes)} done; "
            f"{self.waiting} job(s) wait for your approval"
        )


def canary_gallery_dir(out: str) -> Path:
    return Path(out) / CANARY_DIR


def with_absolute_outputs(outcomes: Sequence[JobOutcome], out: str) -> list[JobOutcome]:
    """Rows whose outputs point into the output folder from anywhere (the canary's gallery
    lives in a subfolder, and the results stay where the batch writes them)."""
    root = Path(out).resolve()
    return [o.evolve(outputs=tuple(str(root / rel) for rel in o.outputs)) for o in outcomes]


def review_markdown(review: CanaryReview) -> str:
    """The canary's summary: shown as an artifact and above the dashboard's resume form."""
    rule = (
        "the rest is **not sent** (reported `not-submitted`; run the batch again to be asked "
        "again, the canary is not paid twice)"
        if review.timeout_action == "stop"
        else "the rest **runs** as asked"
    )
    lines = [
        f"# {review.headline()}",
        "",
        f"- **Gallery:** `{review.gallery}` (original, mask and result side by side)",
        "- **Decide:** Resume this run and choose `approve` or `cancel`; change the request "
        "defaults in the form to redo the canary jobs whose request changes, then run the rest "
        "with them.",
        f"- **No answer within {review.timeout_s:.0f} s:** {rule}.",
        "",
        "| name | status | reason | outputs |",
        "|---|---|---|---|",
    ]
    for o in review.outcomes:
        outputs = ", ".join(Path(p).name for p in o.outputs)
        lines.append(f"| {o.name} | {o.status.value} | {o.reason or ''} | {outputs} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- the answer


@dataclass(frozen=True)
class Verdict:
    """The answer to a canary: approve (maybe with other defaults), cancel, or none in time."""

    action: Action
    defaults: InpaintParams | None = None  # set when approved with other request defaults
    by: str = "the dashboard"

    def settled(self, timeout_action: Literal["stop", "approve"]) -> Verdict:
        """A timeout becomes what the batch's timeout rule says; other answers stay."""
        if self.action == "timeout" and timeout_action == "approve":
            return Verdict("approve", None, by=f"{self.by} (timeout rule: approve)")
        return self

    def new_defaults(self, current: InpaintParams) -> InpaintParams | None:
        """The approved defaults when they differ from `current`, else None."""
        if self.action != "approve" or self.defaults is None or self.defaults == current:
            return None
        return self.defaults


def held_back_message(verdict: Verdict, review: CanaryReview) -> tuple[str, str]:
    """(reason, message) for the rows the answer kept from being sent."""
    if verdict.action == "cancel":
        return REASON_CANCELLED, (
            f"not sent: the canary ({len(review.outcomes)} job(s), gallery {review.gallery}) "
            f"was cancelled in {verdict.by}; nothing was paid for this input. Fix the settings "
            "and run the batch again (done jobs are not paid twice)."
        )
    return REASON_TIMEOUT, (
        f"not sent: the canary ({len(review.outcomes)} job(s), gallery {review.gallery}) was "
        f"not approved within {review.timeout_s:.0f} s; nothing was paid for this input. Run "
        "the batch again to be asked again (the canary is not paid twice), or with canary 0 "
        "to run the rest without asking."
    )


Decider = Callable[[CanaryReview], Awaitable[Verdict]]

_deciders: list[Decider] = []


@contextmanager
def deciding_with(decider: Decider) -> Iterator[None]:
    """Answer canaries of flows run in this process with `decider` (e.g. a console prompt)."""
    _deciders.append(decider)
    try:
        yield
    finally:
        _deciders.remove(decider)


def local_decider() -> Decider | None:
    """The decider registered in this process, if any (else the dashboard is asked)."""
    return _deciders[-1] if _deciders else None


CONSOLE_QUESTION = (
    "Approve the rest? [a]pprove, [c]ancel, or request fields to change as JSON "
    '(e.g. {"strength": 0.6}; the canary jobs they change are redone): '
)


def verdict_from_answer(text: str, defaults: InpaintParams, by: str) -> Verdict:
    """A typed answer to `CONSOLE_QUESTION` as a verdict; ValueError says what was wrong."""
    answer = text.strip()
    if answer.lower() in ("a", "approve", "y", "yes"):
        return Verdict("approve", by=by)
    if answer.lower() in ("c", "cancel", "n", "no"):
        return Verdict("cancel", by=by)
    if answer.startswith("{"):
        try:
            changes = json.loads(answer)
            if not isinstance(changes, dict):
                raise ValueError("not a JSON object")
            return Verdict("approve", defaults.with_overrides(changes), by=by)
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"Those request fields are not valid: {exc}") from None
    raise ValueError("Answer a (approve), c (cancel) or a JSON object of request fields.")
