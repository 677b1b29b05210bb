"""A bounded pool of threads that runs queued tasks: QUEUED -> PROCESSING -> SUCCEED | FAILED.

Each task takes its simulated latency (drawn at submit) plus the real compute time of
`run_inpaint` and encoding. `eta` and `progress_percent` are estimates from those two parts: the
compute part is predicted from the seconds per pixel measured on earlier tasks, and a queued task's
eta adds the work ahead of it divided among the workers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from novita_local.images import corrupt, encode
from novita_local.inpaint import run_inpaint
from novita_local.signing import UrlSigner
from novita_local.store import Task, TaskStore, now_ms

logger = logging.getLogger(__name__)

# Before anything was measured: seconds per output pixel (Telea on a laptop core, order of it).
_PRIOR_SECONDS_PER_PIXEL = 2e-7
_MIN_SECONDS = 0.01


class ComputeModel:
    """Predicts compute seconds from output pixels, learning from measured tasks (EMA)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds_per_pixel = _PRIOR_SECONDS_PER_PIXEL

    def predict(self, pixels: int) -> float:
        with self._lock:
            return max(_MIN_SECONDS, pixels * self._seconds_per_pixel)

    def observe(self, pixels: int, seconds: float) -> None:
        if pixels <= 0:
            return
        with self._lock:
            self._seconds_per_pixel = 0.7 * self._seconds_per_pixel + 0.3 * (seconds / pixels)


class WorkerPool:
    """`workers` threads taking tasks from a FIFO queue."""

    def __init__(
        self,
        store: TaskStore,
        signer: UrlSigner,
        *,
        workers: int,
        image_url_ttl: int,
        compute: ComputeModel,
        on_finished: Callable[[Task], None] | None = None,
    ) -> None:
        self._store = store
        self._signer = signer
        self._workers = workers
        self._ttl = image_url_ttl
        self._compute = compute
        self._on_finished = on_finished
        self._queue: deque[Task] = deque()
        self._running: set[Task] = set()
        self._cond = threading.Condition(store.lock)
        self._stop = threading.Event()
        self._held = False  # tasks stay queued while held (tests: keep runs in flight)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for number in range(self._workers):
            thread = threading.Thread(
                target=self._loop, name=f"novita-local-worker-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def enqueue(self, task: Task) -> None:
        with self._cond:
            self._queue.append(task)
            self._cond.notify()

    def hold(self, held: bool) -> None:
        """Stop starting queued tasks (True) or start them again (False)."""
        with self._cond:
            self._held = held
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget queued tasks (restart); running ones finish into the void."""
        with self._cond:
            self._queue.clear()
            self._running.clear()

    # ------------------------------------------------------------ estimates

    def estimate(self, task: Task, now: float | None = None) -> tuple[int, int]:
        """(eta seconds, progress percent) for `task`, as honest as the model allows."""
        now = time.monotonic() if now is None else now
        with self._cond:
            if task.finished:
                return 0, task.progress_at_end
            if task.status == "TASK_STATUS_PROCESSING" and task.started is not None:
                elapsed = now - task.started
                total = max(task.estimated_total, _MIN_SECONDS)
                remaining = max(total - elapsed, 0.0)
                progress = min(99, int(100 * elapsed / total))
                return math.ceil(remaining), progress
            ahead = 0.0
            for running in self._running:
                if running.started is not None:
                    ahead += max(running.estimated_total - (now - running.started), 0.0)
            for queued in self._queue:
                if queued is task:
                    break
                ahead += queued.estimated_total
            return math.ceil(ahead / self._workers + task.estimated_total), 0

    # ------------------------------------------------------------ processing

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while (not self._queue or self._held) and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                task = self._queue.popleft()
                if not self._store.contains(task):
                    continue
                task.status = "TASK_STATUS_PROCESSING"
                task.started = time.monotonic()
                task.execute_time_ms = now_ms()
                self._running.add(task)
            try:
                self._process(task)
            except Exception as exc:  # a bug must fail the task, never kill the worker
                logger.exception("task %s crashed", task.task_id)
                self._finish_failed(task, f"internal error while processing: {exc}")
            finally:
                with self._cond:
                    self._running.discard(task)

    def _process(self, task: Task) -> None:
        if not self._simulate_latency(task):
            return
        if task.will_fail:
            self._finish_failed(
                task,
                "TASK_FAILED: the inpainting worker failed on this task (local server: injected "
                "by task_fail_rate); submit it again to retry",
            )
            return
        assert task.image is not None and task.mask is not None
        started = time.perf_counter()
        try:
            outputs = run_inpaint(task.image, task.mask, task.settings)
        except Exception as exc:
            logger.exception("inpainting failed for task %s", task.task_id)
            self._finish_failed(
                task, f"TASK_FAILED: inpainting failed: {type(exc).__name__}: {exc}"
            )
            return
        files = [encode(output, task.image_type) for output in outputs]
        pixels = task.image.width * task.image.height * max(1, len(outputs))
        self._compute.observe(pixels, time.perf_counter() - started)
        if task.corrupt:
            files = [corrupt(data) for data in files]
        # Valid for at least the ttl; a ttl of 0 means already expired when the task completes
        # (ceil would have left up to a second, so a quick download sometimes still worked).
        now = time.time()
        expires_at = math.ceil(now + self._ttl) if self._ttl else math.floor(now)
        urls = [
            self._signer.url(task.base_url, task.task_id, index, task.image_type, expires_at)
            for index in range(len(files))
        ]
        with self._cond:
            if not self._store.contains(task):
                return
            task.files = files
            task.image_urls = urls
            task.expires_at = expires_at
            task.status = "TASK_STATUS_SUCCEED"
            task.progress_at_end = 100
            task.complete_time_ms = now_ms()
            task.image = task.mask = None
        if self._on_finished is not None:
            self._on_finished(task)

    def _simulate_latency(self, task: Task) -> bool:
        """Sleep the task's latency; False if the server stops or restarts meanwhile."""
        deadline = time.monotonic() + task.latency
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, 0.05)) or not self._store.contains(task):
                return False  # a restart frees the worker at once, as a crash would
        return True

    def _finish_failed(self, task: Task, reason: str) -> None:
        with self._cond:
            if not self._store.contains(task) or task.finished:
                return
            if task.started is not None:
                elapsed = time.monotonic() - task.started
                task.progress_at_end = min(99, int(100 * elapsed / max(task.estimated_total, 1e-3)))
            task.status = "TASK_STATUS_FAILED"
            task.reason = reason
            task.complete_time_ms = now_ms()
            task.image = task.mask = None
        if self._on_finished is not None:
            self._on_finished(task)
