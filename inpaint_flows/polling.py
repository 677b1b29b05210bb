"""When to poll a task: learnt from what this run sees, not from what the API promises.

Novita's image tasks report `eta` 0 and `progress_percent` 0 while they run, and their
`debug_info` times are "" (see docs/novita-contract.md, "What the real API does"), so a client
that waits for the API to say when to ask again either polls far too often or far too late.
`PollPlanner` learns task durations from the run's own observations instead: for every task it
sees finish, the time from the submit's answer to the first poll that found it done. That is an
upper bound of the task's duration, at most one poll gap late, and the gaps are small near the
expected finish, so the bound is tight.

The schedule of one task, with `E` the median of recent observed durations:

- first poll at `FIRST * E` (a little before most tasks finish, so the estimate can also move
  down when tasks get faster: a task found done at its first poll pulls `E` down); a task
  polled before anything was learnt waits for `FIRST * E` too once `E` is known;
- then every `NEAR * E` until `AFTER * E`, so a task that ends around `E` is fetched within
  `NEAR * E` of its end;
- later (a slow task), a gap of `TAIL` times the time it has run so far, so the delay after a
  task's real end stays under ~10 % of its duration however long it runs;
- every gap at least `min_interval_s` and at most `max_interval_s`.

Before any task of the run has finished, its first `SCOUTS` tasks poll on a coarser tail rule
(0.5, 1, 1.5, 2.0, 2.7, 3.7, 5.0, 6.7 s for a 6 s task: 8 polls) and every other task polls at
2, 3, 4.5, 6.75 s (4 polls), since what the scouts learn serves it. When the API does
give a positive `eta` (whole seconds, rounded up), the next poll waits for it, or less when
the learnt estimate puts the task's end within its last second; when it reports its own
timings, they are learnt as well (they are exact).

Measured in tests/benchmarks/bench_pipeline.py (`--only polling`): see README, Performance.
"""

from __future__ import annotations

import statistics
from collections import deque

# Observed durations the estimate is made from: the last WINDOW finished tasks.
WINDOW = 9
# First poll at this fraction of the estimate; then every NEAR of it until AFTER of it.
FIRST = 0.95
NEAR = 0.06
AFTER = 1.3
# A task found done at its first poll counts as having taken this share of the time observed.
EARLY = 0.8
# Beyond the estimate (or before there is one): wait this fraction of the time run so far.
TAIL = 0.1
# Before the first observation: a few scouts poll on a coarser tail (there is nothing to aim at
# yet); every other task backs off from SCOUTED_FIRST_S, since it learns from the scouts.
SCOUTS = 3
UNKNOWN_TAIL = 0.35
UNKNOWN_MIN_S = 0.5
SCOUTED_FIRST_S = 2.0
SCOUTED_GROWTH = 0.5  # each wait half the time run so far: 2, 3, 4.5, 6.75 s


class PollPlanner:
    """How long to wait before each poll of a task; shared by every job of a run."""

    def __init__(self, min_interval_s: float, max_interval_s: float) -> None:
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self._durations: deque[float] = deque(maxlen=WINDOW)
        self._estimate: float | None = None
        self._scouts = 0

    @property
    def estimate_s(self) -> float | None:
        """The run's current estimate of a task's duration (None: nothing observed yet)."""
        return self._estimate

    def observe(self, seconds: float, *, at_first_poll: bool = False) -> None:
        """A task finished `seconds` after its submit was answered (or took that long by the
        server's own clock).

        `at_first_poll`: it was already done when first polled, so it may have ended well
        before; it is counted as having taken `EARLY` of that, so the estimate keeps moving down
        until first polls find tasks running again.
        """
        if not seconds >= 0:
            return
        if at_first_poll:
            seconds *= EARLY
        self._durations.append(seconds)
        self._estimate = statistics.median(self._durations)

    def enlist(self) -> bool:
        """Whether a new task scouts: polls closely because nothing is known yet."""
        if self._estimate is not None or self._scouts >= SCOUTS:
            return False
        self._scouts += 1
        return True

    def first_wait_s(self, since_submit_s: float, *, scout: bool = True) -> float:
        """Seconds to wait before the first poll of a task submitted `since_submit_s` ago."""
        if self._estimate is None:
            first = UNKNOWN_MIN_S if scout else SCOUTED_FIRST_S
            return max(0.0, first - since_submit_s)
        # Not capped by `max_interval_s`: polling a 60 s task every 10 s until it is nearly done
        # learns nothing (the API says nothing while it runs).
        return max(0.0, FIRST * self._estimate - since_submit_s)

    def next_wait_s(
        self, elapsed_s: float, eta: float | None = None, *, scout: bool = True
    ) -> float:
        """Seconds to wait after a poll that found the task `elapsed_s` after its submit still
        running; `eta` is the API's own estimate, used when it says something (> 0)."""
        if eta is not None and eta > 0:
            # `eta` is whole seconds, rounded up: the task ends within (eta - 1, eta]. When the
            # run's estimate puts the end inside that second, the poll goes there (a 0.9 s task
            # polled at 0.86 s with eta 1 is fetched ~0.25 s later, not a whole second later);
            # otherwise the server knows better (a queue, a slow task): wait the eta.
            expected = None if self._estimate is None else self._estimate - elapsed_s
            if expected is not None and eta - 1 < expected <= eta:
                return self._clamp(expected)
            return self._clamp(float(eta))
        return self._clamp(self._aim(elapsed_s, scout))

    def _aim(self, elapsed_s: float, scout: bool) -> float:
        """The wait the run's own observations call for (unclamped), whatever the API says."""
        estimate = self._estimate
        if estimate is None:
            return max(UNKNOWN_MIN_S, (UNKNOWN_TAIL if scout else SCOUTED_GROWTH) * elapsed_s)
        if elapsed_s < FIRST * estimate:  # learnt since this task's last poll: aim at its end
            return max(NEAR * estimate, FIRST * estimate - elapsed_s)
        if elapsed_s < AFTER * estimate:
            return NEAR * estimate
        return TAIL * elapsed_s

    def _clamp(self, seconds: float) -> float:
        return max(self.min_interval_s, min(self.max_interval_s, seconds))
