"""When to poll a new task first: learnt from the tasks of this run that have finished.

Polling at once after a submit always finds the task still running and costs a request per job
for nothing: the API only then says how long to wait (`eta`). Worse, `eta` comes in whole seconds
from some servers, so a task that takes 0.9 s is fetched after 1 s and one that takes 1.02 s
after 2 s. When the API reports its own timings (`extra.debug_info.submit_time_ms` and
`complete_time_ms`), this run knows how long its tasks really take, and polls a new task first
when most tasks like it are done: one poll per job when durations are steady, no longer wait
than before when they are not (a job that is not done yet is then polled after its `eta`, as
without this).

The first tasks of a run (and every task when the API gives no timings) are polled at once.
"""

from __future__ import annotations

import statistics
from collections import deque

# Recent tasks the estimate is made from: the last WINDOW finished ones.
WINDOW = 50
# Tasks to see finish before the first poll waits at all.
MIN_SAMPLES = 5
# Added to the estimate: the network's share of the time between submit and result.
MARGIN = 1.02
MARGIN_S = 0.01


class FirstPoll:
    """How long after its submit to poll a task first; shared by every job of a run."""

    def __init__(self, max_wait_s: float) -> None:
        """`max_wait_s`: the longest first wait (the run's longest poll interval)."""
        self.max_wait_s = max_wait_s
        self._durations: deque[float] = deque(maxlen=WINDOW)
        self._wait: float = 0.0

    def observe(self, server_duration_s: float | None) -> None:
        """Learn from a finished task how long the server took (None: it did not say)."""
        if server_duration_s is None:
            return
        self._durations.append(server_duration_s)
        if len(self._durations) < MIN_SAMPLES:
            return
        # The lower quartile: most tasks are done when first polled, and a spread of durations
        # never makes the fast tasks wait for the slow ones.
        lower_quartile = statistics.quantiles(self._durations, n=4, method="inclusive")[0]
        self._wait = min(self.max_wait_s, lower_quartile * MARGIN + MARGIN_S)

    def wait_s(self, since_submit_s: float) -> float:
        """Seconds to wait before the first poll of a task submitted `since_submit_s` ago."""
        return max(0.0, self._wait - since_submit_s)
