"""The per-job state machine behind the flow's stage tasks: prepare, submit, poll, download.

Each stage task calls `advance(..., until=STAGE)` for the jobs of its chunk. A job moves
submit → poll → download, and the ledger records each paid step as it happens, so any stage
(in this run or a later one) can finish what an earlier one left undone:

- succeeded before, outputs intact  → nothing is sent (skipped-already-done);
- a live task id in the ledger      → poll it, never submit again;
- remote FAILED / unknown / expired / result stays corrupt → one new submit (at most
  `max_resubmits` per run; a later run submits again);
- submit outcome unknown            → the job fails now; the next run submits again, knowingly;
- another input with the same content (same job key) → one at a time: the second finds the
  first's result in the ledger and gets a copy under its own name (paid once).

All functions here are plain async code, tested without Prefect; `tasks/` wraps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from enum import IntEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from inpaint_flows.client import NovitaClient
from inpaint_flows.errors import (
    DownloadError,
    ImageError,
    InputError,
    NovitaError,
    PollTimeoutError,
    SubmitOutcomeUnknown,
    TaskFailedError,
    TaskNotFoundError,
)
from inpaint_flows.images import encode_payload, prepare_job, validate_result_image
from inpaint_flows.ledger import Ledger, LedgerEntry, utc_now
from inpaint_flows.models import Job, JobOutcome, JobStatus, PreparedJob, ResultImage
from inpaint_flows.pacing import shared_limiter
from inpaint_flows.polling import FirstPoll
from inpaint_flows.secrets import resolve_api_key
from inpaint_flows.storage import atomic_write_bytes, is_temp_file_of, safe_join

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class Stage(IntEnum):
    SUBMITTED = 1
    POLLED = 2
    DONE = 3


class RunSettings(BaseModel):
    """Plain values every stage task needs; hashable, and free of secrets by construction."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    out_dir: str
    state_dir: str
    api_key_secret: str | None = None  # a Prefect Secret block NAME, never a key
    images_per_minute: float | None = None
    poll_timeout_s: float = 900.0
    min_poll_interval_s: float = 0.25
    max_poll_interval_s: float = 10.0
    request_timeout_s: float = 60.0
    max_resubmits: int = 1
    download_attempts: int = 3


class JobState(BaseModel):
    """A job in flight between stage tasks; `outcome` is set once the job is final."""

    model_config = ConfigDict(frozen=True)

    prepared: PreparedJob | None
    job: Job
    outcome: JobOutcome | None = None
    task_id: str | None = None
    images: tuple[ResultImage, ...] = ()
    seed_used: str | None = None
    resubmits: int = 0

    @property
    def final(self) -> bool:
        return self.outcome is not None


def _base_outcome(job: Job, prepared: PreparedJob | None) -> JobOutcome:
    return JobOutcome(
        name=job.name,
        image_path=job.image_path,
        mask_path=job.mask_path,
        status=JobStatus.PENDING,
        params=job.params,
        job_key=prepared.job_key if prepared else None,
        width=prepared.width if prepared else None,
        height=prepared.height if prepared else None,
        mask_coverage_pct=prepared.mask_coverage_pct if prepared else None,
        mask_source=job.mask_source,
        mask_ops=job.mask_recipe.ops.describe() or None if job.mask_recipe else None,
        mask_warnings="; ".join(prepared.mask_warnings) or None if prepared else None,
    )


def prepare(job: Job) -> JobState:
    """Read and check one job's files; an unusable input becomes a final `invalid` state."""
    try:
        prepared = prepare_job(job)
    except InputError as exc:
        outcome = _base_outcome(job, None).model_copy(
            update={"status": JobStatus.INVALID, "reason": exc.reason, "message": exc.message}
        )
        return JobState(prepared=None, job=job, outcome=outcome)
    return JobState(prepared=prepared, job=job)


def prepare_many(jobs: Sequence[Job]) -> list[JobState]:
    return [prepare(job) for job in jobs]


@asynccontextmanager
async def open_client(
    settings: RunSettings, connections: int | None = None
) -> AsyncIterator[NovitaClient]:
    """The one client of a run (or a stage task); the key is read here, at call time.

    `connections`: requests that may run at once (the in-flight limit), all kept open.
    """
    limiter = shared_limiter(settings.base_url, settings.images_per_minute)
    async with NovitaClient(
        resolve_api_key(settings.api_key_secret),
        settings.base_url,
        timeout=settings.request_timeout_s,
        limiter=limiter,
        connections=connections,
    ) as client:
        yield client


