"""The per-job state machine: prepare, then submit → poll → download, idempotently.

A job moves submit → poll → download in one call (`JobRunner.advance`), and the ledger records
each paid step as it happens, so a later run (or a retry of this one) finishes what an earlier one
left undone:

- succeeded before, outputs intact  → nothing is sent (skipped-already-done);
- a live task id in the ledger      → poll it, never submit again;
- remote FAILED / unknown / expired / result stays corrupt → one new submit (at most
  `Tuning.max_resubmits` per run; a later run submits again);
- submit outcome unknown            → the job fails now; the next run submits again, knowingly;
- the batch was stopped (auth, balance, unreachable API) before its submit → not-submitted,
  nothing paid; the next run submits it;
- another input with the same content (same job key) → one at a time: the second finds the
  first's result in the ledger and gets a copy under its own name (paid once).

Each job travels as one `JobRecord` (`job_record`): the runner updates it through `evolve` and
writes its store entry (`record.entry`) at each paid step; its report row is derived from it.
All functions here are plain async code, tested without Prefect; `tasks/` wraps them. The run's
collaborators (client, ledger, poll planner, content locks, submit slots) are passed in.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inpaint_flows.client import NovitaClient
from inpaint_flows.errors import (
    BatchStoppedError,
    DownloadError,
    ImageError,
    InputError,
    NovitaError,
    PollTimeoutError,
    StoreError,
    SubmitOutcomeUnknown,
    TaskFailedError,
    TaskNotFoundError,
)
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.job_record import JobRecord
from inpaint_flows.ledger import Ledger, LedgerEntry, utc_now
from inpaint_flows.ledger_entry import parse_utc
from inpaint_flows.models import Job, JobStatus, ResultImage
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.payload import encode_payload
from inpaint_flows.polling import PollPlanner
from inpaint_flows.result_images import ResultPreviews, checked_result_preview

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


@dataclass(frozen=True)
class Tuning:
    """Per-job knobs that are not batch settings: they follow from the API, not the user."""

    min_poll_interval_s: float = 0.25
    max_poll_interval_s: float = 10.0
    max_resubmits: int = 1
    download_attempts: int = 3


class ContentLocks:
    """One lock per job key for one run: inputs with the same content run one at a time."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, job_key: str) -> asyncio.Lock:
        lock = self._locks.get(job_key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[job_key] = lock
        return lock


def prepare(job: Job) -> JobRecord:
    """Read and check one job's files; an unusable input becomes a final `invalid` record."""
    try:
        prepared = prepare_job(job)
    except InputError as exc:
        return JobRecord(job=job, status=JobStatus.INVALID, reason=exc.reason, message=exc.message)
    return JobRecord(job=job, prepared=prepared)


def prepare_many(jobs: Sequence[Job]) -> list[JobRecord]:
    return [prepare(job) for job in jobs]


class JobRunner:
    """Moves jobs through their states with the run's client, ledger and shared helpers.

    Args:
        client: The run's one API client (its halt stops new submits batch-wide).
        ledger: Where each paid step is recorded.
        output: The batch's output folder (results are written there).
        poll_timeout_s: How long one job may wait for its remote task.
        planner: When to poll; shared by the run, so what one task teaches serves all.
        locks: The run's per-content locks.
        submitting: Submits that may be out at once (each holds its image as base64).
        api: Which API this is, for the report ("local (OpenCV) http://...", "novita").
        previews: Made from each downloaded result's pixels while its check decodes them (the
            gallery's thumbnails), so nothing decodes a result a second time.
    """

    def __init__(
        self,
        client: NovitaClient,
        ledger: Ledger,
        *,
        output: OutputFolder,
        poll_timeout_s: float,
        planner: PollPlanner | None = None,
        locks: ContentLocks | None = None,
        submitting: asyncio.Semaphore | None = None,
        tuning: Tuning = Tuning(),
        api: str | None = None,
        previews: ResultPreviews[Any] | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.tuning = tuning
        self.poll_timeout_s = poll_timeout_s
        self.planner = planner or PollPlanner(
            tuning.min_poll_interval_s, tuning.max_poll_interval_s
        )
        self.locks = locks or ContentLocks()
        self.submitting = submitting or asyncio.Semaphore(1_000_000)
        self.api = api
        self.output = output
        self.previews = previews
        # Entries changed in memory only (a finished poll's tallies), until the next write.
        self._unsaved: dict[str, LedgerEntry] = {}

    # -- helpers -------------------------------------------------------------------------
    def _finish(
        self,
        record: JobRecord,
        status: JobStatus,
        *,
        reason: str | None = None,
        message: str | None = None,
        shared_task: bool = False,
    ) -> JobRecord:
        return record.evolve(
            status=status, reason=reason, message=message, api=self.api, shared_task=shared_task
        )

    async def _save(
        self, record: JobRecord, *, final: bool = False, **changes: object
    ) -> JobRecord:
        """`record` with its store entry changed by `changes` (validated) and written.

        `final`: the job ends with this write, which also gives up its claim.
        """
        entry = _entry(record).evolve(**changes)
        self._unsaved.pop(entry.job_key, None)
        return record.evolve(entry=await self.ledger.put(entry, release=final))

    def _with_entry(self, record: JobRecord, stored: LedgerEntry | None) -> JobRecord:
        """`record` with its latest store entry: unsaved in memory, else `stored`, else new."""
        assert record.prepared is not None
        key = record.prepared.job_key
        entry = self._unsaved.pop(key, None) or stored
        if entry is None:
            entry = LedgerEntry(job_key=key, name=record.job.name, state="needs-submit")
        return record.evolve(entry=entry)

    async def _load(self, record: JobRecord) -> JobRecord:
        """`record` with its latest store entry, read from the store unless unsaved in memory."""
        assert record.prepared is not None
        key = record.prepared.job_key
        stored = None if key in self._unsaved else await self.ledger.get(key)
        return self._with_entry(record, stored)

    async def _fail(self, record: JobRecord, exc: NovitaError | InputError) -> JobRecord:
        record = await self._load(record)
        if isinstance(exc, BatchStoppedError):  # never sent: nothing to record, nothing paid
            return self._finish(
                record, JobStatus.NOT_SUBMITTED, reason=exc.reason, message=exc.message
            )
        record = await self._save(
            record, final=True, finished_at=utc_now(), reason=exc.reason, message=exc.message
        )
        return self._finish(record, JobStatus.FAILED, reason=exc.reason, message=exc.message)

    # -- the state machine ----------------------------------------------------------------
    async def advance(self, record: JobRecord) -> JobRecord:
        """Move one job to a final state; never raises NovitaError."""
        if record.final or record.prepared is None:
            return record
        # Inputs with the same content share one ledger entry (one paid task): one at a time,
        # in this run (the lock) and across runs (the claim: waits while another run holds it).
        key = record.prepared.job_key
        async with self.locks(key):
            try:
                async with self.ledger.claim(key, record.job.name) as stored:
                    loaded = self._with_entry(record, stored)  # as the claim read it
                    try:
                        return await self._advance(loaded)
                    except StoreError:
                        raise
                    except (NovitaError, InputError) as exc:
                        return await self._fail(record, exc)
                    except Exception as exc:  # one job's surprise must not stop its chunk
                        error = NovitaError(
                            f"{record.job.name}: unexpected {type(exc).__name__}: {exc}. The "
                            "ledger keeps what was paid for; rerun the batch to continue it.",
                            reason="UNEXPECTED_ERROR",
                        )
                        return await self._fail(record, error)
            except StoreError as exc:  # the store is unreachable, or another run took the job
                self._unsaved.pop(key, None)
                return self._finish(
                    record, JobStatus.FAILED, reason=exc.reason, message=exc.message
                )

    async def _advance(self, record: JobRecord) -> JobRecord:
        if _entry(record).state == "succeeded":
            done = await self._reuse(record)
            if done is not None:
                return done
            # Outputs were removed or damaged since: fetch them again from the same task.
            record = await self._save(record, state="submitted")
        while True:
            entry = _entry(record)
            if entry.state in ("needs-submit", "submitting") or entry.task_id is None:
                async with self.submitting:
                    record = await self._submit(record)
            if not record.images:  # a refreshed poll may already hold this task's result
                record, retry = await self._poll(record)
                if retry:
                    continue
            record, retry = await self._download(record)
            if retry:
                continue
            return self._finish(record, JobStatus.SUCCEEDED)

    async def _reuse(self, record: JobRecord) -> JobRecord | None:
        """Finish a job from a succeeded entry without the network, or None if it cannot.

        The entry's outputs may belong to another input with the same content (same image,
        mask and parameters, another name): this job then gets copies under its own names, so
        each report row lists its own files while the task is paid for once.
        """
        entry = _entry(record)
        own = entry.outputs_for(record.job.output_stem)
        shared = own != entry.outputs
        copied = False
        if not self.ledger.outputs_intact(entry, self.output, own):
            if not (shared and self.ledger.outputs_intact(entry, self.output)):
                return None
            for source, rel in zip(entry.outputs, own, strict=True):
                data = await asyncio.to_thread(self.output.read_result, source)
                await self.output.write_result(rel, data)
            copied = True
        message = None
        if shared:
            message = (
                f"Same image, mask and parameters as {entry.name}: the result of its task "
                f"{entry.task_id} serves this input too (copied, not paid for again)."
            )
        status = JobStatus.SUCCEEDED if copied else JobStatus.SKIPPED_ALREADY_DONE
        return self._finish(record, status, message=message, shared_task=shared)

    async def _submit(self, record: JobRecord) -> JobRecord:
        self.client.halt.check()  # stopped batch-wide: not sent, nothing written
        image_b64, mask_b64 = encode_payload(record.job, record.prepared)
        record = await self._save(
            record,
            state="submitting",
            submits=_entry(record).submits + 1,
            task_id=None,
            name=record.job.name,
        )
        try:
            response = await self.client.submit(image_b64, mask_b64, record.job.params)
        except SubmitOutcomeUnknown:
            raise  # ledger stays "submitting": the next run submits again, knowingly
        except NovitaError:
            # The API answered with an error, or the request never left: no task was created,
            # nothing was paid.
            await self._save(record, state="needs-submit", submits=_entry(record).submits - 1)
            if self.client.halt.stopped:  # this refusal (or its cause) stopped the batch
                raise self.client.halt.error() from None
            raise
        finally:
            del image_b64, mask_b64
        record = await self._save(
            record,
            state="submitted",
            task_id=response.task_id,
            attempts=_entry(record).attempts + response.attempts,
            submitted_at=utc_now(),
            finished_at=None,
            reason=None,
            message=None,
        )
        return record.evolve(images=(), rate_limited=record.rate_limited + response.rate_limited)

    async def _needs_resubmit(self, record: JobRecord, exc: NovitaError) -> tuple[JobRecord, bool]:
        """Record that the remote task is gone or failed; resubmit once if allowed."""
        record = await self._save(
            record,
            state="needs-submit",
            remote_failures=_entry(record).remote_failures + 1,
            finished_at=utc_now(),
            reason=exc.reason,
            message=exc.message,
        )
        if record.resubmits >= self.tuning.max_resubmits:
            raise exc
        return record.evolve(resubmits=record.resubmits + 1), True

    async def _poll(self, record: JobRecord, *, learn: bool = True) -> tuple[JobRecord, bool]:
        entry = _entry(record)
        task_id = entry.task_id
        assert task_id is not None
        deadline = time.monotonic() + self.poll_timeout_s
        polls = 0
        # Seconds since the submit was answered, by the wall clock the ledger records; None for
        # a task of an earlier run that recorded no time (polled at once).
        submitted = parse_utc(entry.submitted_at) if entry.submitted_at else None
        scout = self.planner.enlist() if learn else False  # a refresh is no scout
        if submitted is not None:  # polled first when tasks like it are usually done
            wait = self.planner.first_wait_s(time.time() - submitted, scout=scout)
            await asyncio.sleep(min(wait, self.poll_timeout_s))
        try:
            while True:
                try:
                    result = await self.client.get_task_result(task_id)
                finally:
                    polls += 1
                elapsed = time.time() - submitted if submitted is not None else None
                if result.status == "TASK_STATUS_SUCCEED":
                    # Learn the duration: the server's own, exact, when it says; else when this
                    # poll found it done (a task of an earlier run teaches nothing).
                    if learn and result.server_duration_s is not None:
                        self.planner.observe(result.server_duration_s)
                    elif learn and elapsed is not None and elapsed < self.poll_timeout_s:
                        self.planner.observe(elapsed, at_first_poll=polls == 1)
                    break
                if result.status == "TASK_STATUS_FAILED":
                    raise TaskFailedError(
                        f"{record.job.name}: Novita task {task_id} failed: "
                        f"{result.reason or 'no reason given'}. It will be submitted again.",
                        reason="TASK_FAILED",
                    )
                # The last wait is cut short so the job is polled once more at its deadline:
                # a task the server expects to finish just after it still gets its chance.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PollTimeoutError(
                        f"{record.job.name}: task {task_id} did not finish within "
                        f"{self.poll_timeout_s:.0f} s (last status {result.status}). "
                        "Rerun the batch: it polls the same task again, no new submit."
                    )
                wait = self.planner.next_wait_s(elapsed or 0.0, result.eta, scout=scout)
                await asyncio.sleep(min(wait, remaining))
        except TaskNotFoundError as exc:
            record = record.evolve(entry=entry.evolve(polls=entry.polls + polls))
            return await self._needs_resubmit(record, exc)
        except NovitaError as exc:
            record = await self._save(record, polls=entry.polls + polls)
            if exc.reason == "TASK_FAILED":
                return await self._needs_resubmit(record, exc)
            raise
        # Not written yet: the download's ledger write records it (one fsynced write fewer per
        # job). A crash before then leaves the entry "submitted": the next run polls again.
        entry = entry.evolve(polls=entry.polls + polls, seed_used=result.seed)
        self._unsaved[entry.job_key] = entry  # what a failure before that write records
        if not result.images:
            raise DownloadError(
                f"{record.job.name}: task {task_id} succeeded but returned no images.",
                reason="NO_RESULT_IMAGES",
            )
        return record.evolve(entry=entry, images=result.images), False

    async def _download(self, record: JobRecord) -> tuple[JobRecord, bool]:
        multi = len(record.images) > 1
        outputs: list[str] = []
        sizes: list[int] = []
        refreshed = False
        index = 0
        while index < len(record.images):
            image = record.images[index]
            try:
                data, fmt, preview = await self._fetch_valid(record, image)
            except DownloadError as exc:
                if exc.reason == "CORRUPT_RESULT_IMAGE":
                    # The task's stored result is damaged: fetching it again cannot help, so
                    # the task counts as failed remotely (one more submit, as for FAILED).
                    return await self._needs_resubmit(record, exc)
                if exc.reason != "RESULT_URL_EXPIRED":
                    raise
                if not refreshed:
                    # Ask the API again: it may hand out fresh URLs for the same task.
                    refreshed = True
                    record, retry = await self._poll(record, learn=False)
                    if retry:
                        return record, True
                    continue
                return await self._needs_resubmit(record, exc)
            suffix = f"_{index + 1}" if multi else ""
            rel = f"{record.job.output_stem}{suffix}.{EXTENSIONS[fmt]}"
            await self.output.write_result(rel, data)
            if preview is not None and self.previews is not None:
                self.previews.keep(rel, preview)
            outputs.append(rel)
            sizes.append(len(data))
            index += 1
        record = await self._save(
            record,
            final=True,
            state="succeeded",
            finished_at=utc_now(),
            outputs=tuple(outputs),
            output_stem=record.job.output_stem,
            output_sizes=tuple(sizes),
            reason=None,
            message=None,
        )
        return record, False

    async def _fetch_valid(
        self, record: JobRecord, image: ResultImage
    ) -> tuple[bytes, str, object | None]:
        """A result's bytes, proved whole by a full decode, its format and its preview."""
        last: Exception | None = None
        for attempt in range(self.tuning.download_attempts):
            data = await self.client.download(image.image_url)
            try:
                # The full decode (~3 ms for a 384 px PNG) runs off the event loop, as above.
                fmt, preview = await asyncio.to_thread(checked_result_preview, data, self.previews)
                return data, fmt, preview
            except ImageError as exc:
                last = exc
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        raise DownloadError(
            f"{record.job.name}: the result image of task {_entry(record).task_id} is not a "
            f"complete image after {self.tuning.download_attempts} downloads ({last}). The task's "
            "stored result is damaged and cannot be fetched whole; rerunning the batch submits "
            "the job again (a new paid task).",
            reason="CORRUPT_RESULT_IMAGE",
            retryable=False,
        )


def _entry(record: JobRecord) -> LedgerEntry:
    """The record's store entry, which every job the runner moves has once it is claimed."""
    assert record.entry is not None
    return record.entry
