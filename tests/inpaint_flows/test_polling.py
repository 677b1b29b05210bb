"""When a new task is polled first (`FirstPoll`), from the durations the server reported."""

from __future__ import annotations

import pytest

from inpaint_flows.polling import MIN_SAMPLES, WINDOW, FirstPoll

MAX_WAIT_S = 10.0


def test_polls_at_once_until_enough_tasks_have_finished() -> None:
    first = FirstPoll(MAX_WAIT_S)
    assert first.wait_s(0.0) == 0.0
    for _ in range(MIN_SAMPLES - 1):
        first.observe(2.0)
    assert first.wait_s(0.0) == 0.0
    first.observe(2.0)
    assert first.wait_s(0.0) == pytest.approx(2.0 * 1.02 + 0.01)


def test_waits_for_the_lower_quartile_so_fast_tasks_do_not_wait_for_slow_ones() -> None:
    first = FirstPoll(MAX_WAIT_S)
    for seconds in [1.0] * 30 + [9.0] * 10:  # a quarter of slow tasks do not move the wait
        first.observe(seconds)
    assert first.wait_s(0.0) == pytest.approx(1.0 * 1.02 + 0.01)


def test_time_already_spent_since_the_submit_counts() -> None:
    first = FirstPoll(MAX_WAIT_S)
    for _ in range(MIN_SAMPLES):
        first.observe(3.0)
    assert first.wait_s(1.0) == pytest.approx(3.07 - 1.0)
    assert first.wait_s(60.0) == 0.0  # a task submitted long ago (a rerun) is polled at once


def test_follows_the_server_when_it_gets_faster() -> None:
    first = FirstPoll(MAX_WAIT_S)
    for _ in range(WINDOW):
        first.observe(5.0)
    for _ in range(WINDOW):
        first.observe(0.5)
    assert first.wait_s(0.0) == pytest.approx(0.5 * 1.02 + 0.01)


def test_never_waits_longer_than_the_longest_poll_interval() -> None:
    first = FirstPoll(MAX_WAIT_S)
    for _ in range(MIN_SAMPLES):
        first.observe(600.0)
    assert first.wait_s(0.0) == MAX_WAIT_S


def test_a_server_that_gives_no_timings_is_polled_at_once() -> None:
    first = FirstPoll(MAX_WAIT_S)
    for _ in range(WINDOW):
        first.observe(None)
    assert first.wait_s(0.0) == 0.0
