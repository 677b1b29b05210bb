"""The `GET /v3/async/task-result` body, shaped so the official SDK parses it.

Fixed by the contract and the SDK's crash rules: `extra` is always present with `seed` as a
string and `debug_info` times as strings (unix milliseconds, "" until reached; always "" when
`timings` is off, as in Novita's own example of a finished task); `videos` and
`audios` are always empty lists; `nsfw_detection_result` is null (no detector runs locally, and
the SDK crashes on `{}`); `image_url_ttl` is a number: the whole seconds the URL has left, since
URLs are signed once, when the task completes, and cannot be renewed.
"""

from __future__ import annotations

import math
import time
from typing import Any

from inpaint_flows.contract import TASK_TYPE
from novita_local.store import Task


def task_result(
    task: Task,
    eta: int,
    progress: int,
    *,
    timings: bool = True,
    status: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The body for `task`; `status` overrides its status (TASK_STATUS_UNKNOWN answers)."""
    now = time.time() if now is None else now
    status = status or task.status
    images: list[dict[str, Any]] = []
    if status == "TASK_STATUS_SUCCEED":
        ttl = max(0, math.floor(task.expires_at - now))
        images = [
            {
                "image_url": url,
                "image_url_ttl": ttl,
                "image_type": task.image_type,
                "nsfw_detection_result": None,
            }
            for url in task.image_urls
        ]
    return {
        "task": {
            "task_id": task.task_id,
            "task_type": TASK_TYPE,
            "status": status,
            "reason": task.reason,
            "eta": eta,
            "progress_percent": progress,
        },
        "images": images,
        "videos": [],
        "audios": [],
        "extra": {
            "seed": str(task.seed),
            "enable_nsfw_detection": task.enable_nsfw_detection,
            "debug_info": {
                "request_info": "",
                "submit_time_ms": _ms(task.submit_time_ms if timings else None),
                "execute_time_ms": _ms(task.execute_time_ms if timings else None),
                "complete_time_ms": _ms(task.complete_time_ms if timings else None),
            },
        },
    }


def _ms(value: int | None) -> str:
    return "" if value is None else str(value)
