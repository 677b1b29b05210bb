"""The batch flow: discover → check names → [canary → approval] → per chunk (load+validate →
inpaint) → report.

Only orchestration lives here: which tasks run, in what order, how many at once. Per-job work,
retries, pacing, batch-wide stops and idempotence live in `inpaint_flows` and are wrapped by
`tasks/`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed, State
from prefect.utilities.annotations import quote

from inpaint_flows.account import shared_pace
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
from inpaint_flows.chunking import (
    chunk_label,
    chunk_size_for,
    chunked,
    chunks_open_for,
    chunks_to_fill,
)
from inpaint_flows.containment import crashed_chunk_outcomes
from inpaint_flows.deployments import SHARD_DEPLOYMENT
from inpaint_flows.endpoint import resolve_endpoint
from inpaint_flows.errors import ConfigError
from inpaint_flows.finalize import BatchReport, GalleryLink
from inpaint_flows.finishing import JobFinisher
from inpaint_flows.gallery import Thumbnailer
from inpaint_flows.locations import use_storage_block
from inpaint_flows.memory import keep_memory_flat
from inpaint_flows.models import RERUN_STATUSES, Job, JobOutcome
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.pacing import RateLimiter
from inpaint_flows.settings import BatchSettings
from inpaint_flows.shards import (
    require_shard_deployment,
    rows_of_shards,
    rows_path,
    save_rows,
    shard_settings,
    split,
)
from inpaint_flows.spec import failed_names, load_settings, save_settings
from inpaint_flows.store_location import STATE_URL_ENV
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
    checks: asyncio.Semaphore,
    live: LiveProgress,
    finisher: JobFinisher,
) -> list[JobOutcome]:
    """Every job's report row: chunks of `size` jobs, `lanes` chunks open at once, `checks` of
    them loading and validating at once; `finisher` makes each job's gallery thumbnails as it
    starts and ends."""
    logger = get_run_logger()
    chunks = chunked(jobs, size)

    async def run_chunk(index: int, chunk: list[Job]) -> list[JobOutcome]:
        label = chunk_label(index, len(chunks), [job.name for job in chunk])
        async with lanes:
            # No more chunks checked at once than fill the gate: at the start, the first submit
            # waits for the first chunk's checks alone, not for three chunks' sharing the CPU.
            async with checks:
                records = await load_and_validate(_unwalked(chunk), label)
            records = await inpaint_jobs(
                _unwalked(records), _unwalked(run), label, _unwalked(finisher)
            )
        await live.advance(len(chunk))
        return [row for s in records if (row := s.outcome)]  # only report rows stay

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
    rows_to: str | None = None,
) -> State:
    """Inpaint every image of `settings.source` (folder or manifest) into `settings.out`.

    Args:
        settings: everything the batch is asked to do (`inpaint_flows.settings.BatchSettings`).
        only: job names to run (the rest are left out of this run); used by rerun-failed.
        merge_report: merge this run's rows into the existing report instead of replacing it.
        rows_to: set by a sharded batch's parent for its children (`inpaint_flows.shards`):
            save this run's rows there; the parent writes the report.

    With `settings.canary`, a few jobs run first and the run waits for their approval (in the
    dashboard, or the terminal that started it) before the rest is paid for
    (`inpaint_flows.canary`).

    Returns Completed when every job succeeded (or was already done), Failed otherwise, after
    the report is written, so the dashboard shows the failure and offers Retry; Cancelled when
    the canary was cancelled.
    """
    logger = get_run_logger()
    started = time.monotonic()
    keep_memory_flat()  # also when a worker or a served deployment runs the flow, not the CLI

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

    # A bucket that is missing or refuses us stops the run here, before anything is paid.
    await use_storage_block(settings.storage_block)
    output = OutputFolder(settings.out)
    try:
        output.check()
        jobs = await find_jobs(settings)
        if settings.shards > 1 and rows_to is None:
            return await _in_shards(settings, jobs, merge_report, started, output)
        return await _run_here(
            settings, jobs, output, find_jobs, checked, merge_report, rows_to, started
        )
    finally:
        output.cleanup()


async def _run_here(
    settings: BatchSettings,
    jobs: list[Job],
    output: OutputFolder,
    find_jobs: Callable[[BatchSettings], Awaitable[list[Job]]],
    checked: Callable[[list[Job], BatchRun], Awaitable[list[Job]]],
    merge_report: bool,
    rows_to: str | None,
    started: float,
) -> State:
    """The batch's jobs in this flow run: chunks of jobs, then the report (or a shard's rows)."""
    logger = get_run_logger()
    name = settings.name
    size = chunk_size_for(
        len(jobs),
        settings.chunk_size,
        max_in_flight=settings.max_in_flight,
        images_per_minute=settings.images_per_minute,
    )
    lanes = asyncio.Semaphore(chunks_open_for(settings.max_in_flight, size))
    checks = asyncio.Semaphore(chunks_to_fill(settings.max_in_flight, size))
    verdict: Verdict | None = None

    # Other runs may work in the same folder at once: each job is claimed in the job store
    # before it is paid for (`inpaint_flows.ledger`). batch.json and the report are replaced
    # atomically; the last run to finish writes them. A shard's parent saved its settings.
    if rows_to is None:
        save_settings(settings, output)
    limiter = RateLimiter(settings.images_per_minute)
    output.pull_store()
    try:
        async with (
            resolve_endpoint(settings.base_url, settings.api_key_secret) as endpoint,
            shared_pace(endpoint.base_url, limiter, name=settings.account_limit) as pace,
            JobFinisher(output) as finisher,
            open_run(settings, endpoint, output=output, limiter=limiter, previews=finisher) as run,
        ):
            logger.info(
                "Batch %s: %d jobs in chunks of ≤%d, API %s; %s",
                name,
                len(jobs),
                size,
                endpoint.label,
                pace.describe(),
            )
            api = endpoint.label
            jobs = await checked(jobs, run)
            live = await LiveProgress.start(name, len(jobs))
            canary, rest = pick_canary(jobs, settings.canary)
            if not canary:
                outcomes = await _inpaint(
                    jobs, run, size=size, lanes=lanes, checks=checks, live=live, finisher=finisher
                )
            else:
                logger.info("Canary: %d of %d jobs first", len(canary), len(jobs))
                inpaint = functools.partial(
                    _inpaint,
                    run=run,
                    size=size,
                    lanes=lanes,
                    checks=checks,
                    live=live,
                    finisher=finisher,
                )
                outcomes, verdict, settings = await _with_canary(
                    canary, rest, settings, inpaint, find_jobs, checked, run, live
                )
            stop = run.halt.stop
            await finisher.drain()  # the last rows' thumbnails: then the gallery only renders
    finally:
        # What was paid for survives this container (the default store, for a bucket).
        output.publish_store()

    stopped = None if stop is None else f"Batch stopped ({stop.reason}): {stop.message}"
    if rows_to is not None:  # a shard: its parent writes the report from every shard's rows
        save_rows(outcomes, rows_to)
        failed = sum(o.status in RERUN_STATUSES for o in outcomes)
        message = f"{len(outcomes)} jobs, {failed} failed; rows for the parent run: {rows_to}"
        return Failed(message=message) if failed else Completed(message=message)
    return await _report(
        settings,
        outcomes,
        merge_report,
        api,
        stopped,
        started,
        verdict,
        finisher.thumbnails,
        output,
    )


async def _report(
    settings: BatchSettings,
    outcomes: list[JobOutcome],
    merge_report: bool,
    api: str | None,
    stopped: str | None,
    started: float,
    verdict: Verdict | None = None,
    thumbnails: Thumbnailer | None = None,
    output: OutputFolder | None = None,
) -> State:
    """Write the report, publish the artifacts; end Failed when any row failed, Cancelled when
    the canary was cancelled. `thumbnails` made while the jobs ran are reused by the gallery."""
    name = settings.name
    report: BatchReport = await write_report(
        _unwalked(outcomes),
        _unwalked(output or OutputFolder(settings.out)),
        f"Inpainting: {name}",
        merge_report,
        api,
        _unwalked(thumbnails),
        GalleryLink(settings.gallery_link, settings.gallery_link_expiry_s),
    )
    await publish(_unwalked(report), name, time.monotonic() - started)

    counts = ", ".join(f"{n} {status}" for status, n in report.summary.counts.items() if n)
    message = f"{len(outcomes)} jobs this run ({counts or 'nothing to do'}); report: {report.csv}"
    if stopped is not None:
        message = f"{stopped} {message}"
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


async def _in_shards(
    settings: BatchSettings,
    jobs: list[Job],
    merge_report: bool,
    started: float,
    output: OutputFolder,
) -> State:
    """Run the batch as `settings.shards` child runs of the shard deployment, on the pool's
    workers; then one report from every shard's rows."""
    from prefect.deployments import arun_deployment

    if settings.canary:
        raise ConfigError(
            "A canary cannot be asked for a batch split into shards yet: run it with shards 1 "
            "and the canary first (the jobs it did are then skipped at no cost), then with "
            "shards and canary 0.",
            reason="CANARY_WITH_SHARDS",
        )
    if output.remote and not (settings.state_url or os.environ.get(STATE_URL_ENV)):
        raise ConfigError(
            f"Shards writing to {settings.out} need a job store they share: give --state-url "
            f"postgresql://USER@HOST/DB (or ${STATE_URL_ENV}). Each container's own SQLite "
            "copy could not tell the others what was paid for.",
            reason="SHARDS_NEED_SHARED_STORE",
        )
    await require_shard_deployment()
    parts = split([job.name for job in jobs], settings.shards)
    parent = str(flow_run.id or "local")
    paths = [rows_path(settings.out, parent, i) for i in range(len(parts))]
    save_settings(settings, output)
    get_run_logger().info("Batch %s: %d jobs in %d shards", settings.name, len(jobs), len(parts))
    children = await asyncio.gather(
        *(
            arun_deployment(
                SHARD_DEPLOYMENT,
                parameters={
                    "settings": shard_settings(settings, i, len(parts)).model_dump(mode="json"),
                    "only": names,
                    "rows_to": str(path),
                },
                timeout=None,  # wait for the child to end
                as_subflow=True,
            )
            for i, (names, path) in enumerate(zip(parts, paths, strict=True))
        ),
        return_exceptions=True,
    )
    outcomes = rows_of_shards(jobs, parts, paths, children)
    api = next((o.api for o in outcomes if o.api), None)
    return await _report(settings, outcomes, merge_report, api, None, started, output=output)


@flow(name="rerun-failed", flow_run_name="rerun failed of {report}")
async def rerun_failed(
    report: str,
    api_key_secret: str | None = None,
    poll_timeout_s: float | None = None,
    storage_block: str | None = None,
) -> State:
    """Redo the failed, invalid and not-submitted rows of `report` and merge them into it.

    Every setting of the batch comes from the `batch.json` saved beside the report, except what
    is given here: another Secret block, or a longer poll budget after jobs timed out. Rows that
    had succeeded are not touched; a failed row whose remote task is still alive is polled, not
    paid for again (the ledger decides, as in every run). `storage_block` names the credentials
    that read a report in a bucket (the batch's own are in its batch.json).
    """
    await use_storage_block(storage_block)
    settings = load_settings(report)
    if api_key_secret:
        settings = settings.replace(api_key_secret=api_key_secret)
    if poll_timeout_s is not None:
        settings = settings.replace(poll_timeout_s=poll_timeout_s)
    return await inpaint_batch(
        settings=settings, only=failed_names(report), merge_report=True, return_state=True
    )
