"""One batch run's shared collaborators, and running the jobs of a chunk with them.

How a batch keeps the API busy with little orchestration cost (measured in
`tests/benchmarks/bench_pipeline.py`):

- Inside a chunk every job runs submit → poll → download on its own, holding one slot of the
  run's in-flight limit from its submit until its result is written. Slots are shared by all
  chunks and freed job by job, so a slow job never holds back the others of its chunk, and the
  pacer (not a stage barrier) decides when the next submit goes out.
- A few more chunks than the in-flight limit can serve are open at once
  (`chunking.chunks_open_for`), so a freed slot always finds a loaded job waiting.

`BatchRun` holds what the run's jobs share: one API client (one connection pool, one pacer,
one batch-wide halt), the ledger, the in-flight and submitting slots, the poll planner and the
content locks. The flow opens it once (`open_run`) and hands the object to its chunk tasks.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from inpaint_flows.client import NovitaClient
from inpaint_flows.endpoint import Endpoint
from inpaint_flows.halt import BatchHalt
from inpaint_flows.job_record import JobRecord
from inpaint_flows.ledger import Ledger
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.pacing import RateLimiter
from inpaint_flows.pipeline import ContentLocks, JobRunner, Tuning
from inpaint_flows.polling import PollPlanner
from inpaint_flows.result_images import ResultPreviews
from inpaint_flows.settings import BatchSettings
from inpaint_flows.store_location import StoreLocation


def submit_slots_for(max_in_flight: int) -> int:
    """Submits out at once: fewer than jobs in flight, since each holds its image as base64
    (plus the JSON body built from it) until the API answers, or while it waits for the pacer;
    polls and downloads hold no payload while they wait."""
    return max(2, math.ceil(max(1, max_in_flight) / 4))


@dataclass
class BatchRun:
    """What the jobs of one run share; made by `open_run`, passed to every chunk."""

    client: NovitaClient
    ledger: Ledger
    endpoint: Endpoint
    in_flight: asyncio.Semaphore
    runner: JobRunner
    output: OutputFolder
    halt: BatchHalt = field(default_factory=BatchHalt)

    async def run_jobs(self, records: Sequence[JobRecord]) -> list[JobRecord]:
        """Submit, poll and download every job of a chunk, each on its own; order is kept.

        Each job holds an in-flight slot from its submit (pacing wait included) until its
        result is written.
        """

        async def one(record: JobRecord) -> JobRecord:
            if record.final:
                return record
            async with self.in_flight:
                return await self.runner.advance(record)

        return list(await asyncio.gather(*(one(s) for s in records)))


@asynccontextmanager
async def open_run(
    settings: BatchSettings,
    endpoint: Endpoint,
    *,
    output: OutputFolder | None = None,
    limiter: RateLimiter | None = None,
    tuning: Tuning = Tuning(),
    previews: ResultPreviews[Any] | None = None,
) -> AsyncIterator[BatchRun]:
    """The run's client (one kept-open connection per in-flight slot), ledger and helpers.

    `output`: where results go (default: `settings.out`, a local folder). `limiter` paces the
    run's submits (default: to `settings.images_per_minute`); the flow passes one that follows
    the run's share of the account's limit (`account.shared_pace`). `previews`: made from each
    result's pixels as its download is checked (the `JobFinisher`'s thumbnails).
    """
    halt = BatchHalt()
    limit = settings.max_in_flight
    output = output or OutputFolder(settings.out)
    store = StoreLocation.for_batch(
        settings.state_url, output.state_dir(settings.state_dir), os.environ
    )
    async with (
        NovitaClient(
            endpoint.api_key,
            endpoint.base_url,
            timeout=settings.request_timeout_s,
            limiter=limiter or RateLimiter(settings.images_per_minute),
            connections=max(1, limit),
            halt=halt,
        ) as client,
        Ledger.open(store) as ledger,
    ):
        runner = JobRunner(
            client,
            ledger,
            output=output,
            poll_timeout_s=settings.poll_timeout_s,
            planner=PollPlanner(tuning.min_poll_interval_s, tuning.max_poll_interval_s),
            locks=ContentLocks(),
            submitting=asyncio.Semaphore(submit_slots_for(limit)),
            tuning=tuning,
            api=endpoint.label,
            previews=previews,
        )
        yield BatchRun(
            client=client,
            ledger=ledger,
            endpoint=endpoint,
            in_flight=asyncio.Semaphore(max(1, limit)),
            runner=runner,
            output=output,
            halt=halt,
        )
