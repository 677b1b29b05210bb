"""The batch flow: discover → check names → [canary → approval] → per chunk (load+validate →
inpaint) → report.

Only orchestration lives here: which tasks run, in what order, how many at once. Per-job work,
retries, pacing, batch-wide stops and idempotence live in `inpaint_flows` and are wrapped by
`tasks/`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed, State
from prefect.utilities.annotations import quote

from inpaint_flows.approval import ask_dashboard
from inpaint_flows.batch import BatchRun, open_run
from inpaint_flows.canary import (
    Verdict,
    changed_jobs,
    held_back,
    held_back_message,
    local_decider,
    pick_canary,
)
from inpaint_flows.check import with_name_problems
from inpaint_flows.chunking import chunk_label, chunk_size_for, chunked, chunks_open_for
from inpaint_flows.containment import crashed_chunk_outcomes
from inpaint_flows.endpoint import resolve_endpoint
from inpaint_flows.finalize import BatchReport
from inpaint_flows.ledger import exclusive_use
from inpaint_flows.models import Job, JobOutcome
from inpaint_flows.settings import BatchSettings
from inpaint_flows.spec import failed_names, load_settings, save_settings
from tasks.artifacts import LiveProgress, publish
from tasks.canary import publish_canary
from tasks.check import check_model_names
from tasks.discover import discover
from tasks.inpaint import inpaint_jobs
from tasks.prepare import load_and_validate
from tasks.report import write_report

T = TypeVar("T")


def _batch_run_name() -> str:
    """`inpaint <batch name>`, the name `BatchSettings.name` gives (parameters may be a dict)."""
    settings = BatchSettings.model_validate(flow_run.parameters.get("settings"))
    return f"inpaint {settings.name}"


def _unwalked(value: T) -> T:
    """`value` marked (`quote`) so Prefect does not walk every job's fields looking for futures.

    Measured: walking the chunks' jobs cost ~1.5 s of CPU in a 1,000-job batch.
    """
    return cast(T, quote(value))


async def _inpaint(
    jobs: list[Job],
    run: BatchRun,
    *,
    size: int,
    lanes: asyncio.Semaphore,
    live: LiveProgress,
) -> list[JobOutcome]:
    """Every job's report row: chunks of `size` jobs, `lanes` chunks open at once."""
    logger = get_run_logger()
    chunks = chunked(jobs, size)

    async def run_chunk(index: int, chunk: list[Job]) -> list[JobOutcome]:
        label = chunk_label(index, len(chunks), [job.name for job in chunk])
        async with lanes:
            states = await load_and_validate(_unwalked(chunk), label)
            states = await inpaint_jobs(_unwalked(states), _unwalked(run), label)
        await live.advance(len(chunk))
        return [s.outcome for s in states if s.outcome]  # only report rows stay

    results = await asyncio.gather(
        *(run_chunk(i, c) for i, c in enumerate(chunks)), return_exceptions=True
    )
    # A chunk whose task failed after its retries still gives one row per input.
    outcomes: list[JobOutcome] = []
    for chunk, result in zip(chunks, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancellation and interrupts are not a chunk's failure
            logger.error("A chunk failed after its retries: %s", result)
            outcomes += crashed_chunk_outcomes(chunk, result, api=run.endpoint.label)
        else:
            outcomes += result
    return outcomes


async def _with_canary(
    canary: list[Job],
    rest: list[Job],
    settings: BatchSettings,
    inpaint: Callable[[list[Job]], Awaitable[list[JobOutcome]]],
    find_jobs: Callable[[BatchSettings], Awaitable[list[Job]]],
    checked: Callable[[list[Job], BatchRun], Awaitable[list[Job]]],
    run: BatchRun,
    live: LiveProgress,
) -> tuple[list[JobOutcome], Verdict | None, BatchSettings]:
    """The canary first, then the answer decides what happens to the rest.

    Returns every job's row, the answer (None if none was asked) and the settings the rest ran
    with (new request defaults when approved with them).
    """
    logger = get_run_logger()
    tried = await inpaint(canary)
    if run.halt.stopped:
        # Stopped batch-wide during the canary (key, balance, API): nothing to ask; the rest is
        # reported not-submitted with that cause, as in any stopped batch.
        return tried + await inpaint(rest), None, settings
    api = run.endpoint.label
    review = await publish_canary(_unwalked(tried), settings, len(rest), api)
    decide = local_decider() or ask_dashboard
    verdict = (await decide(review)).settled(settings.canary_timeout_action)
    logger.info("Canary answered by %s: %s", verdict.by, verdict.action)
    new_defaults = verdict.new_defaults(settings.defaults)
    if new_defaults is not None:
        # The jobs found again with the new defaults: a canary job whose request did not
        # change keeps its row (same job key); a changed one is redone with the rest.
        settings = settings.replace(defaults=new_defaults)
        save_settings(settings)
        found = await checked(await find_jobs(settings), run)
        redo = changed_jobs(canary, found)
        tried = [o for o in tried if o.name not in {job.name for job in redo}]
        rest = redo + [job for job in found if job.name not in {j.name for j in canary}]
        live.total += len(redo)
        logger.info("Canary: %d job(s) redone with the new defaults", len(redo))
    if verdict.action == "approve":
        return tried + await inpaint(rest), verdict, settings
    # Inputs already known to be unusable cost nothing: reported invalid as usual.
    unusable = [job for job in rest if job.problem is not None]
    held = [job for job in rest if job.problem is None]
    outcomes = tried + await inpaint(unusable)
    return outcomes + held_back(held, *held_back_message(verdict, review), api), verdict, settings


@flow(name="inpaint-batch", flow_run_name=_batch_run_name, log_prints=False)
async def inpaint_batch(
    settings: BatchSettings,
    only: list[str] | None = None,
    merge_report: bool = False,
) -> State:
    """Inpaint every image of `settings.source` (folder or manifest) into `settings.out`.

    Args:
        settings: everything the batch is asked to do (`inpaint_flows.settings.BatchSettings`).
        only: job names to run (the rest are left out of this run); used by rerun-failed.
        merge_report: merge this run's rows into the existing report instead of replacing it.

    With `settings.canary`, a few jobs run first and the run waits for their approval (in the
    dashboard, or the terminal that started it) before the rest is paid for
    (`inpaint_flows.canary`).

    Returns Completed when every job succeeded (or was already done), Failed otherwise, after
    the report is written, so the dashboard shows the failure and offers Retry; Cancelled when
    the canary was cancelled.
    """
    logger = get_run_logger()
    started = time.monotonic()
    name = settings.name

    async def find_jobs(settings: BatchSettings) -> list[Job]:
        jobs: list[Job] = await discover(
            settings.source, settings.defaults, settings.mask, settings.masks
        )
        if only is not None:
            wanted = set(only)
            jobs = [job for job in jobs if job.name in wanted]
        return jobs

    async def checked(jobs: list[Job], run: BatchRun) -> list[Job]:
        if not (settings.check_names and jobs):
            return jobs
        names = await check_model_names(_unwalked(jobs), _unwalked(run))
        if names.skipped:
            logger.warning("Model names not checked: %s", names.skipped)
        return with_name_problems(jobs, names)

    jobs = await find_jobs(settings)
    size = chunk_size_for(
        len(jobs),
        settings.chunk_size,
        max_in_flight=settings.max_in_flight,
        images_per_minute=settings.images_per_minute,
    )
    lanes = asyncio.Semaphore(chunks_open_for(settings.max_in_flight, size))
    verdict: Verdict | None = None

    # One run at a time per ledger (never two payers per job); only the run holding it saves
    # the settings, so a refused second run cannot overwrite the running one's batch.json.
    # A canary's wait keeps it too: nothing else may pay for these jobs meanwhile.
    with exclusive_use(settings.ledger_dir):
        save_settings(settings)
        async with (
            resolve_endpoint(settings.base_url, settings.api_key_secret) as endpoint,
            open_run(settings, endpoint) as run,
        ):
            logger.info(
                "Batch %s: %d jobs in chunks of ≤%d, API %s",
                name,
                len(jobs),
                size,
                endpoint.label,
            )
            api = endpoint.label
            jobs = await checked(jobs, run)
            live = await LiveProgress.start(name, len(jobs))
            canary, rest = pick_canary(jobs, settings.canary)
            if not canary:
                outcomes = await _inpaint(jobs, run, size=size, lanes=lanes, live=live)
            else:
                logger.info("Canary: %d of %d jobs first", len(canary), len(jobs))
                inpaint = functools.partial(_inpaint, run=run, size=size, lanes=lanes, live=live)
                outcomes, verdict, settings = await _with_canary(
                    canary, rest, settings, inpaint, find_jobs, checked, run, live
                )
            stop = run.halt.stop

    report: BatchReport = await write_report(
        _unwalked(outcomes), settings.out, f"Inpainting: {name}", merge_report, api
    )
    await publish(_unwalked(report), name, time.monotonic() - started)

    counts = ", ".join(f"{n} {status}" for status, n in report.summary.counts.items() if n)
    message = f"{len(outcomes)} jobs this run ({counts or 'nothing to do'}); report: {report.csv}"
    if stop is not None:
        message = f"Batch stopped ({stop.reason}): {stop.message} {message}"
    if verdict is not None and verdict.action == "cancel":
        return Cancelled(message=f"Canary cancelled in {verdict.by}: {message}", data=report)
    if verdict is not None and verdict.action == "timeout":
        message = (
            f"Canary not approved within {settings.canary_timeout_s:.0f} s, so the rest was "
            f"not sent (run the batch again to be asked again): {message}"
        )
    if report.failed:
        return Failed(
            message=f"{report.failed} of {len(report.outcomes)} failed: {message}", data=report
        )
    return Completed(message=message, data=report)


@flow(name="rerun-failed", flow_run_name="rerun failed of {report}")
async def rerun_failed(
    report: str, api_key_secret: str | None = None, poll_timeout_s: float | None = None
) -> State:
    """Redo the failed, invalid and not-submitted rows of `report` and merge them into it.

    Every setting of the batch comes from the `batch.json` saved beside the report, except what
    is given here: another Secret block, or a longer poll budget after jobs timed out. Rows that
    had succeeded are not touched; a failed row whose remote task is still alive is polled, not
    paid for again (the ledger decides, as in every run).
    """
    settings = load_settings(report)
    if api_key_secret:
        settings = settings.replace(api_key_secret=api_key_secret)
    if poll_timeout_s is not None:
        settings = settings.replace(poll_timeout_s=poll_timeout_s)
    return await inpaint_batch(
        settings=settings, only=failed_names(report), merge_report=True, return_state=True
    )
