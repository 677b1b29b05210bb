"""The images-per-minute limiter, on a fake clock: no wall-clock timing anywhere.

What a user notices: a batch runs at (just under) the account's limit, never over it, and a 429
makes everyone sharing the limiter wait rather than pile more requests onto a full window.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaint_flows.pacing import DECREASE, FLOOR_SHARE, MIN_RATE, RECOVER, RateLimiter


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def limiter(self, ipm: float | None, **kwargs: Any) -> RateLimiter:
        return RateLimiter(ipm, clock=self.clock, sleep=self.sleep, **kwargs)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def test_interval_aims_just_under_the_limit(fake: FakeTime) -> None:
    assert fake.limiter(60, safety=1.0).interval == pytest.approx(1.0)
    assert fake.limiter(10).interval == pytest.approx(60 / 9.8)


def test_reservations_made_at_once_are_evenly_spaced(fake: FakeTime) -> None:
    limiter = fake.limiter(60, safety=1.0)
    assert [limiter.reserve() for _ in range(5)] == pytest.approx([0, 1, 2, 3, 4])


async def test_sequential_acquires_send_one_slot_apart(fake: FakeTime) -> None:
    limiter = fake.limiter(120, safety=1.0)
    sent = []
    for _ in range(4):
        await limiter.acquire()
        sent.append(fake.now)
    assert sent == pytest.approx([0, 0.5, 1.0, 1.5])


def test_a_request_for_n_images_holds_n_slots(fake: FakeTime) -> None:
    limiter = fake.limiter(60, safety=1.0)
    assert limiter.reserve(3) == 0
    assert limiter.reserve(1) == pytest.approx(3)
    assert limiter.reserve(2) == pytest.approx(4)
    assert limiter.reserve(1) == pytest.approx(6)


def test_burst_lets_a_few_start_together_then_spaces_them(fake: FakeTime) -> None:
    limiter = fake.limiter(60, safety=1.0, burst=3)
    assert [limiter.reserve() for _ in range(6)] == pytest.approx([0, 0, 0, 1, 2, 3])


def test_idle_time_does_not_bank_more_than_the_burst(fake: FakeTime) -> None:
    limiter = fake.limiter(60, safety=1.0, burst=2)
    limiter.reserve()
    fake.now = 1000.0
    assert [limiter.reserve() for _ in range(4)] == pytest.approx([0, 0, 1, 2])


def test_penalize_pushes_the_next_slot_back_for_everyone(fake: FakeTime) -> None:
    limiter = fake.limiter(60, safety=1.0, burst=3)
    assert limiter.reserve() == 0
    limiter.penalize(10)
    # No burst right after a 429: the server's window is full.
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([10, 11, 12])


def test_penalize_never_pulls_the_schedule_forward(fake: FakeTime) -> None:
    limiter = fake.limiter(60, safety=1.0)
    for _ in range(20):
        limiter.reserve()
    limiter.penalize(2)
    assert limiter.reserve() == pytest.approx(20)


async def test_no_limit_never_waits(fake: FakeTime) -> None:
    limiter = fake.limiter(None)
    for _ in range(100):
        await limiter.acquire(8)
    limiter.penalize(30)
    await limiter.acquire()
    assert fake.sleeps == [] and limiter.interval is None


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"images_per_minute": 0}, id="zero-ipm"),
        pytest.param({"images_per_minute": -5}, id="negative-ipm"),
        pytest.param({"images_per_minute": float("nan")}, id="nan-ipm"),
        pytest.param({"images_per_minute": 10, "burst": 0}, id="zero-burst"),
        pytest.param({"images_per_minute": 10, "safety": 1.5}, id="safety-above-one"),
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)


def test_zero_images_is_refused(fake: FakeTime) -> None:
    with pytest.raises(ValueError):
        fake.limiter(10).reserve(0)


def simulate(limit: float, requests: list[int], safety: float = 0.98) -> tuple[float, int]:
    """Send `requests` (image counts) as fast as the limiter allows against a server that
    counts images in a sliding 60 s window; returns (achieved images/min, worst window count)."""
    fake = FakeTime()
    limiter = fake.limiter(limit, safety=safety)
    sends: list[tuple[float, int]] = []
    for n in requests:
        fake.now += limiter.reserve(n)
        sends.append((fake.now, n))
    times = [t for t, _ in sends]
    worst = 0
    for i, (start, _) in enumerate(sends):
        end = bisect_right(times, start + 60 - 1e-9)
        worst = max(worst, sum(n for _, n in sends[i:end]))
    images = sum(requests)
    # Rate over the run: each request's images occupy slots up to the next send.
    span = sends[-1][0] + requests[-1] * (limiter.interval or 0)
    return images / span * 60, worst


@pytest.mark.parametrize("limit", [10, 20, 120, 600])
def test_paced_batch_reaches_the_limit_without_exceeding_it(limit: int) -> None:
    achieved, worst = simulate(limit, [1] * 1000)
    assert achieved >= 0.95 * limit
    assert worst <= limit


@given(
    limit=st.sampled_from([8, 10, 20, 60, 120]),
    requests=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=200),
)
def test_multi_image_requests_never_overfill_a_sliding_window(
    limit: int, requests: list[int]
) -> None:
    _, worst = simulate(limit, requests)
    assert worst <= limit


def test_multi_image_requests_wait_for_the_window_not_just_the_spacing(fake: FakeTime) -> None:
    # Spacing alone would send 4-image requests 24.5 s apart: 12 images in the first minute.
    limiter = fake.limiter(10)
    window = 60 / 0.98
    starts = []
    for _ in range(5):
        fake.now += limiter.reserve(4)
        starts.append(fake.now)
    spacing = 4 * 60 / 9.8
    assert starts == pytest.approx([0, spacing, window, window + spacing, 2 * window])


def test_a_request_above_the_limit_goes_alone(fake: FakeTime) -> None:
    limiter = fake.limiter(4, safety=1.0)
    assert limiter.reserve(1) == 0
    assert limiter.reserve(8) == pytest.approx(60)  # once the first image left the window
    assert limiter.reserve(1) == pytest.approx(180)  # its 8 slots of 15 s are spent


def test_repr_shows_the_settings() -> None:
    assert (
        repr(RateLimiter(30, burst=2)) == "RateLimiter(images_per_minute=30, burst=2, safety=0.98)"
    )


def test_a_429_without_retry_after_slows_the_whole_run_then_it_recovers(fake: FakeTime) -> None:
    limiter = RateLimiter(60, clock=fake.clock, sleep=fake.sleep)
    before = limiter.interval
    assert before is not None
    wait = limiter.rate_limited(None)
    assert limiter.rate == pytest.approx(60 * DECREASE)
    assert wait == pytest.approx(60 / (60 * DECREASE * limiter.safety))
    # Everyone waits at least one slot of the new, slower pace.
    assert limiter.reserve() == pytest.approx(wait)
    after = limiter.interval
    assert after is not None and after > before
    for _ in range(100):
        limiter.accepted()
    assert limiter.rate == 60  # back at the configured limit, never above it


def test_each_accepted_submit_gives_back_a_share_of_the_limit(fake: FakeTime) -> None:
    limiter = RateLimiter(100, clock=fake.clock, sleep=fake.sleep)
    limiter.rate_limited(None)
    lowered = limiter.rate
    assert lowered is not None
    limiter.accepted()
    assert limiter.rate == pytest.approx(lowered + RECOVER * 100)


def test_a_429_with_retry_after_waits_that_long_without_slowing_down(fake: FakeTime) -> None:
    limiter = RateLimiter(60, clock=fake.clock, sleep=fake.sleep)
    assert limiter.rate_limited(7.0) == 7.0
    assert limiter.rate == 60
    assert limiter.reserve() == pytest.approx(7.0)


def test_an_unpaced_run_has_no_window_to_back_off_to(fake: FakeTime) -> None:
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    assert limiter.rate_limited(None) is None  # the request backs off on its own
    assert limiter.reserve() == 0.0
    assert limiter.rate_limited(3.0) == 3.0  # the request itself waits out a Retry-After


def test_429s_of_submits_already_out_slow_the_pace_only_once(fake: FakeTime) -> None:
    limiter = RateLimiter(60, clock=fake.clock, sleep=fake.sleep)
    for _ in range(5):  # five answers to submits sent at the old pace, at once
        limiter.rate_limited(None)
    assert limiter.rate == pytest.approx(60 * DECREASE)
    fake.now += 10.0  # a slot of the new pace later, a new 429 is news
    limiter.rate_limited(None)
    assert limiter.rate == pytest.approx(60 * DECREASE * DECREASE)


def test_the_pace_never_drops_below_the_floor(fake: FakeTime) -> None:
    limiter = RateLimiter(100, clock=fake.clock, sleep=fake.sleep)
    for _ in range(20):
        limiter.rate_limited(None)
        fake.now += 120.0
    assert limiter.rate == max(MIN_RATE, FLOOR_SHARE * 100)


def test_a_new_share_of_the_account_keeps_a_429_slow_down_in_proportion(fake: FakeTime) -> None:
    limiter = RateLimiter(60, clock=fake.clock, sleep=fake.sleep)
    limiter.rate_limited(None)
    assert limiter.rate == pytest.approx(60 * DECREASE)
    limiter.set_limit(30)  # a second run joined: half the account's limit each
    assert (limiter.images_per_minute, limiter.rate) == (30, pytest.approx(30 * DECREASE))
    unpaced = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    unpaced.set_limit(12)
    assert (unpaced.rate, unpaced.interval) == (12, pytest.approx(60 / (12 * 0.98)))
    with pytest.raises(ValueError):
        limiter.set_limit(0)
