"""Batch-level plain functions: chunking, the in-flight gate, the saved batch spec, the report.

How a batch keeps the API busy with little orchestration cost (measured in
`tests/benchmarks/bench_pipeline.py`):

- Jobs are grouped in chunks only for the dashboard: two task runs per chunk (load+validate,
  then inpaint), at most ~100 chunks for any batch and no more than ~2 task runs per second at
  the batch's top speed, so Prefect records a few hundred task runs however many images there
  are and its server never competes with the run for CPU (`chunk_size_for`).
- Inside a chunk every job runs submit → poll → download on its own, holding one slot of the
  run's in-flight gate from its submit until its result is written. Slots are shared by all
  chunks and freed job by job, so a slow job never holds back the others of its chunk, and the
  pacer (not a stage barrier) decides when the next submit goes out.
- A few more chunks than the gate can serve are open at once, so a freed slot always finds a
  loaded job waiting.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from inpaint_flows.client import NovitaClient
from inpaint_flows.gallery import write_gallery
from inpaint_flows.ledger import Ledger
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams, JobOutcome, JobStatus
from inpaint_flows.pipeline import JobRunner, JobState, RunSettings, Stage, open_client
from inpaint_flows.polling import FirstPoll
from inpaint_flows.report import (
    ReportSummary,
    merge_outcomes,
    outcomes_from_frame,
    outcomes_to_frame,
    read_report,
    summarize,
    write_report,
)
from inpaint_flows.storage import atomic_write_text

T = TypeVar("T")

SPEC_FILE = "batch.json"
REPORT_CSV = "report.csv"
FAILED_STATUSES = (JobStatus.FAILED, JobStatus.INVALID)


class BatchSpec(BaseModel):
    """What a batch was asked to do, saved beside its report so `rerun-failed` can redo it.

    Holds no secret: the key is named by its Secret block, or read from the environment.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    out: str
    defaults: InpaintParams
    mask: str | None = None
    masks: MaskSettings = MaskSettings()
    base_url: str | None = None
    api_key_secret: str | None = None
    images_per_minute: float | None = None
    max_in_flight: int = 8
    state_dir: str | None = None


class BatchReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    csv: str
    parquet: str
    gallery: str
    summary: ReportSummary
    outcomes: tuple[JobOutcome, ...]

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.status in FAILED_STATUSES)


TARGET_CHUNKS = 100
# Task runs Prefect should record per second, at most, at a batch's top speed. Measured on 2
# cores: each task run costs its (SQLite) server ~60 ms of CPU, so 1,000 jobs in chunks of 10
# at 50 jobs/s cost it 11.7 s of CPU in a 30 s run, taken from the API and the flow; in chunks
# of 50, 3.6 s (tests/benchmarks/bench_pipeline.py, overhead).
TASK_RUNS_PER_S = 2.0
TASKS_PER_CHUNK = 2  # load+validate, then inpaint
# Batches this small get one task per file, so the dashboard names each file.
PER_FILE_UP_TO = 20
# Seconds a job takes at the fastest, for sizing only: the local server's lowest usual latency.
FASTEST_JOB_S = 1.0


def top_jobs_per_s(max_in_flight: int, images_per_minute: float | None) -> float:
    """Jobs a batch can finish per second at best: the in-flight limit, or the pacing limit."""
    rate = max(1, max_in_flight) / FASTEST_JOB_S
    if images_per_minute:
        rate = min(rate, images_per_minute / 60)
    return rate


def chunk_size_for(
    total: int,
    requested: int | None = None,
    *,
    max_in_flight: int,
    images_per_minute: float | None,
) -> int:
    """Jobs per chunk (two task runs each): the larger of two floors, or `requested`.

    - ~1 % of the batch, so a batch makes at most ~100 chunks: 10,000 jobs make 100 chunks of
      100, not 10,000 per-job task runs that would take Prefect minutes to record;
    - enough jobs that, at the batch's top speed (`top_jobs_per_s`), chunks finish slowly
      enough for Prefect to record them without taking CPU from the run (`TASK_RUNS_PER_S`).

    A batch of up to `PER_FILE_UP_TO` files keeps one task per file whatever its speed (a few
    dozen task runs cost Prefect a second or two), and so does a paced batch (the default 10
    images/min) of up to 100; 1,000 jobs with 50 in flight and no pacing make chunks of 50.
    Chunk size does not limit concurrency: the in-flight gate does.
    """
    if requested:
        return max(1, requested)
    if total <= PER_FILE_UP_TO:
        return 1
    by_count = math.ceil(total / TARGET_CHUNKS)
    by_rate = math.ceil(
        top_jobs_per_s(max_in_flight, images_per_minute) * TASKS_PER_CHUNK / TASK_RUNS_PER_S
    )
    return max(1, by_count, by_rate)


