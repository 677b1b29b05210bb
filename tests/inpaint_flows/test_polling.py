"""When a task is polled (`PollPlanner`): learnt from this run's own observations."""

from __future__ import annotations

import pytest

from inpaint_flows.polling import (
    AFTER,
    FIRST,
    NEAR,
    SCOUTED_FIRST_S,
    SCOUTS,
    TAIL,
    UNKNOWN_TAIL,
    WINDOW,
    PollPlanner,
)

MIN_S, MAX_S = 0.25, 10.0


def planner() -> PollPlanner:
    return PollPlanner(MIN_S, MAX_S)


def simulate(p: PollPlanner, duration: float) -> tuple[int, float]:
    """Poll one task that takes `duration` s as the planner says: (polls, delay after its end)."""
    t = p.first_wait_s(0.0)
    polls = 1
    while t < duration:
        t += p.next_wait_s(t, eta=0)
        polls += 1
    p.observe(t, at_first_poll=polls == 1)
    return polls, t - duration


def test_before_anything_is_known_a_few_scouts_poll_closely_the_rest_back_off() -> None:
    p = planner()
    assert [p.enlist() for _ in range(SCOUTS + 2)] == [True] * SCOUTS + [False, False]
    assert p.first_wait_s(0.0, scout=False) == SCOUTED_FIRST_S
    assert p.next_wait_s(3.0, eta=0, scout=False) == 1.5  # backing off: 2, 3, 4.5, 6.75 s
    p.observe(6.0)
    assert not p.enlist()  # something is known: nobody needs to scout any more
    assert p.next_wait_s(4.0, eta=0, scout=False) == pytest.approx(FIRST * 6.0 - 4.0)
    fresh = planner()
    assert fresh.first_wait_s(0.0) == 0.5
    assert fresh.next_wait_s(1.0, eta=0) == 0.5
    assert fresh.next_wait_s(8.0, eta=0) == pytest.approx(UNKNOWN_TAIL * 8.0)  # a share of it


def test_an_eta_is_waited_unless_the_estimate_ends_the_task_in_its_last_second() -> None:
    p = planner()
    p.observe(3.0)
    # The estimate says 2 s more, the API 3-4 s more (a queue): the API knows best.
    assert p.next_wait_s(1.0, eta=4) == 4.0
    assert p.next_wait_s(1.0, eta=60) == MAX_S
    assert p.next_wait_s(5.0, eta=2) == 2.0  # past the estimate: a slow task
    assert planner().next_wait_s(1.0, eta=3) == 3.0  # nothing learnt yet
    # The estimate puts the end 1.5 s ahead, inside the eta's last second (1, 2]: aimed at.
    assert p.next_wait_s(1.5, eta=2) == pytest.approx(1.5)


def test_an_eta_rounded_up_to_one_second_does_not_cost_a_second() -> None:
    """A 0.9 s task polled just before its end answers eta 1 (whole seconds, rounded up): the
    next poll aims at its end, as the run's durations say, not a second later."""
    p = planner()
    p.observe(0.9)
    first = p.first_wait_s(0.0)
    assert first < 0.9
    wait = p.next_wait_s(first, eta=1)
    assert wait == MIN_S
    assert first + wait < 1.2


def test_first_poll_aims_just_before_the_usual_duration() -> None:
    p = planner()
    for _ in range(5):
        p.observe(6.0)
    assert p.first_wait_s(0.0) == pytest.approx(FIRST * 6.0)
    assert p.first_wait_s(2.0) == pytest.approx(FIRST * 6.0 - 2.0)
    assert p.first_wait_s(600.0) == 0.0  # a task submitted long ago (a rerun): at once
    assert p.next_wait_s(5.5, eta=0) == pytest.approx(NEAR * 6.0)
    assert p.next_wait_s(AFTER * 6.0 + 1, eta=0) == pytest.approx(TAIL * (AFTER * 6.0 + 1))


@pytest.mark.parametrize("duration", [1.0, 6.0, 30.0])
def test_steady_tasks_take_few_polls_and_are_fetched_soon_after_they_end(duration: float) -> None:
    p = planner()
    results = [simulate(p, duration) for _ in range(60)]
    steady = results[10:]  # after the first few tasks taught the planner
    mean_polls = sum(n for n, _ in steady) / len(steady)
    worst_delay = max(d for _, d in steady)
    assert mean_polls <= 3
    assert worst_delay <= 0.1 * duration + 0.5


def test_follows_tasks_that_get_faster() -> None:
    p = planner()
    for _ in range(WINDOW):
        p.observe(8.0)
    for _ in range(40):
        simulate(p, 2.0)
    assert p.estimate_s is not None and p.estimate_s < 2.5


def test_later_waits_never_exceed_the_longest_poll_interval() -> None:
    p = planner()
    p.observe(600.0)
    assert p.first_wait_s(0.0) == pytest.approx(FIRST * 600.0)  # a long task: first poll late
    assert p.next_wait_s(500.0, eta=0) == MAX_S
