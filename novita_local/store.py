"""Tasks and their result files, in memory only.

A restart (`TaskStore.clear`) loses every task, as a crashed server would: polls and downloads for
old ids then get 404. Result bytes are freed once their signed URLs have expired, since nothing can
download them any more; the task itself stays pollable until a restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from novita_local.inpaint import InpaintSettings

Status = Literal[
    "TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING", "TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED"
]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class Task:
    """One submitted inpainting task and everything needed to answer polls about it."""

    task_id: str
    settings: InpaintSettings
    image_type: str  # png | webp | jpeg
    base_url: str  # where result URLs point (the address the client used)
    latency: float  # simulated seconds, drawn at submit
    estimated_compute: float  # seconds, estimated at submit
    will_fail: bool  # injected fault, drawn at submit
    corrupt: bool  # injected fault, drawn at submit
    enable_nsfw_detection: bool = False
    webhook_url: str | None = None
    image: Image.Image | None = None  # inputs, dropped once processed
    mask: Image.Image | None = None
    status: Status = "TASK_STATUS_QUEUED"
    reason: str = ""
    progress_at_end: int = 0
    submit_time_ms: int = field(default_factory=now_ms)
    execute_time_ms: int | None = None
    complete_time_ms: int | None = None
    started: float | None = None  # time.monotonic() when processing began
    files: list[bytes] | None = None  # encoded result images (None once expired)
    image_urls: list[str] = field(default_factory=list)
    expires_at: int = 0  # unix seconds after which the URLs are refused

    @property
    def seed(self) -> int:
        return self.settings.seed

    @property
    def finished(self) -> bool:
        return self.status in ("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED")

    @property
    def estimated_total(self) -> float:
        return self.latency + self.estimated_compute


class TaskStore:
    """Thread-safe task table; the worker threads and the event loop both touch it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._last_sweep = 0.0

    def add(self, task: Task) -> None:
        with self.lock:
            self._tasks[task.task_id] = task

    def get(self, task_id: str) -> Task | None:
        with self.lock:
            return self._tasks.get(task_id)

    def contains(self, task: Task) -> bool:
        """False once a restart has dropped `task` (a worker then discards its result)."""
        with self.lock:
            return self._tasks.get(task.task_id) is task

    def clear(self) -> None:
        with self.lock:
            self._tasks.clear()

    def counts_by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(
            (
                "TASK_STATUS_QUEUED",
                "TASK_STATUS_PROCESSING",
                "TASK_STATUS_SUCCEED",
                "TASK_STATUS_FAILED",
            ),
            0,
        )
        with self.lock:
            for task in self._tasks.values():
                counts[task.status] += 1
        return counts

    def sweep_expired(self, now: float | None = None, every: float = 1.0) -> None:
        """Free result bytes whose URLs have expired (at most once per `every` seconds)."""
        now = time.time() if now is None else now
        with self.lock:
            if now - self._last_sweep < every:
                return
            self._last_sweep = now
            for task in self._tasks.values():
                if task.files is not None and task.expires_at < now:
                    task.files = None
