"""How a batch is cut into task runs and how many jobs are in flight (no Prefect, no timing).

What a user notices: a 10,000-image batch shows ~100 chunk tasks on the dashboard, not 10,000;
`max_in_flight` holds across chunks; every job is paid once; memory tricks never break a run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inpaint_flows.batch import open_run, submit_slots_for
from inpaint_flows.chunking import (
    PER_FILE_UP_TO,
    TARGET_CHUNKS,
    TASK_RUNS_PER_S,
    TASKS_PER_CHUNK,
    chunk_size_for,
    chunked,
    chunks_open_for,
    top_jobs_per_s,
)
from inpaint_flows.endpoint import Endpoint
from inpaint_flows.job_record import JobRecord
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.models import InpaintParams, JobStatus
from inpaint_flows.pipeline import JobRunner, prepare_many
from inpaint_flows.settings import BatchSettings
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import tiny_batch
from tests.flows.helpers import job_counts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("total", "requested", "in_flight", "ipm", "size"),
    [
        pytest.param(4, None, 8, 10.0, 1, id="small paced batch: one task per file"),
        pytest.param(100, None, 8, 10.0, 1, id="100 paced files: still one per file"),
        pytest.param(101, None, 8, 10.0, 2, id="just over 100"),
        pytest.param(10_000, None, 8, 10.0, 100, id="10k files: 100 chunks"),
        pytest.param(10_000, 7, 8, 10.0, 7, id="an explicit size wins"),
        pytest.param(0, None, 8, 10.0, 1, id="empty batch"),
        pytest.param(1000, None, 50, None, 50, id="unpaced, 50 in flight: chunks of 50"),
        pytest.param(100, None, 50, 120.0, 2, id="paced at 2 jobs/s: chunks of 2"),
        pytest.param(10_000, None, 50, None, 100, id="10k unpaced: still 100 chunks"),
        pytest.param(20, None, 50, None, 1, id="20 unpaced files: one task per file"),
        pytest.param(21, None, 50, None, 50, id="21 unpaced files, 50 in flight: one chunk"),
    ],
)
def test_chunk_size_bounds_task_runs_by_count_and_by_rate(
    total: int, requested: int | None, in_flight: int, ipm: float | None, size: int
) -> None:
    got = chunk_size_for(total, requested, max_in_flight=in_flight, images_per_minute=ipm)
    assert got == size
    if requested is None and total > PER_FILE_UP_TO:
        chunks = len(chunked(list(range(total)), got))
        assert chunks <= TARGET_CHUNKS
        # At the batch's top speed, task runs end at most TASK_RUNS_PER_S per second.
        assert top_jobs_per_s(in_flight, ipm) / got * TASKS_PER_CHUNK <= TASK_RUNS_PER_S + 1e-9


def test_open_chunks_and_submit_slots_follow_max_in_flight() -> None:
    # Enough chunks open that every free slot finds a loaded job waiting.
    assert chunks_open_for(50, 10) * 10 >= 2 * 50
    assert chunks_open_for(8, 1) == 17
    assert submit_slots_for(8) == 2
    assert submit_slots_for(50) == 13
    assert submit_slots_for(1) == 2


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(latency=0.3, workers=8)) as srv:
        yield srv


def _states() -> list[JobRecord]:
    jobs = discover_jobs(str(EXAMPLES), InpaintParams(steps=1), None)
    return prepare_many(jobs)


def _settings(server: LocalServer, out: Path, in_flight: int) -> tuple[BatchSettings, Endpoint]:
    settings = BatchSettings(
        source=str(EXAMPLES),
        out=str(out),
        state_dir=str(out / "state"),
        max_in_flight=in_flight,
        images_per_minute=None,
    )
    return settings, Endpoint(server.base_url, api_key=None, local=False)


async def test_in_flight_limit_holds_across_chunks(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = 0
    peak = 0
    advance = JobRunner.advance

    async def counting(self: JobRunner, state: JobRecord) -> Any:
        nonlocal active, peak
        active += 1  # a job enters the window with its submit
        peak = max(peak, active)
        try:
            return await advance(self, state)
        finally:
            active -= 1  # and leaves it once its result is written

    monkeypatch.setattr(JobRunner, "advance", counting)
    states = _states()
    async with open_run(*_settings(server, tmp_path, 2)) as run:
        chunks = await asyncio.gather(run.run_jobs(states[:2]), run.run_jobs(states[2:]))

    done = [s for chunk in chunks for s in chunk]
    assert [s.job.name for s in done] == [s.job.name for s in states]  # order kept
    assert {s.outcome.status for s in done if s.outcome} == {JobStatus.SUCCEEDED}
    assert peak == 2
    counts = job_counts(server)
    assert counts.submits_per_job == [1, 1, 1, 1]


@pytest.fixture
def helpful_server() -> Iterator[LocalServer]:
    """`helpful`: the run learns task durations from `debug_info`, which `novita` leaves "".

    Pinned until the client learns from its own observations (issue 11, item 2).
    """
    with LocalServer(ServerConfig(latency=0.3, workers=8, profile="helpful")) as srv:
        yield srv


async def test_a_runs_later_tasks_are_polled_when_they_are_likely_done(
    helpful_server: LocalServer, tmp_path: Path
) -> None:
    server = helpful_server
    # Steady tasks (0.3 s, the same tiny image): after the first few finish, the run knows how
    # long tasks take and polls new ones first about then, so most are done when first polled.
    source = tiny_batch(tmp_path / "in", 24)
    states = prepare_many(discover_jobs(str(source), InpaintParams(steps=1), None))
    async with open_run(*_settings(server, tmp_path / "out", 4)) as run:
        done = await run.run_jobs(states)

    polls = [s.outcome.polls for s in done if s.outcome and s.outcome.status == "succeeded"]
    assert len(polls) == 24
    assert sum(polls[8:]) / len(polls[8:]) <= 2  # learnt: few polls per job
    assert max(polls) <= 4
    assert job_counts(server).total_polls == sum(polls)