def chunks_open_for(max_in_flight: int, size: int) -> int:
    """How many chunks run at once: enough that jobs wait for every slot the gate frees."""
    return 2 * math.ceil(max(1, max_in_flight) / max(1, size)) + 1


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def chunk_label(index: int, count: int, names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"chunk {index + 1}/{count} ({names[0]} … {names[-1]})"


@dataclass(frozen=True)
class Gate:
    """A run's limits on jobs at once, the one API client its chunks share, and what its tasks
    taught about when to poll them (`FirstPoll`).

    `submitting` is smaller than `in_flight`: a submit holds its image as base64 (plus the JSON
    body built from it) until the API answers, or while it waits for the pacer, so fewer at once
    keeps memory low with large images; polls and downloads hold no payload while they wait.
    One client for the run means one connection pool and one TLS context (~20 ms to build each
    time, measured: a client per chunk cost 2 s of CPU per 100 chunks).
    """

    in_flight: asyncio.Semaphore
    submitting: asyncio.Semaphore
    client: NovitaClient
    first_poll: FirstPoll


_gates: dict[str, Gate] = {}


def submit_slots_for(max_in_flight: int) -> int:
    return max(2, math.ceil(max(1, max_in_flight) / 4))


@asynccontextmanager
async def in_flight_gate(limit: int, settings: RunSettings) -> AsyncIterator[str]:
    """The run's `Gate` for `limit` jobs in flight; yields the key tasks pass to `run_jobs`.

    Tasks get the key (a plain string), not semaphores or a client, so task inputs stay plain
    values. The gate lives in this process: chunk tasks run on the flow's event loop.
    """
    key = uuid.uuid4().hex
    # Each job in flight makes one request at a time: one kept-open connection per slot.
    async with open_client(settings, connections=max(1, limit)) as client:
        _gates[key] = Gate(
            in_flight=asyncio.Semaphore(max(1, limit)),
            submitting=asyncio.Semaphore(submit_slots_for(limit)),
            client=client,
            first_poll=FirstPoll(settings.max_poll_interval_s),
        )
        try:
            yield key
        finally:
            _gates.pop(key, None)


async def run_jobs(
    states: Sequence[JobState], settings: RunSettings, gate_key: str | None = None
) -> list[JobState]:
    """Submit, poll and download every job of a chunk, each on its own; order is preserved.

    Each job holds an in-flight slot of the gate named `gate_key` from its submit (pacing wait
    included) until its result is written, and a submitting slot while its submit is out; the
    gate's client (opened with the run's `settings`) does the HTTP. Without a gate (a key this
    process does not know) the chunk opens its own client and its jobs all run at once.
    """
    if all(s.final for s in states):
        return list(states)
    gate = _gates.get(gate_key) if gate_key else None
    ledger = Ledger(settings.state_dir)
    if gate is None:
        async with open_client(settings) as client:
            runner = JobRunner(client, ledger, settings)
            return list(await asyncio.gather(*(runner.advance(s, Stage.DONE) for s in states)))
    runner = JobRunner(gate.client, ledger, settings, gate.first_poll)

    async def one(state: JobState) -> JobState:
        if state.final:
            return state
        async with gate.in_flight:
            async with gate.submitting:
                state = await runner.advance(state, Stage.SUBMITTED)
            # The ledger now holds the task id: this call polls and downloads it.
            return await runner.advance(state, Stage.DONE)

    return list(await asyncio.gather(*(one(s) for s in states)))


def save_spec(spec: BatchSpec) -> Path:
    path = Path(spec.out) / SPEC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, spec.model_dump_json(indent=2))
    return path


def load_spec(report_path: str | Path) -> BatchSpec:
    path = Path(report_path).parent / SPEC_FILE
    return BatchSpec.model_validate_json(path.read_text(encoding="utf-8"))


def failed_names(report_path: str | Path) -> list[str]:
    """Names of the rows a rerun should redo: failed and invalid."""
    outcomes = outcomes_from_frame(read_report(report_path))
    return [o.name for o in outcomes if o.status in FAILED_STATUSES]


def finalize_report(
    outcomes: Sequence[JobOutcome], out_dir: str, *, title: str, merge: bool = False
) -> BatchReport:
    """Write report.csv, report.parquet and index.html; with `merge`, update the old report."""
    rows = list(outcomes)
    previous = Path(out_dir) / REPORT_CSV
    if merge and previous.exists():
        rows = merge_outcomes(outcomes_from_frame(read_report(previous)), rows)
    paths = write_report(outcomes_to_frame(rows), out_dir)
    gallery = write_gallery(rows, out_dir, title=title)
    return BatchReport(
        csv=str(paths.csv),
        parquet=str(paths.parquet),
        gallery=str(gallery),
        summary=summarize(rows),
        outcomes=tuple(rows),
    )
