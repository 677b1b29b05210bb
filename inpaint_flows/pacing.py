"""Client-side pacing: keep the API at its images-per-minute limit without tripping 429s.

Novita limits image APIs per account in images per minute, and a 429 is a wasted round trip that
also delays the retried request. Spacing requests evenly just under the limit is faster than
bursting into the limit and backing off, so every submit first reserves its images' slots here.

The schedule is a generic cell rate algorithm (GCRA): one image slot every
``60 / (images_per_minute * safety)`` seconds; a request for ``n`` images starts at its first
free slot and holds the following ``n - 1``; up to ``burst`` slots may start at once after an idle
spell. A second rule covers servers that count images in a sliding 60 s window (the local server
does; Novita does not say): no window of ``60 / safety`` seconds may hold more than
``images_per_minute`` images. Single-image requests never meet that rule (the spacing already
keeps them under it); multi-image requests can, because e.g. three 4-image requests evenly spaced
at 10 images/min land 24.5 s apart, and a 60 s window then sees 12 images.

Reservations are made under a `threading.Lock` and the wait happens outside it with
`asyncio.sleep`, so one limiter can serve tasks running in different threads and event loops
(Prefect runs task runs that way), which is why `shared_limiter` hands out one per key.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Reserves evenly spaced image slots so requests stay under an images-per-minute limit.

    Args:
        images_per_minute: The server's limit; None disables pacing (`acquire` never waits).
        burst: How many slots may start at once after the limiter has been idle.
        safety: Fraction of the limit to aim for, so clock skew and network jitter between us
            and the server do not push a request over the limit.
        clock: Monotonic seconds; injectable for tests.
        sleep: Awaitable sleep; injectable for tests.
    """

    def __init__(
        self,
        images_per_minute: float | None,
        *,
        burst: int = 1,
        safety: float = 0.98,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if images_per_minute is not None and not (
            math.isfinite(images_per_minute) and images_per_minute > 0
        ):
            raise ValueError(
                f"images_per_minute must be a positive number or None, got {images_per_minute!r}"
            )
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        if not 0 < safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {safety!r}")
        self.images_per_minute = images_per_minute
        self.burst = burst
        self.safety = safety
        self.interval: float | None = (
            None if images_per_minute is None else 60.0 / (images_per_minute * safety)
        )
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Theoretical arrival time: when the slot after the last reserved one becomes free.
        self._tat = -math.inf
        # Reserved sends (start time, images) that may still be in a window, oldest first.
        self._window = 60.0 / safety
        self._sends: deque[tuple[float, int]] = deque()
        self._in_window = 0
        self._last_start = -math.inf

    def __repr__(self) -> str:
        return (
            f"RateLimiter(images_per_minute={self.images_per_minute!r}, burst={self.burst}, "
            f"safety={self.safety})"
        )

    def reserve(self, n: int = 1) -> float:
        """Reserve `n` image slots now; returns how many seconds to wait before sending."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        if self.interval is None:
            return 0.0
        with self._lock:
            now = self._clock()
            base = max(self._tat, now)
            start = max(now, base - (self.burst - 1) * self.interval, self._last_start)
            start = self._window_start(start, n)
            self._sends.append((start, n))
            self._in_window += n
            self._last_start = start
            self._tat = max(base, start) + n * self.interval
        return start - now

    def _window_start(self, earliest: float, n: int) -> float:
        """The first time >= `earliest` at which `n` more images keep every window in limit."""
        assert self.images_per_minute is not None
        # Starts only move forward, so a send that left the window for `earliest` left for good.
        while self._sends and self._sends[0][0] <= earliest - self._window:
            self._in_window -= self._sends.popleft()[1]
        if self._in_window + n <= self.images_per_minute:
            return earliest
        freed = 0
        start = earliest
        for stamp, count in self._sends:
            freed += count
            start = stamp + self._window
            if self._in_window - freed + n <= self.images_per_minute:
                break
        # (A request larger than the limit goes alone, once the window is empty.)
        return max(earliest, start)

    async def acquire(self, n: int = 1) -> None:
        """Wait until `n` images may be sent without exceeding the limit."""
        delay = self.reserve(n)
        if delay > 0:
            await self._sleep(delay)

    def penalize(self, seconds: float) -> None:
        """Push the next free slot to at least `seconds` from now, with no burst credit.

        Called after a 429: the server's window is full, so nobody sharing this limiter should
        send before the server's Retry-After (or the client's backoff) has passed.
        """
        if self.interval is None or not seconds > 0:
            return
        with self._lock:
            earliest = self._clock() + seconds
            # `reserve` lets a slot start up to (burst - 1) intervals before the arrival time.
            self._tat = max(self._tat, earliest + (self.burst - 1) * self.interval)


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(key: str, ipm: float | None, *, burst: int = 1) -> RateLimiter:
    """The process-wide limiter for `key`, created on first use.

    Every task of a flow run that passes the same key (and limit) paces against the same
    schedule, whichever thread or event loop it runs in. Asking for a key with a different
    limit or burst replaces its limiter: the new setting wins from then on.
    """
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None or limiter.images_per_minute != ipm or limiter.burst != burst:
            limiter = RateLimiter(ipm, burst=burst)
            _shared[key] = limiter
        return limiter
