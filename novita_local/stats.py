"""Counters behind `GET /_local/stats`: what clients did to the server, for tests and benchmarks.

Not a Novita endpoint. Its main use is catching duplicate paid submissions: `by_content_hash`
counts submits and accepted tasks per request content, so two accepted tasks for one hash mean a
client paid twice for the same job.

Shape of `snapshot()` (every count an int):

    {"profile": "novita" | "helpful", "fault_seed": int, "restarts": int,
     "submissions": {"total", "accepted", "dropped",
                     "rejected": {REASON: n},
                     "by_content_hash": {sha256: {"submitted": n, "accepted": n}}},
     "auth_refused": {"MISSING_API_KEY": n, "INVALID_API_KEY": n},   (every route, not only submit)
     "billing": {"balance": images left | null (unlimited), "spent": images},
     "rate_limited": {"total", "ipm", "injected_submit", "injected_poll"},
     "faults": {"submit_drop", "submit_429", "submit_500", "submit_503", "poll_drop",
                "poll_429", "poll_500", "task_failed", "corrupt_image", "moderation",
                "unknown_status"},
     "polls": {"total", "by_task": {task_id: n}},
     "downloads": {"total", "by_task": {task_id: n},
                   "refused": {"missing": n, "signature": n, "expired": n, "not_found": n}},
     "webhooks": {"delivered", "failed"},
     "tasks": {"total", "by_status": {TASK_STATUS_*: n}}}
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from typing import Any

_FAULTS = (
    "submit_drop",
    "submit_429",
    "submit_500",
    "submit_503",
    "poll_drop",
    "poll_429",
    "poll_500",
    "task_failed",
    "corrupt_image",
    "moderation",
    "unknown_status",
)


def content_hash(body: Any) -> str:
    """The identity of one paid request: sha256 over its image, mask and every other field.

    Defined as sha256 of `image_base64 + "\\n" + mask_image_base64 + "\\n" + canonical JSON of
    {"request": request minus the two images, "extra": extra}`, where canonical JSON has sorted
    keys, no spaces, non-ASCII kept, and fields that are null dropped (null equals absent).
    All parameters count, the seed included: a different seed is a different (paid) request.
    A body that is not `{"request": {...}}` hashes as its own canonical JSON.
    """
    digest = hashlib.sha256()
    request = body.get("request") if isinstance(body, dict) else None
    if not isinstance(request, dict):
        digest.update(_utf8(_canonical(body)))
        return digest.hexdigest()
    image = request.get("image_base64")
    mask = request.get("mask_image_base64")
    digest.update(_utf8(str(image if image is not None else "")))
    digest.update(b"\n")
    digest.update(_utf8(str(mask if mask is not None else "")))
    digest.update(b"\n")
    params = {k: v for k, v in request.items() if k not in ("image_base64", "mask_image_base64")}
    extra = body.get("extra")
    digest.update(_utf8(_canonical({"request": params, "extra": extra})))
    return digest.hexdigest()


def _utf8(text: str) -> bytes:
    """JSON may carry lone surrogates (\\ud800); hash them rather than crash on them."""
    return text.encode("utf-8", "surrogatepass")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _canonical(value: Any) -> str:
    return json.dumps(_drop_nulls(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Stats:
    """Thread-safe counters; `snapshot()` gives the JSON shape in the module docstring."""

    def __init__(self, fault_seed: int) -> None:
        self._lock = threading.Lock()
        self.fault_seed = fault_seed
        self.restarts = 0
        self.submissions = 0
        self.accepted = 0
        self.dropped = 0
        self.rejected: Counter[str] = Counter()
        self.hash_submitted: Counter[str] = Counter()
        self.hash_accepted: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.polls: Counter[str] = Counter()
        self.downloads: Counter[str] = Counter()
        self.refused_downloads: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()
        self.auth_refused: Counter[str] = Counter()

    def submitted(self, digest: str | None) -> None:
        with self._lock:
            self.submissions += 1
            if digest is not None:
                self.hash_submitted[digest] += 1

    def accept(self, digest: str | None) -> None:
        with self._lock:
            self.accepted += 1
            if digest is not None:
                self.hash_accepted[digest] += 1

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def refuse_auth(self, reason: str) -> None:
        with self._lock:
            self.auth_refused[reason] += 1

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def limited(self, kind: str) -> None:
        """kind: ipm, injected_submit or injected_poll."""
        with self._lock:
            self.rate_limited[kind] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def poll(self, task_id: str) -> None:
        with self._lock:
            self.polls[task_id] += 1

    def download(self, task_id: str) -> None:
        with self._lock:
            self.downloads[task_id] += 1

    def refuse_download(self, why: str) -> None:
        with self._lock:
            self.refused_downloads[why] += 1

    def webhook(self, delivered: bool) -> None:
        with self._lock:
            self.webhooks["delivered" if delivered else "failed"] += 1

    def restarted(self) -> None:
        with self._lock:
            self.restarts += 1

    def snapshot(
        self,
        tasks_by_status: dict[str, int],
        *,
        profile: str,
        balance: int | None,
        spent: int,
    ) -> dict[str, Any]:
        with self._lock:
            return {
                "profile": profile,
                "fault_seed": self.fault_seed,
                "restarts": self.restarts,
                "submissions": {
                    "total": self.submissions,
                    "accepted": self.accepted,
                    "dropped": self.dropped,
                    "rejected": dict(self.rejected),
                    "by_content_hash": {
                        digest: {
                            "submitted": count,
                            "accepted": self.hash_accepted.get(digest, 0),
                        }
                        for digest, count in self.hash_submitted.items()
                    },
                },
                "auth_refused": {
                    reason: self.auth_refused[reason]
                    for reason in ("MISSING_API_KEY", "INVALID_API_KEY")
                },
                "billing": {"balance": balance, "spent": spent},
                "rate_limited": {
                    "total": sum(self.rate_limited.values()),
                    "ipm": self.rate_limited["ipm"],
                    "injected_submit": self.rate_limited["injected_submit"],
                    "injected_poll": self.rate_limited["injected_poll"],
                },
                "faults": {kind: self.faults[kind] for kind in _FAULTS},
                "polls": {"total": sum(self.polls.values()), "by_task": dict(self.polls)},
                "downloads": {
                    "total": sum(self.downloads.values()),
                    "by_task": dict(self.downloads),
                    "refused": {
                        why: self.refused_downloads[why]
                        for why in ("missing", "signature", "expired", "not_found")
                    },
                },
                "webhooks": {
                    "delivered": self.webhooks["delivered"],
                    "failed": self.webhooks["failed"],
                },
                "tasks": {"total": sum(tasks_by_status.values()), "by_status": tasks_by_status},
            }
