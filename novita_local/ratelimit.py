"""Images-per-minute limit over a sliding 60 s window, as Novita limits image APIs per account.

Each accepted submit spends `image_num` images. A submit that would push the last 60 s over the
limit is refused (429 RATE_LIMIT_EXCEEDED) with `Retry-After` = whole seconds until enough earlier
images leave the window. Novita documents no Retry-After header; the local server sends one so a
well-behaved client can be tested against it (clients must also cope without it).
The whole server is one account: the window is shared by every key.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class RateLimiter:
    """Sliding-window counter of images; `ipm=None` means unlimited.

    A `window` shorter than 60 s (for short tests) admits `ipm x window / 60` images per window:
    the same rate, with less room for bursts than Novita's minute.
    """

    def __init__(
        self,
        ipm: int | None,
        *,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ipm = ipm
        self.capacity = None if ipm is None else max(1, math.floor(ipm * window / WINDOW_SECONDS))
        self._window = window
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def used(self) -> int:
        with self._lock:
            self._evict(self._clock())
            return sum(n for _, n in self._spent)

    def try_acquire(self, images: int) -> float | None:
        """Spend `images` now, or return the seconds to wait before this would succeed."""
        capacity = self.capacity
        if capacity is None:
            return None
        with self._lock:
            now = self._clock()
            self._evict(now)
            used = sum(n for _, n in self._spent)
            if used + images <= capacity:
                self._spent.append((now, images))
                return None
            if images > capacity:
                return self._window
            freed = 0
            for stamp, count in self._spent:
                freed += count
                if used - freed + images <= capacity:
                    return max(stamp + self._window - now, 0.0)
            return self._window  # unreachable: freeing everything always suffices

    def reset(self) -> None:
        with self._lock:
            self._spent.clear()

    def _evict(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self._window:
            self._spent.popleft()


def retry_after_header(seconds: float) -> str:
    """`Retry-After` in whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
