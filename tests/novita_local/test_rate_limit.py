"""Images per minute: 429 RATE_LIMIT_EXCEEDED past the limit (`helpful`: with a Retry-After)."""

from __future__ import annotations

import pytest

from novita_local.ratelimit import RateLimiter, retry_after_header
from tests.novita_local.helpers import StartServer, assert_error, http, submit, valid_body


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_counts_images_and_slides() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    assert limiter.try_acquire(4) is None
    clock.now += 20
    assert limiter.try_acquire(6) is None
    clock.now += 10
    assert limiter.try_acquire(1) == pytest.approx(30.0)  # the first 4 leave at t+60
    clock.now += 30
    assert limiter.try_acquire(4) is None  # they have left
    assert limiter.try_acquire(1) == pytest.approx(20.0)
    assert limiter.used() == 10


def test_request_larger_than_the_limit_waits_a_full_window() -> None:
    assert RateLimiter(3, clock=FakeClock()).try_acquire(4) == 60.0


def test_a_short_window_keeps_the_rate_with_less_room_for_bursts() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, window=5.0, clock=clock)  # 60/min = 5 images per 5 s
    assert all(limiter.try_acquire(1) is None for _ in range(5))
    assert limiter.try_acquire(1) == pytest.approx(5.0)
    clock.now += 5.0
    assert limiter.try_acquire(1) is None


def test_no_limit() -> None:
    limiter = RateLimiter(None)
    assert all(limiter.try_acquire(8) is None for _ in range(100))


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (29.1, "30")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


def test_server_answers_429_at_ipm(start_server: StartServer) -> None:
    server = start_server(ipm=3, profile="helpful")
    with http(server) as client:
        submit(client, valid_body(image_num=2))
        refused = client.post("/v3/async/inpainting", json=valid_body(image_num=2))
        error = assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
        assert "3 images per minute" in error["message"]
        assert 55 <= int(refused.headers["Retry-After"]) <= 60
        submit(client, valid_body(image_num=1))  # exactly fills the window
        assert_error(
            client.post("/v3/async/inpainting", json=valid_body()), 429, "RATE_LIMIT_EXCEEDED"
        )
        # an invalid request is refused for what it is and spends nothing
        assert_error(
            client.post("/v3/async/inpainting", json=valid_body(steps=0)),
            400,
            "INVALID_REQUEST_BODY",
        )
        # polling is not limited
        assert client.get("/v3/model").status_code == 200
    stats = server.stats()
    assert stats["rate_limited"]["ipm"] == 2
    assert stats["submissions"]["accepted"] == 2
    assert stats["submissions"]["rejected"]["RATE_LIMIT_EXCEEDED"] == 2
