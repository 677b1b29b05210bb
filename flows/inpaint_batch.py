"""The batch flow: discover → per chunk (load+validate → inpaint: submit/poll/download per job,
at most `max_in_flight` jobs in flight across chunks) → report.

Only orchestration lives here: which tasks run, in what order, how many at once. Per-job work,
retries, pacing and idempotence live in `inpaint_flows` and are wrapped by `tasks/`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TypeVar, cast

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote

from inpaint_flows.batch import (
    BatchReport,
    BatchSpec,
    chunk_label,
    chunk_size_for,
    chunked,
    chunks_open_for,
    failed_names,
    in_flight_gate,
    load_spec,
    save_spec,
)
from inpaint_flows.endpoint import resolve_endpoint
from inpaint_flows.ledger import exclusive_use
from inpaint_flows.masks import MaskSettings
from inpaint_flows.memory import release_large_buffers
from inpaint_flows.models import InpaintParams, Job, JobOutcome
from inpaint_flows.pipeline import RunSettings
from tasks.artifacts import LiveProgress, publish
from tasks.discover import discover
from tasks.inpaint import inpaint_jobs
from tasks.prepare import load_and_validate
from tasks.report import write_report

T = TypeVar("T")


def _batch_run_name() -> str:
    params = flow_run.parameters
    name = params.get("batch_name") or Path(str(params.get("source", "batch"))).name
    return f"inpaint {name}"


def _unwalked(value: T) -> T:
    """`value` marked (`quote`) so Prefect does not walk every job's fields looking for futures.

    Measured: walking the chunks' jobs cost ~1.5 s of CPU in a 1,000-job batch.
    """
    return cast(T, quote(value))


def _batch_name(source: str, batch_name: str | None) -> str:
    return batch_name or Path(source).resolve().name or "batch"


@flow(name="inpaint-batch", flow_run_name=_batch_run_name, log_prints=False)
async def inpaint_batch(
    source: str,
    out: str = "out",
    defaults: InpaintParams = InpaintParams(),
    mask: str | None = None,
    masks: MaskSettings = MaskSettings(),
    base_url: str | None = None,
    api_key_secret: str | None = None,
    max_in_flight: int = 8,
    images_per_minute: float | None = 10.0,
    chunk_size: int | None = None,
    state_dir: str | None = None,
    poll_timeout_s: float = 900.0,
    request_timeout_s: float = 60.0,
    batch_name: str | None = None,
    only: list[str] | None = None,
    merge_report: bool = False,
) -> State:
    """Inpaint every image in `source` (folder or manifest) into `out`, with a report.

    Args:
        source: a folder (`images/` + `masks/`, or `name` + `name_mask` pairs) or a CSV/JSONL
            manifest.
        out: the output folder: results, `report.csv`, `report.parquet`, `index.html`.
        defaults: the request fields for every job; manifest columns override them per row.
        mask: one mask for every image (optional).
        masks: masks drawn from annotations or a fixed region, and grow/shrink/feather applied
            to every mask (files included); the defaults change nothing.
        base_url: the API; empty means Novita with a key, or the bundled local server without.
        api_key_secret: the NAME of a Prefect Secret block holding the key (else the
            `NOVITA_API_KEY` environment variable is read when the run starts).
        max_in_flight: jobs submitted and not yet downloaded, at most (across all chunks).
        images_per_minute: client-side pacing to the account's limit (None: no pacing).
        chunk_size: jobs per task run, for the dashboard only (None: about 1 % of the batch,
            and at least `max_in_flight` jobs when nothing paces the batch below one job per
            second per slot; up to 20 files, or 100 when paced, one task per file);
            concurrency is `max_in_flight`.
        state_dir: where the job ledger lives (default `<out>/.inpaint-state`); share it to rerun
            on another machine.
        poll_timeout_s: how long one job may wait for its remote task.
        request_timeout_s: seconds one HTTP request may take (connect, send, each read).
        batch_name: shown in run names and artifact keys (default: the source folder's name).
        only: job names to run (the rest are left out of this run); used by rerun-failed.
        merge_report: merge this run's rows into the existing report instead of replacing it.

    Returns Completed when every job succeeded (or was already done), Failed otherwise, after
    the report is written, so the dashboard shows the failure and offers Retry.
    """
    logger = get_run_logger()
    started = time.monotonic()
    release_large_buffers()  # image-sized buffers go back to the OS: memory stays flat
    name = _batch_name(source, batch_name)
    spec = BatchSpec(
        source=source,
        out=out,
        defaults=defaults,
        mask=mask,
        masks=masks,
        base_url=base_url,
        api_key_secret=api_key_secret,
        images_per_minute=images_per_minute,
        max_in_flight=max_in_flight,
        state_dir=state_dir,
    )
    save_spec(spec)

    jobs: list[Job] = await discover(source, defaults, mask, masks)
    if only is not None:
        wanted = set(only)
        jobs = [job for job in jobs if job.name in wanted]
    size = chunk_size_for(
        len(jobs), chunk_size, max_in_flight=max_in_flight, images_per_minute=images_per_minute
    )
    chunks = chunked(jobs, size)
    lanes = asyncio.Semaphore(chunks_open_for(max_in_flight, size))
    live = await LiveProgress.start(name, len(jobs))

    ledger_dir = state_dir or str(Path(out) / ".inpaint-state")
    with (
        exclusive_use(ledger_dir),  # one run at a time per ledger: never two payers per job
        resolve_endpoint(base_url, api_key_secret) as endpoint,
    ):
        logger.info(
            "Batch %s: %d jobs in %d chunks of ≤%d, API %s%s",
            name,
            len(jobs),
            len(chunks),
            size,
            endpoint.base_url,
            " (local server started for this run)" if endpoint.local else "",
        )
        settings = RunSettings(
            base_url=endpoint.base_url,
            out_dir=out,
            state_dir=ledger_dir,
            api_key_secret=api_key_secret,
            images_per_minute=images_per_minute,
            poll_timeout_s=poll_timeout_s,
            request_timeout_s=request_timeout_s,
        )

        async def run_chunk(index: int, chunk: list[Job]) -> list[JobOutcome]:
            label = chunk_label(index, len(chunks), [job.name for job in chunk])
            async with lanes:
                states = await load_and_validate(_unwalked(chunk), label)
                states = await inpaint_jobs(_unwalked(states), settings, label, gate)
            await live.advance(len(chunk))
            return [s.outcome for s in states if s.outcome]  # only report rows stay in memory

        async with in_flight_gate(max_in_flight, settings) as gate:
            results = await asyncio.gather(*(run_chunk(i, c) for i, c in enumerate(chunks)))

    outcomes: list[JobOutcome] = [outcome for chunk in results for outcome in chunk]
    report: BatchReport = await write_report(
        _unwalked(outcomes), out, f"Inpainting: {name}", merge_report
    )
    await publish(_unwalked(report), name, time.monotonic() - started)

    counts = ", ".join(f"{n} {status}" for status, n in report.summary.counts.items() if n)
    message = f"{len(outcomes)} jobs this run ({counts or 'nothing to do'}); report: {report.csv}"
    if report.failed:
        return Failed(
            message=f"{report.failed} of {len(report.outcomes)} failed: {message}", data=report
        )
    return Completed(message=message, data=report)


@flow(name="rerun-failed", flow_run_name="rerun failed of {report}")
async def rerun_failed(report: str, api_key_secret: str | None = None) -> State:
    """Redo the failed and invalid rows of `report` (after inputs were fixed) and merge them.

    The batch's settings come from the `batch.json` saved beside the report. Rows that had
    succeeded are not touched; a failed row whose remote task is still alive is polled, not paid
    for again (the ledger decides, as in every run).
    """
    spec = load_spec(report)
    names = failed_names(report)
    return await inpaint_batch(
        source=spec.source,
        out=spec.out,
        defaults=spec.defaults,
        mask=spec.mask,
        masks=spec.masks,
        base_url=spec.base_url,
        api_key_secret=api_key_secret or spec.api_key_secret,
        max_in_flight=spec.max_in_flight,
        images_per_minute=spec.images_per_minute,
        state_dir=spec.state_dir,
        only=names,
        merge_report=True,
        return_state=True,
    )
