"""Delivering `extra.webhook` notifications the way the contract describes.

When a task finishes, `{"event_type": "ASYNC_TASK_RESULT", "payload": <task-result body>}` is
POSTed to the task's webhook URL from a background thread, retried up to 5 times on a timeout
(5 s), a transport error or a non-2xx answer, 1 s apart. No signature (none is documented).
`test_mode` is accepted and ignored.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx

from novita_local.stats import Stats

logger = logging.getLogger(__name__)

ATTEMPTS = 5
TIMEOUT_SECONDS = 5.0
PAUSE_SECONDS = 1.0


class WebhookSender:
    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="novita-local-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def send(self, url: str, payload: dict[str, Any]) -> None:
        self._queue.put((url, {"event_type": "ASYNC_TASK_RESULT", "payload": payload}))

    def _loop(self) -> None:
        with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
            while not self._stop.is_set():
                item = self._queue.get()
                if item is None:
                    return
                url, body = item
                self._stats.webhook(self._deliver(client, url, body))

    def _deliver(self, client: httpx.Client, url: str, body: dict[str, Any]) -> bool:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = client.post(url, json=body)
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                problem = type(exc).__name__
            logger.warning("webhook attempt %d/%d failed: %s", attempt, ATTEMPTS, problem)
            if self._stop.wait(PAUSE_SECONDS):
                return False
        return False
