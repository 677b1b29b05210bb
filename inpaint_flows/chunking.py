"""How a batch is cut into chunks: task runs for the dashboard, not units of concurrency.

Jobs are grouped in chunks only for the dashboard: two task runs per chunk (load+validate, then
inpaint), at most ~100 chunks for any batch and no more than ~2 task runs per second at the
batch's top speed, so Prefect records a few hundred task runs however many images there are and
its server never competes with the run for CPU (`chunk_size_for`). Concurrency is the run's
in-flight limit (`inpaint_flows.batch`), shared by all chunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

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


def chunks_to_fill(max_in_flight: int, size: int) -> int:
    """How many chunks hold as many jobs as can be in flight at once."""
    return math.ceil(max(1, max_in_flight) / max(1, size))


def chunks_open_for(max_in_flight: int, size: int) -> int:
    """How many chunks run at once: enough that jobs wait for every slot the gate frees."""
    return 2 * chunks_to_fill(max_in_flight, size) + 1


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def chunk_label(index: int, count: int, names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"chunk {index + 1}/{count} ({names[0]} … {names[-1]})"
