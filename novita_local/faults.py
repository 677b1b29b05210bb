"""Seeded fault injection: which request fails, how, and the other per-task random draws.

Faults come from one `random.Random(seed)`: each submit draws once, each task-result poll draws
once, and each created task draws twice (fail? corrupt?). The same seed and the same request
sequence therefore meet the same faults. Random seeds for `seed: -1`, per-task latencies and
TASK_STATUS_UNKNOWN answers come from their own generators derived from the same seed, so
changing one rate does not change the images, the timings or the other faults.

Moderation is not a draw in sequence but a function of the seed and the image: an image refused
once is refused every time it is sent, whatever else the server saw (a real content check judges
the image, not the moment).
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
from enum import Enum
from typing import TypeVar

from novita_local.config import ServerConfig

T = TypeVar("T")


class SubmitFault(Enum):
    NONE = "none"
    DROP = "drop"
    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"


class PollFault(Enum):
    NONE = "none"
    DROP = "drop"
    RATE_LIMIT = "429"
    SERVER_ERROR = "500"


class FaultInjector:
    """All random decisions of one server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.seed = config.seed if config.seed is not None else secrets.randbelow(2**31)
        self._lock = threading.Lock()
        self.reseed()

    def reseed(self) -> None:
        with self._lock:
            self._faults = random.Random(self.seed)
            self._seeds = random.Random(f"{self.seed}/seeds")
            self._latency = random.Random(f"{self.seed}/latency")
            self._unknown = random.Random(f"{self.seed}/unknown-status")

    def submit(self) -> SubmitFault:
        c = self.config
        bands = (
            (c.drop_submit_rate, SubmitFault.DROP),
            (c.submit_429_rate, SubmitFault.RATE_LIMIT),
            (c.submit_500_rate, SubmitFault.SERVER_ERROR),
            (c.submit_503_rate, SubmitFault.UNAVAILABLE),
        )
        with self._lock:
            draw = self._faults.random()
        return _band(draw, bands, SubmitFault.NONE)

    def poll(self) -> PollFault:
        c = self.config
        bands = (
            (c.drop_poll_rate, PollFault.DROP),
            (c.result_429_rate, PollFault.RATE_LIMIT),
            (c.result_500_rate, PollFault.SERVER_ERROR),
        )
        with self._lock:
            draw = self._faults.random()
        return _band(draw, bands, PollFault.NONE)

    def task(self) -> tuple[bool, bool]:
        """(will fail, images corrupt) for a new task."""
        with self._lock:
            fail = self._faults.random() < self.config.task_fail_rate
            bad = self._faults.random() < self.config.corrupt_image_rate
        return fail, bad

    def moderated(self, image_base64: str) -> bool:
        """Whether the content check refuses this input image (ILLEGAL_IMAGE_CONTENT)."""
        rate = self.config.moderation_rate
        if rate <= 0.0:
            return False
        digest = hashlib.sha256(f"{self.seed}/moderation/".encode())
        digest.update(image_base64.encode("utf-8", "surrogatepass"))
        return int.from_bytes(digest.digest()[:8], "big") / 2**64 < rate

    def unknown_status(self) -> bool:
        """Whether this poll of an unfinished task reports TASK_STATUS_UNKNOWN."""
        rate = self.config.unknown_status_rate
        if rate <= 0.0:
            return False
        with self._lock:
            return self._unknown.random() < rate

    def random_seed(self) -> int:
        """A seed for a request that sent `seed: -1` (or none)."""
        with self._lock:
            return self._seeds.randrange(0, 2**32)

    def latency(self) -> float:
        low, high = self.config.latency_range
        if low == high:
            return low
        with self._lock:
            return self._latency.uniform(low, high)


def _band(draw: float, bands: tuple[tuple[float, T], ...], default: T) -> T:
    edge = 0.0
    for rate, outcome in bands:
        edge += rate
        if draw < edge:
            return outcome
    return default