class JobRunner:
    """Moves jobs through their states with one client and one ledger."""

    def __init__(
        self,
        client: NovitaClient,
        ledger: Ledger,
        settings: RunSettings,
        first_poll: FirstPoll | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.settings = settings
        # Shared by a run's chunks, so what one chunk's tasks teach serves them all.
        self.first_poll = first_poll or FirstPoll(settings.max_poll_interval_s)
        self.out_dir = Path(settings.out_dir)
        self._temps: dict[Path, set[str]] = {}  # per folder: temporary files at first use
        # Entries changed in memory only (a finished poll's tallies), until the next write.
        self._unsaved: dict[str, LedgerEntry] = {}

    # -- helpers -------------------------------------------------------------------------
    def _finish(
        self, state: JobState, entry: LedgerEntry | None, status: JobStatus, **fields: object
    ) -> JobState:
        outcome = _base_outcome(state.job, state.prepared)
        update: dict[str, object] = {"status": status, "task_id": state.task_id}
        if entry is not None:
            update.update(
                task_id=entry.task_id or state.task_id,
                submits=entry.submits,
                attempts=entry.attempts,
                polls=entry.polls,
                submitted_at=entry.submitted_at,
                finished_at=entry.finished_at,
                seed_used=entry.seed_used,
                outputs=entry.outputs,
            )
            if entry.submitted_at and entry.finished_at:
                started = _parse(entry.submitted_at)
                update["latency_s"] = round(_parse(entry.finished_at) - started, 3)
        update.update(fields)
        return state.model_copy(update={"outcome": outcome.model_copy(update=update)})

    def _put(self, entry: LedgerEntry) -> LedgerEntry:
        self._unsaved.pop(entry.job_key, None)
        return self.ledger.put(entry)

    def _entry(self, state: JobState) -> LedgerEntry:
        assert state.prepared is not None
        entry = self._unsaved.pop(state.prepared.job_key, None)
        if entry is not None:
            return entry
        entry = self.ledger.get(state.prepared.job_key)
        if entry is None:
            entry = LedgerEntry(
                job_key=state.prepared.job_key, name=state.job.name, state="needs-submit"
            )
        return entry

    def _fail(self, state: JobState, entry: LedgerEntry, exc: NovitaError | InputError) -> JobState:
        entry = self._put(
            entry.model_copy(
                update={"finished_at": utc_now(), "reason": exc.reason, "message": exc.message}
            )
        )
        return self._finish(state, entry, JobStatus.FAILED, reason=exc.reason, message=exc.message)

    # -- the state machine ----------------------------------------------------------------
    async def advance(self, state: JobState, until: Stage) -> JobState:
        """Move one job as far as `until`, or to a final state; never raises NovitaError."""
        if state.final or state.prepared is None:
            return state
        # Inputs with the same content share one ledger entry (one paid task): one at a time.
        async with _content_lock(self.settings.state_dir, state.prepared.job_key):
            entry = self._entry(state)
            try:
                return await self._advance(state, entry, until)
            except (NovitaError, InputError) as exc:
                return self._fail(state, self._entry(state), exc)
            except Exception as exc:  # one job's surprise must not stop its chunk
                error = NovitaError(
                    f"{state.job.name}: unexpected {type(exc).__name__}: {exc}. The ledger "
                    "keeps what was paid for; rerun the batch to continue this job.",
                    reason="UNEXPECTED_ERROR",
                )
                return self._fail(state, self._entry(state), error)

    async def _advance(self, state: JobState, entry: LedgerEntry, until: Stage) -> JobState:
        if entry.state == "succeeded":
            done = self._reuse(state, entry)
            if done is not None:
                return done
            # Outputs were removed or damaged since: fetch them again from the same task.
            entry = self._put(entry.model_copy(update={"state": "submitted"}))
        while True:
            if entry.state in ("needs-submit", "submitting") or entry.task_id is None:
                state, entry = await self._submit(state, entry)
            else:
                state = state.model_copy(update={"task_id": entry.task_id})
            if until <= Stage.SUBMITTED:
                return state
            if not state.images:  # an earlier stage may already hold this task's result
                state, entry, retry = await self._poll(state, entry)
                if retry:
                    continue
            if until <= Stage.POLLED:
                return state
            state, entry, retry = await self._download(state, entry)
            if retry:
                continue
            return self._finish(state, entry, JobStatus.SUCCEEDED, reason=None, message=None)

    def _reuse(self, state: JobState, entry: LedgerEntry) -> JobState | None:
        """Finish a job from a succeeded entry without the network, or None if it cannot.

        The entry's outputs may belong to another input with the same content (same image,
        mask and parameters, another name): this job then gets copies under its own names, so
        each report row lists its own files while the task is paid for once.
        """
        own = outputs_for(entry, state.job.output_stem)
        shared = own != entry.outputs
        copied = False
        if not self.ledger.outputs_intact(entry, self.out_dir, own):
            if not (shared and self.ledger.outputs_intact(entry, self.out_dir)):
                return None
            for source, rel in zip(entry.outputs, own, strict=True):
                path = safe_join(self.out_dir, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._remove_stale_temps(path)
                atomic_write_bytes(path, (self.out_dir / source).read_bytes())
            copied = True
        fields: dict[str, object] = {"outputs": own, "reason": None, "message": None}
        if shared:
            fields.update(
                submits=0,
                attempts=0,
                polls=0,
                message=(
                    f"Same image, mask and parameters as {entry.name}: the result of its task "
                    f"{entry.task_id} serves this input too (copied, not paid for again)."
                ),
            )
        done = state.task_id is not None or copied
        status = JobStatus.SUCCEEDED if done else JobStatus.SKIPPED_ALREADY_DONE
        return self._finish(state, entry, status, **fields)

    async def _submit(self, state: JobState, entry: LedgerEntry) -> tuple[JobState, LedgerEntry]:
        assert state.prepared is not None
        image_b64, mask_b64 = encode_payload(state.job)
        entry = self._put(
            entry.model_copy(
                update={
                    "state": "submitting",
                    "submits": entry.submits + 1,
                    "task_id": None,
                    "name": state.job.name,
                }
            )
        )
        try:
            response = await self.client.submit(image_b64, mask_b64, state.job.params)
        except SubmitOutcomeUnknown:
            raise  # ledger stays "submitting": the next run submits again, knowingly
        except NovitaError:
            # The API answered with an error: no task was created, nothing was paid.
            self._put(
                entry.model_copy(update={"state": "needs-submit", "submits": entry.submits - 1})
            )
            raise
        finally:
            del image_b64, mask_b64
        entry = self._put(
            entry.model_copy(
                update={
                    "state": "submitted",
                    "task_id": response.task_id,
                    "attempts": entry.attempts + response.attempts,
                    "submitted_at": utc_now(),
                    "finished_at": None,
                    "reason": None,
                    "message": None,
                }
            )
        )
        return state.model_copy(update={"task_id": response.task_id, "images": ()}), entry

    def _needs_resubmit(
        self, state: JobState, entry: LedgerEntry, exc: NovitaError
    ) -> tuple[JobState, LedgerEntry, bool]:
        """Record that the remote task is gone or failed; resubmit once if allowed."""
        entry = self._put(
            entry.model_copy(
                update={
                    "state": "needs-submit",
                    "remote_failures": entry.remote_failures + 1,
                    "finished_at": utc_now(),
                    "reason": exc.reason,
                    "message": exc.message,
                }
            )
        )
        if state.resubmits >= self.settings.max_resubmits:
            raise exc
        return state.model_copy(update={"resubmits": state.resubmits + 1}), entry, True

    async def _poll(
        self, state: JobState, entry: LedgerEntry
    ) -> tuple[JobState, LedgerEntry, bool]:
        assert entry.task_id is not None
        deadline = time.monotonic() + self.settings.poll_timeout_s
        polls = 0
        if entry.submitted_at:  # a task of this run is polled first when it is likely done
            wait = self.first_poll.wait_s(time.time() - _parse(entry.submitted_at))
            await asyncio.sleep(min(wait, self.settings.poll_timeout_s))
        try:
            while True:
                try:
                    result = await self.client.get_task_result(entry.task_id)
                finally:
                    polls += 1
                if result.status == "TASK_STATUS_SUCCEED":
                    self.first_poll.observe(result.server_duration_s)
                    break
                if result.status == "TASK_STATUS_FAILED":
                    raise TaskFailedError(
                        f"{state.job.name}: Novita task {entry.task_id} failed: "
                        f"{result.reason or 'no reason given'}. It will be submitted again.",
                        reason="TASK_FAILED",
                    )
                # The last wait is cut short so the job is polled once more at its deadline:
                # a task the server expects to finish just after it still gets its chance.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PollTimeoutError(
                        f"{state.job.name}: task {entry.task_id} did not finish within "
                        f"{self.settings.poll_timeout_s:.0f} s (last status {result.status}). "
                        "Rerun the batch: it polls the same task again, no new submit."
                    )
                await asyncio.sleep(min(_poll_wait(result.eta, self.settings), remaining))
        except TaskNotFoundError as exc:
            entry = entry.model_copy(update={"polls": entry.polls + polls})
            return self._needs_resubmit(state, entry, exc)
        except NovitaError as exc:
            entry = self._put(entry.model_copy(update={"polls": entry.polls + polls}))
            if exc.reason == "TASK_FAILED":
                return self._needs_resubmit(state, entry, exc)
            raise
        # Not written yet: the download's ledger write records it (one fsynced write fewer per
        # job). A crash before then leaves the entry "submitted": the next run polls again.
        entry = entry.model_copy(update={"polls": entry.polls + polls, "seed_used": result.seed})
        self._unsaved[entry.job_key] = entry  # what a failure before that write records
        if not result.images:
            raise DownloadError(
                f"{state.job.name}: task {entry.task_id} succeeded but returned no images.",
                reason="NO_RESULT_IMAGES",
            )
        return (
            state.model_copy(update={"images": result.images, "seed_used": result.seed}),
            entry,
            False,
        )

    async def _download(
        self, state: JobState, entry: LedgerEntry
    ) -> tuple[JobState, LedgerEntry, bool]:
        multi = len(state.images) > 1
        outputs: list[str] = []
        sizes: list[int] = []
        refreshed = False
        index = 0
        while index < len(state.images):
            image = state.images[index]
            try:
                data, fmt = await self._fetch_valid(state, image)
            except DownloadError as exc:
                if exc.reason == "CORRUPT_RESULT_IMAGE":
                    # The task's stored result is damaged: fetching it again cannot help, so
                    # the task counts as failed remotely (one more submit, as for FAILED).
                    return self._needs_resubmit(state, entry, exc)
                if exc.reason != "RESULT_URL_EXPIRED":
                    raise
                if not refreshed:
                    # Ask the API again: it may hand out fresh URLs for the same task.
                    refreshed = True
                    state, entry, retry = await self._poll(state, entry)
                    if retry:
                        return state, entry, True
                    continue
                return self._needs_resubmit(state, entry, exc)
            suffix = f"_{index + 1}" if multi else ""
            rel = f"{state.job.output_stem}{suffix}.{EXTENSIONS[fmt]}"
            path = safe_join(self.out_dir, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temps(path)
            atomic_write_bytes(path, data)
            outputs.append(rel)
            sizes.append(len(data))
            index += 1
        entry = self._put(
            entry.model_copy(
                update={
                    "state": "succeeded",
                    "finished_at": utc_now(),
                    "outputs": tuple(outputs),
                    "output_stem": state.job.output_stem,
                    "output_sizes": tuple(sizes),
                    "reason": None,
                    "message": None,
                }
            )
        )
        return state, entry, False

    def _remove_stale_temps(self, path: Path) -> None:
        """Delete what a killed earlier write of `path` left: its hidden temporary file.

        An atomic write that is killed leaves `.NAME.XXXXXXXX.tmp` beside the target (never a
        partial target). Only this job writes `path`, so a temporary file of that name is stale.
        Each folder is listed once per runner, so a folder of many outputs costs one listing.
        """
        folder = path.parent
        temps = self._temps.get(folder)
        if temps is None:
            try:
                with os.scandir(folder) as entries:
                    temps = {e.name for e in entries if e.name.endswith(".tmp")}
            except OSError:
                temps = set()
            self._temps[folder] = temps
        for name in [n for n in temps if is_temp_file_of(n, path.name)]:
            temps.discard(name)
            with contextlib.suppress(OSError):
                (folder / name).unlink()

    async def _fetch_valid(self, state: JobState, image: ResultImage) -> tuple[bytes, str]:
        last: Exception | None = None
        for attempt in range(self.settings.download_attempts):
            data = await self.client.download(image.image_url)
            try:
                fmt, _, _ = validate_result_image(data)
                return data, fmt
            except ImageError as exc:
                last = exc
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        raise DownloadError(
            f"{state.job.name}: the result image of task {state.task_id} is not a complete "
            f"image after {self.settings.download_attempts} downloads ({last}). The task's "
            "stored result is damaged and cannot be fetched whole; rerunning the batch submits "
            "the job again (a new paid task).",
            reason="CORRUPT_RESULT_IMAGE",
            retryable=False,
        )


def outputs_for(entry: LedgerEntry, output_stem: str) -> tuple[str, ...]:
    """The entry's output paths as the job with `output_stem` names them."""
    stem = entry.output_stem
    if stem is None:  # an entry written before stems were recorded: outputs as written
        return entry.outputs
    if stem == output_stem:
        return entry.outputs
    return tuple(
        output_stem + rel[len(stem) :] if rel.startswith(stem) else rel for rel in entry.outputs
    )


_content_locks: weakref.WeakValueDictionary[tuple[int, str, str], asyncio.Lock] = (
    weakref.WeakValueDictionary()
)


def _content_lock(state_dir: str, job_key: str) -> asyncio.Lock:
    """The lock of one job key in one state directory, on the running event loop."""
    key = (id(asyncio.get_running_loop()), os.path.abspath(state_dir), job_key)
    lock = _content_locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        _content_locks[key] = lock
    return lock


def _poll_wait(eta: float | None, settings: RunSettings) -> float:
    """How long to wait before the next poll: the server's own estimate, clamped."""
    if eta is None or eta <= 0:
        return settings.min_poll_interval_s * 2
    return max(settings.min_poll_interval_s, min(settings.max_poll_interval_s, float(eta)))


def _parse(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
