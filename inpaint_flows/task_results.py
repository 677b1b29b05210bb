"""Reading a task-result body, tolerant of the variations seen in the wild."""

from __future__ import annotations

import math
from typing import Any, cast

from inpaint_flows.contract import REPORTED_TASK_STATUSES, TaskStatus
from inpaint_flows.errors import NovitaError
from inpaint_flows.models import ResultImage, TaskResult

TASK_STATUSES: frozenset[str] = frozenset(REPORTED_TASK_STATUSES)


def parse_task_result(data: dict[str, Any], task_id: str) -> TaskResult:
    """A `TaskResult` from a task-result body, tolerant of the variations seen in the wild."""
    if "task" not in data and isinstance(data.get("data"), dict):
        data = data["data"]
    task = _object(data.get("task"))
    status = task.get("status")
    if status not in TASK_STATUSES:
        raise NovitaError(
            f"Task {task_id}: the API reported "
            + (f"an unknown status {status!r}" if status is not None else "no status")
            + f"; expected one of "
            f"{', '.join(sorted(TASK_STATUSES))}. The client may need updating for it.",
            reason="UNKNOWN_TASK_STATUS",
        )
    images: list[ResultImage] = []
    for item in data.get("images") or ():
        if not isinstance(item, dict) or not item.get("image_url"):
            continue
        ttl = _number(item.get("image_url_ttl"))
        image_type = item.get("image_type")
        images.append(
            ResultImage(
                image_url=str(item["image_url"]),
                image_url_ttl=int(ttl) if ttl is not None else None,
                image_type=str(image_type) if image_type else None,
            )
        )
    extra = _object(data.get("extra"))
    seed = extra.get("seed")
    return TaskResult(
        task_id=str(task.get("task_id") or task_id),
        status=cast(TaskStatus, status),
        reason=str(task.get("reason") or ""),
        eta=_number(task.get("eta")),
        progress_percent=_number(task.get("progress_percent")),
        images=tuple(images),
        seed=str(seed) if seed is not None and seed != "" else None,
        server_duration_s=server_duration_s(_object(extra.get("debug_info"))),
    )


MAX_TASK_DURATION_S = 86_400.0


def server_duration_s(debug: dict[str, Any]) -> float | None:
    """Seconds from `submit_time_ms` to `complete_time_ms` of a task-result's
    `extra.debug_info`, if both are there and make sense; else None."""
    submitted = _number(debug.get("submit_time_ms"))
    completed = _number(debug.get("complete_time_ms"))
    if submitted is None or completed is None or submitted <= 0:
        return None
    seconds = (completed - submitted) / 1000
    return seconds if 0 <= seconds <= MAX_TASK_DURATION_S else None


def _object(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (absent and null parts are common)."""
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    """A finite number from a JSON number or numeric string; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
