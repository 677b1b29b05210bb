"""Finish each job's gallery work as the job ends, while the others wait on the API.

A batch spends most of its time waiting: on the API's tasks, on downloads. The gallery's
thumbnails (original, mask, results: a decode, a resize and an encode each) used to be made
after the last download, all at once: ~12 s for 800 photo-sized rows, on the critical path of
every run. `JobFinisher` makes a job's input thumbnails as it starts and its result's (and its
gallery row) as soon as it is final, in one worker thread, so at the end `write_gallery` only
puts the page together from the rows already rendered. A result's thumbnail is made from the
pixels its download's check decoded (the finisher is the run's `ResultPreviews`), so no result
is decoded twice.

One thread, not a pool: the work is CPU, it must not crowd out the event loop that keeps the
other jobs polling, and one queue keeps the `Thumbnailer` single-threaded. Each queued item is
a job or a report row (paths, not pixels), so memory stays flat whatever the batch size.
Queuing takes no slot of the in-flight limit and returns at once: finishing never delays a
submit.

A failure here can cost a thumbnail, never a job: the row is simply made again (or shown as a
placeholder) when the gallery is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

from PIL import Image

from inpaint_flows.batch import BatchRun
from inpaint_flows.gallery import Thumbnail, Thumbnailer, thumbnail_of
from inpaint_flows.job_record import JobRecord
from inpaint_flows.models import Job, JobOutcome
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.storage import StrPath

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class JobFinisher:
    """Makes finished jobs' gallery thumbnails in a worker thread, as the jobs finish.

    Use as an async context manager inside the run's event loop; `drain()` waits until every
    row queued so far is done (call it before writing the gallery with `thumbnails`).
    """

    def __init__(self, out_dir: StrPath | OutputFolder) -> None:
        self.thumbnails = Thumbnailer(out_dir)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Future[None]] = set()
        self.finished = 0  # rows whose thumbnails were made
        # Results' thumbnails made from the pixels their download's check decoded, by output
        # path, until their row is finished (a few at a time: as many as jobs in flight).
        self._made: dict[str, Thumbnail] = {}

    async def __aenter__(self) -> JobFinisher:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-finisher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            for future in self._pending:
                future.cancel()
            executor.shutdown(wait=True, cancel_futures=True)

    def job_started(self, job: Job) -> None:
        """Queue the thumbnails of `job`'s inputs (original, mask); returns at once.

        They do not wait for the result: made while the job is with the API, they leave only
        the result's thumbnail for when it ends, and little for after the last download.
        """
        self._queue(self._prepare_inputs, job)

    def job_finished(self, outcome: JobOutcome) -> None:
        """Queue `outcome`'s thumbnails (those not made yet); returns at once."""
        self._queue(self._prepare, outcome)

    # `ResultPreviews`: the run's `JobRunner` hands each result's decoded pixels over here.
    def make(self, image: Image.Image) -> Thumbnail:
        """The gallery thumbnail of a result being checked (in the check's worker thread)."""
        return thumbnail_of(image)

    def keep(self, rel: str, preview: Thumbnail) -> None:
        """`rel`'s thumbnail, written with its row (`job_finished`)."""
        self._made[rel] = preview

    def _queue(self, work: Callable[[_T], None], item: _T) -> None:
        if self._executor is None:
            return  # closed: the gallery makes what is missing
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, work, item)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for every queued row."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _prepare_inputs(self, job: Job) -> None:
        try:
            self.thumbnails.thumb(job.image_path)
            if job.mask_path:
                self.thumbnails.thumb(job.mask_path)
        except Exception:  # made again with the row
            logger.debug("input thumbnails of %s deferred", job.name, exc_info=True)

    def _prepare(self, outcome: JobOutcome) -> None:
        made = {rel: t for rel in outcome.outputs if (t := self._made.pop(rel, None)) is not None}
        try:
            self.thumbnails.prepare(outcome, made)
        except Exception:  # a thumbnail is a cache: the gallery makes it again
            logger.debug("thumbnails of %s deferred to the gallery", outcome.name, exc_info=True)
            return
        self.finished += 1


async def run_and_finish(
    run: BatchRun, records: Sequence[JobRecord], finisher: JobFinisher | None
) -> list[JobRecord]:
    """`run.run_jobs(records)`, each job handed to `finisher` the moment it is final.

    Order is kept. Each job holds its in-flight slot only for its own run (as in
    `BatchRun.run_jobs`), then its finishing work is queued without one.
    """
    if finisher is None:
        return await run.run_jobs(records)

    async def one(record: JobRecord) -> JobRecord:
        if not record.final:
            finisher.job_started(record.job)
        (done,) = await run.run_jobs([record])
        outcome = done.outcome  # derived anew at each access: once
        if outcome is not None:
            finisher.job_finished(outcome)
        return done

    return list(await asyncio.gather(*(one(s) for s in records)))
