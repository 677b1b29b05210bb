"""The batch flow: discover → check names → per chunk (load+validate → inpaint) → report.

Only orchestration lives here: which tasks run, in what order, how many at once. Per-job work,
retries, pacing, batch-wide stops and idempotence live in `inpaint_flows` and are wrapped by
`tasks/`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar, cast

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote

from inpaint_flows.batch import BatchRun, open_run
from inpaint_flows.check import with_name_problems
from inpaint_flows.chunking import chunk_label, chunk_size_for, chunked, chunks_open_for
from inpaint_flows.containment import crashed_chunk_outcomes
from inpaint_flows.endpoint import resolve_endpoint
from inpaint_flows.finalize import BatchReport
from inpaint_flows.finishing import JobFinisher
from inpaint_flows.ledger import exclusive_use
from inpaint_flows.models import Job, JobOutcome
from inpaint_flows.settings import BatchSettings
from inpaint_flows.spec import failed_names, load_settings, save_settings
from tasks.artifacts import LiveProgress, publish
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

    Returns Completed when every job succeeded (or was already done), Failed otherwise, after
    the report is written, so the dashboard shows the failure and offers Retry.
    """
    logger = get_run_logger()
    started = time.monotonic()
    name = settings.name

    jobs: list[Job] = await discover(
        settings.source, settings.defaults, settings.mask, settings.masks
    )
    if only is not None:
        wanted = set(only)
        jobs = [job for job in jobs if job.name in wanted]
    size = chunk_size_for(
        len(jobs),
        settings.chunk_size,
        max_in_flight=settings.max_in_flight,
        images_per_minute=settings.images_per_minute,
    )
    lanes = asyncio.Semaphore(chunks_open_for(settings.max_in_flight, size))

    # One run at a time per ledger (never two payers per job); only the run holding it saves
    # the settings, so a refused second run cannot overwrite the running one's batch.json.
    with exclusive_use(settings.ledger_dir):
        save_settings(settings)
        async with (
            resolve_endpoint(settings.base_url, settings.api_key_secret) as endpoint,
            open_run(settings, endpoint) as run,
            JobFinisher(settings.out) as finisher,
        ):
            logger.info(
                "Batch %s: %d jobs in chunks of ≤%d, API %s",
                name,
                len(jobs),
                size,
                endpoint.label,
            )
            if settings.check_names and jobs:
                names = await check_model_names(_unwalked(jobs), _unwalked(run))
                if names.skipped:
                    logger.warning("Model names not checked: %s", names.skipped)
                jobs = with_name_problems(jobs, names)
            chunks = chunked(jobs, size)
            live = await LiveProgress.start(name, len(jobs))

            async def run_chunk(index: int, chunk: list[Job], run: BatchRun) -> list[JobOutcome]:
                label = chunk_label(index, len(chunks), [job.name for job in chunk])
                async with lanes:
                    states = await load_and_validate(_unwalked(chunk), label)
                    states = await inpaint_jobs(
                        _unwalked(states), _unwalked(run), label, _unwalked(finisher)
                    )
                await live.advance(len(chunk))
                return [s.outcome for s in states if s.outcome]  # only report rows stay

            results = await asyncio.gather(
                *(run_chunk(i, c, run) for i, c in enumerate(chunks)), return_exceptions=True
            )
            api = endpoint.label
            stop = run.halt.stop
            await finisher.drain()  # the last rows' thumbnails: then the gallery only renders

    # A chunk whose task failed after its retries still gives one row per input.
    outcomes: list[JobOutcome] = []
    for chunk, result in zip(chunks, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancellation and interrupts are not a chunk's failure
            logger.error("A chunk failed after its retries: %s", result)
            outcomes += crashed_chunk_outcomes(chunk, result, api=api)
        else:
            outcomes += result
    report: BatchReport = await write_report(
        _unwalked(outcomes),
        settings.out,
        f"Inpainting: {name}",
        merge_report,
        api,
        _unwalked(finisher.thumbnails),
    )
    await publish(_unwalked(report), name, time.monotonic() - started)

    counts = ", ".join(f"{n} {status}" for status, n in report.summary.counts.items() if n)
    message = f"{len(outcomes)} jobs this run ({counts or 'nothing to do'}); report: {report.csv}"
    if stop is not None:
        message = f"Batch stopped ({stop.reason}): {stop.message} {message}"
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
