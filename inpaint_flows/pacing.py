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

A 429 without `Retry-After` (Novita sends none) slows the whole run, not just the job that met
it: `rate_limited` lowers the pace multiplicatively (x`DECREASE`) and holds every submit back for
one slot of the new pace; each accepted submit then raises the pace a little
(`RECOVER` of the configured limit) until it is back at the configured limit. Two runs sharing
one account's limit thus settle near half of it each instead of failing jobs. A run with no
limit of its own has nothing to slow down to: its requests back off one by one.

One limiter belongs to one run and its event loop: reservations are plain code with no await
inside, so they need no lock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]

# After a 429 without Retry-After: the pace drops to this fraction, and each accepted submit
# gives back this fraction of the configured limit; never below MIN_RATE images per minute.
DECREASE = 0.7
RECOVER = 0.05
MIN_RATE = 1.0
FLOOR_SHARE = 0.1  # never below this share of the configured limit
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
        # The pace in force: the configured limit, lowered after 429s and recovering.
        self.rate: float | None = images_per_minute
        self._calm_until = -math.inf  # no second decrease before this (see `rate_limited`)
        self._clock = clock
        self._sleep = sleep
        self._recent: deque[float] = deque()  # send times of the last 60 s (for a first 429)
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

    @property
    def interval(self) -> float | None:
        """Seconds between image slots at the pace in force (None: not paced)."""
        return None if self.rate is None else 60.0 / (self.rate * self.safety)

    def reserve(self, n: int = 1) -> float:
        """Reserve `n` image slots now; returns how many seconds to wait before sending."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        interval = self.interval
        now = self._clock()
        if interval is None:
            self._remember(now, n)
            return 0.0
        base = max(self._tat, now)
        start = max(now, base - (self.burst - 1) * interval, self._last_start)
        start = self._window_start(start, n)
        self._sends.append((start, n))
        self._in_window += n
        self._last_start = start
        self._tat = max(base, start) + n * interval
        return start - now

    def _remember(self, now: float, n: int) -> None:
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
        self._recent.extend([now] * n)

    def _window_start(self, earliest: float, n: int) -> float:
        """The first time >= `earliest` at which `n` more images keep every window in limit."""
        assert self.rate is not None
        # Starts only move forward, so a send that left the window for `earliest` left for good.
        while self._sends and self._sends[0][0] <= earliest - self._window:
            self._in_window -= self._sends.popleft()[1]
        if self._in_window + n <= self.rate:
            return earliest
        freed = 0
        start = earliest
        for stamp, count in self._sends:
            freed += count
            start = stamp + self._window
            if self._in_window - freed + n <= self.rate:
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

        Called after a 429 with `Retry-After`: the server's window is full, so nobody sharing
        this limiter should send before then.
        """
        interval = self.interval
        if interval is None or not seconds > 0:
            return
        earliest = self._clock() + seconds
        # `reserve` lets a slot start up to (burst - 1) intervals before the arrival time.
        self._tat = max(self._tat, earliest + (self.burst - 1) * interval)
        self._last_start = max(self._last_start, earliest)

    def rate_limited(self, retry_after: float | None) -> float | None:
        """A submit met a 429: slow the run down; returns how long that submit should wait.

        With `Retry-After`, everyone waits that long. Without it (Novita sends none), a paced
        run drops to `DECREASE` of its pace (at most once per slot of the new pace: the 429s of
        submits already sent at the old pace say nothing new) and everyone waits one slot of
        the new pace. A run with no limit of its own has no window to back off to: it returns
        None and the request backs off on its own.
        """
        if retry_after is not None:
            self.penalize(retry_after)
            return retry_after
        if self.rate is None or self.images_per_minute is None:
            return None
        now = self._clock()
        if now >= self._calm_until:
            floor = max(MIN_RATE, FLOOR_SHARE * self.images_per_minute)
            self.rate = max(floor, self.rate * DECREASE)
            self._tat = now  # the old schedule was too fast: the new pace starts from now
        wait = 60.0 / (self.rate * self.safety)
        self._calm_until = now + wait
        self.penalize(wait)
        return wait

    def set_limit(self, images_per_minute: float) -> None:
        """Pace to a new limit from now on (the run's share of an account's limit changed).

        A pace lowered by 429s stays lowered in proportion, and recovers towards the new limit.
        """
        if not (math.isfinite(images_per_minute) and images_per_minute > 0):
            raise ValueError(f"images_per_minute must be positive, got {images_per_minute!r}")
        old = self.images_per_minute
        if old == images_per_minute:
            return
        if old is None or self.rate is None:
            self.rate = images_per_minute
        else:
            self.rate = min(images_per_minute, self.rate * images_per_minute / old)
        self.images_per_minute = images_per_minute

    def accepted(self) -> None:
        """A submit was accepted: recover part of the way back to the configured limit."""
        ceiling = self.images_per_minute
        if self.rate is None or ceiling is None or self.rate >= ceiling:
            return
        self.rate = min(ceiling, self.rate + RECOVER * ceiling)
