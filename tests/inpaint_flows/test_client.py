"""The Novita client against a mock transport: the edge cases a real server will not produce on cue.

The main paths run against the local server in the integration tests; here each test pins one
promise a user relies on: what is retried, what is never retried (it costs money or fails again),
how odd but valid answers are read, and that the API key never leaks.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import inpaint_flows.client as client_module
from inpaint_flows.api_errors import parse_retry_after
from inpaint_flows.client import (
    NovitaClient,
    RetryPolicy,
    SubmitResponse,
    classify,
)
from inpaint_flows.errors import (
    AuthError,
    ConfigError,
    DownloadError,
    NovitaAPIError,
    NovitaError,
    RateLimitedError,
    ServerError,
    SubmitOutcomeUnknown,
    TaskNotFoundError,
    TransportError,
)
from inpaint_flows.models import InpaintParams
from inpaint_flows.pacing import RateLimiter

BASE = "https://api.example.test"
FAKE_KEY = "sk-FAKEKEY-do-not-leak-0123456789"
TASK_ID = "0b7c3a8e-5f1d-4c2b-9a77-1234567890ab"
NO_JITTER = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=30.0, jitter=False)

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own key must never reach a test."""
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff sleeps the client asked for, without waiting."""
    recorded: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(client_module, "_sleep", fake_sleep)
    return recorded


class Server:
    """A scripted mock server: answers (or raises) in order, and keeps every request."""

    def __init__(self, *script: httpx.Response | Exception | Handler) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):  # a fresh copy: a response is read only once
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)
        return step(request)

    def client(
        self,
        api_key: str | None = FAKE_KEY,
        retry: RetryPolicy = NO_JITTER,
        limiter: RateLimiter | None = None,
    ) -> NovitaClient:
        return NovitaClient(
            api_key, BASE, transport=httpx.MockTransport(self), retry=retry, limiter=limiter
        )


def error(status: int, reason: str, message: str = "nope", **headers: str) -> httpx.Response:
    body = {"code": status, "reason": reason, "message": message, "metadata": {}}
    return httpx.Response(status, json=body, headers=headers)


def created(task_id: str = TASK_ID) -> httpx.Response:
    return httpx.Response(200, json={"task_id": task_id})


def task_result(**task: Any) -> httpx.Response:
    body = {
        "task": {"task_id": TASK_ID, "status": "TASK_STATUS_PROCESSING", **task},
        "images": [],
        "videos": [],
        "audios": [],
        "extra": {"seed": "42"},
    }
    return httpx.Response(200, json=body)


async def submit(server: Server, **kwargs: Any) -> SubmitResponse:
    async with server.client(**kwargs) as client:
        return await client.submit("aW1hZ2U=", "bWFzaw==", InpaintParams())


def exc_for(kind: type[httpx.TransportError]) -> httpx.TransportError:
    request = httpx.Request("POST", f"{BASE}/v3/async/inpainting")
    return kind("boom", request=request)


# ---- submit --------------------------------------------------------------------------------


async def test_submit_sends_the_contract_body_with_bearer_auth(sleeps: list[float]) -> None:
    server = Server(created())
    params = InpaintParams(prompt="a red door", image_num=2, response_image_type="webp")
    async with server.client() as client:
        response = await client.submit("aW1n", "bWFzaw==", params)

    assert response == SubmitResponse(task_id=TASK_ID, attempts=1)
    (request,) = server.requests
    assert request.method == "POST"
    assert request.url == f"{BASE}/v3/async/inpainting"
    assert request.headers["Authorization"] == f"Bearer {FAKE_KEY}"
    body = json.loads(request.content)
    assert body["extra"] == {"response_image_type": "webp"}
    assert body["request"]["prompt"] == "a red door"
    assert body["request"]["image_num"] == 2
    assert body["request"]["image_base64"] == "aW1n"
    assert body["request"]["mask_image_base64"] == "bWFzaw=="
    assert "response_image_type" not in body["request"]
    assert client.stats.submits == 1 and client.stats.attempts == 1


async def test_submit_reads_the_deprecated_v2_envelope() -> None:
    server = Server(httpx.Response(200, json={"code": 0, "msg": "", "data": {"task_id": "v2-id"}}))
    assert (await submit(server)).task_id == "v2-id"


async def test_no_api_key_sends_no_authorization_header() -> None:
    server = Server(created())
    await submit(server, api_key=None)
    assert "Authorization" not in server.requests[0].headers


async def test_submit_without_task_id_in_a_200_is_an_unknown_outcome() -> None:
    server = Server(httpx.Response(200, text="<html>OK</html>"))
    with pytest.raises(SubmitOutcomeUnknown, match="paid task may exist"):
        await submit(server)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ReadTimeout, id="read-timeout"),
        pytest.param(httpx.WriteTimeout, id="write-timeout"),
        pytest.param(httpx.ReadError, id="read-error"),
        pytest.param(httpx.WriteError, id="write-error"),
        pytest.param(httpx.RemoteProtocolError, id="dropped-after-send"),
    ],
)
async def test_submit_that_may_have_arrived_is_never_resent(
    failure: type[httpx.TransportError], sleeps: list[float]
) -> None:
    server = Server(exc_for(failure), created())
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await submit(server)
    assert len(server.requests) == 1
    assert sleeps == []
    message = str(caught.value)
    assert "paid task may exist" in message
    assert "submit it again" in message
    assert failure.__name__ in message


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ConnectError, id="connect-error"),
        pytest.param(httpx.ConnectTimeout, id="connect-timeout"),
        pytest.param(httpx.PoolTimeout, id="pool-timeout"),
    ],
)
async def test_submit_that_never_left_is_retried(
    failure: type[httpx.TransportError], sleeps: list[float]
) -> None:
    server = Server(exc_for(failure), created())
    response = await submit(server)
    assert response.attempts == 2
    assert len(server.requests) == 2
    assert sleeps == [1.0]


async def test_submit_gateway_timeout_without_novita_body_is_an_unknown_outcome() -> None:
    server = Server(httpx.Response(504, text="<html>Gateway Time-out</html>"), created())
    with pytest.raises(SubmitOutcomeUnknown, match="Gateway Time-out"):
        await submit(server)
    assert len(server.requests) == 1


async def test_submit_server_error_with_novita_body_is_retried(sleeps: list[float]) -> None:
    server = Server(error(500, "CREATE_TASK_FAILED"), created())
    response = await submit(server)
    assert response.attempts == 2
    assert sleeps == [1.0]


# ---- what is retried, and how patiently ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        pytest.param(400, "INVALID_REQUEST_BODY", NovitaAPIError, id="400-invalid-body"),
        pytest.param(400, "BILLING_BALANCE_NOT_ENOUGH", NovitaAPIError, id="400-no-balance"),
        pytest.param(400, "MISSING_API_KEY", AuthError, id="400-missing-key"),
        pytest.param(403, "INVALID_API_KEY", AuthError, id="403-invalid-key"),
        pytest.param(403, "FEATURE_NOT_ALLOWED", AuthError, id="403-not-allowed"),
        pytest.param(404, "API_NOT_FOUND", NovitaAPIError, id="404-api"),
    ],
)
async def test_client_errors_are_never_retried(
    status: int, reason: str, expected: type[NovitaAPIError], sleeps: list[float]
) -> None:
    server = Server(error(status, reason, "refused"), created())
    with pytest.raises(expected) as caught:
        await submit(server)
    assert len(server.requests) == 1
    assert sleeps == []
    assert caught.value.status_code == status
    assert caught.value.reason == reason
    assert "refused" in str(caught.value)
    assert not caught.value.retryable


async def test_task_not_found_is_typed_and_not_retried(sleeps: list[float]) -> None:
    server = Server(error(404, "TASK_NOT_FOUND"), task_result())
    async with server.client() as client:
        with pytest.raises(TaskNotFoundError, match=TASK_ID):
            await client.get_task_result(TASK_ID)
    assert len(server.requests) == 1


async def test_retry_after_seconds_is_honoured(sleeps: list[float]) -> None:
    server = Server(error(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "7"}), created())
    async with server.client() as client:
        response = await client.submit("aW1n", "bWFzaw==", InpaintParams())
    assert response.attempts == 2
    assert sleeps == [7.0]
    assert client.stats.rate_limited == 1
    assert client.stats.attempts == 2 and client.stats.submits == 1


async def test_retry_after_http_date_is_honoured(sleeps: list[float]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    server = Server(error(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": when}), created())
    await submit(server)
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 20


async def test_retry_after_is_capped_by_max_delay(sleeps: list[float]) -> None:
    server = Server(error(503, "", **{"Retry-After": "3600"}), task_result())
    async with server.client(retry=RetryPolicy(max_delay=5.0, jitter=False)) as client:
        await client.get_task_result(TASK_ID)
    assert sleeps == [5.0]


async def test_server_error_then_success_on_a_get(sleeps: list[float]) -> None:
    server = Server(error(500, "GET_RESULT_FAILED"), task_result())
    async with server.client() as client:
        result = await client.get_task_result(TASK_ID)
    assert result.status == "TASK_STATUS_PROCESSING"
    assert len(server.requests) == 2
    assert client.stats.polls == 1


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ReadTimeout, id="read-timeout"),
        pytest.param(httpx.RemoteProtocolError, id="dropped"),
        pytest.param(httpx.ConnectError, id="connect-error"),
    ],
)
async def test_gets_retry_every_transport_error(
    failure: type[httpx.TransportError], sleeps: list[float]
) -> None:
    server = Server(exc_for(failure), task_result())
    async with server.client() as client:
        await client.get_task_result(TASK_ID)
    assert len(server.requests) == 2


async def test_gateway_error_on_a_get_is_retried(sleeps: list[float]) -> None:
    server = Server(httpx.Response(502, text="Bad Gateway"), task_result())
    async with server.client() as client:
        await client.get_task_result(TASK_ID)
    assert len(server.requests) == 2


async def test_backoff_grows_and_gives_up_after_max_attempts(sleeps: list[float]) -> None:
    server = Server(error(500, "GET_RESULT_FAILED", "the database is down"))
    async with server.client() as client:
        with pytest.raises(ServerError) as caught:
            await client.get_task_result(TASK_ID)
    assert len(server.requests) == NO_JITTER.max_attempts
    assert sleeps == [1.0, 2.0, 4.0]
    assert "the database is down" in str(caught.value)
    assert "gave up after 4 attempts" in str(caught.value)
    assert caught.value.reason == "GET_RESULT_FAILED"


async def test_transport_errors_exhausted_are_typed(sleeps: list[float]) -> None:
    server = Server(exc_for(httpx.ConnectError))
    async with server.client() as client:
        with pytest.raises(TransportError, match="ConnectError"):
            await client.get_task_result(TASK_ID)


async def test_non_json_error_body_still_gives_a_typed_useful_error() -> None:
    server = Server(httpx.Response(400, text="<html><h1>400 Bad Request</h1>\n</html>"))
    with pytest.raises(NovitaAPIError) as caught:
        await submit(server)
    assert caught.value.status_code == 400
    assert caught.value.reason == "HTTP_400"
    assert "400 Bad Request" in str(caught.value)
    assert "inpainting" in str(caught.value)


async def test_rate_limited_error_carries_retry_after(sleeps: list[float]) -> None:
    server = Server(error(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "2"}))
    with pytest.raises(RateLimitedError) as caught:
        await submit(server, retry=RetryPolicy(max_attempts=1))
    assert caught.value.retry_after == 2.0
    assert caught.value.reason == "RATE_LIMIT_EXCEEDED"


class RecordingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[tuple[str, float]] = []

    async def acquire(self, n: int = 1) -> None:
        self.calls.append(("acquire", n))

    def penalize(self, seconds: float) -> None:
        self.calls.append(("penalize", seconds))


async def test_submit_paces_every_attempt_and_reports_429s_to_the_limiter(
    sleeps: list[float],
) -> None:
    limiter = RecordingLimiter()
    server = Server(
        error(429, "RATE_LIMIT_EXCEEDED", **{"Retry-After": "4"}), created(), task_result()
    )
    async with server.client(limiter=limiter) as client:
        await client.submit("aW1n", "bWFzaw==", InpaintParams(image_num=3))
        await client.get_task_result(TASK_ID)
    assert limiter.calls == [("acquire", 3), ("penalize", 4.0), ("acquire", 3)]


# ---- the retry rule and its parts ----------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "submit", "retryable"),
    [
        pytest.param(exc_for(httpx.ConnectError), True, True, id="submit-connect"),
        pytest.param(exc_for(httpx.ConnectTimeout), True, True, id="submit-connect-timeout"),
        pytest.param(exc_for(httpx.PoolTimeout), True, True, id="submit-pool-timeout"),
        pytest.param(exc_for(httpx.ReadTimeout), True, False, id="submit-read-timeout"),
        pytest.param(exc_for(httpx.WriteTimeout), True, False, id="submit-write-timeout"),
        pytest.param(exc_for(httpx.ReadError), True, False, id="submit-read-error"),
        pytest.param(exc_for(httpx.RemoteProtocolError), True, False, id="submit-dropped"),
        pytest.param(exc_for(httpx.ReadTimeout), False, True, id="get-read-timeout"),
        pytest.param(exc_for(httpx.RemoteProtocolError), False, True, id="get-dropped"),
        pytest.param(exc_for(httpx.UnsupportedProtocol), False, False, id="bad-url"),
        pytest.param(RateLimitedError("x"), False, True, id="429"),
        pytest.param(ServerError("x", status_code=500), False, True, id="5xx"),
        pytest.param(NovitaAPIError("x", status_code=400), False, False, id="400"),
        pytest.param(AuthError("x", status_code=403), False, False, id="403"),
        pytest.param(TaskNotFoundError("x", status_code=404), False, False, id="404"),
        pytest.param(SubmitOutcomeUnknown("x"), True, False, id="unknown-outcome"),
        pytest.param(TransportError("x"), False, True, id="transport"),
        pytest.param(DownloadError("x", retryable=False), False, False, id="download-expired"),
        pytest.param(ValueError("x"), False, False, id="foreign"),
    ],
)
def test_classify(exc: BaseException, submit: bool, retryable: bool) -> None:
    assert classify(exc, submit=submit) is retryable


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=10.0, jitter=True)
    assert policy.delay(1, rand=lambda: 1.0) == 0.5
    assert policy.delay(3, rand=lambda: 1.0) == 2.0
    assert policy.delay(10, rand=lambda: 1.0) == 10.0
    assert policy.delay(3, rand=lambda: 0.25) == 0.5
    assert policy.delay(10_000, rand=lambda: 1.0) == 10.0
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=99.0) == 10.0


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0, max_value=60),
    cap=st.floats(min_value=0, max_value=600),
)
def test_backoff_never_exceeds_max_delay(attempt: int, base: float, cap: float) -> None:
    delay = RetryPolicy(base_delay=base, max_delay=cap).delay(attempt)
    assert 0 <= delay <= cap


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("5", 5.0, id="seconds"),
        pytest.param(" 1.5 ", 1.5, id="fraction"),
        pytest.param("Wed, 01 Jan 2031 00:00:30 GMT", 30.0, id="http-date"),
        pytest.param("Wed, 01 Jan 2031 00:00:00 GMT", 0.0, id="now"),
        pytest.param("Tue, 31 Dec 2030 23:00:00 GMT", 0.0, id="past-date"),
        pytest.param("-3", None, id="negative"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2031, 1, 1, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# ---- tolerant task-result parsing ----------------------------------------------------------


async def test_task_result_tolerates_string_ttl_and_odd_parts() -> None:
    body = {
        "task": {
            "task_id": TASK_ID,
            "task_type": "INPAINTING",
            "status": "TASK_STATUS_SUCCEED",
            "reason": "",
            "eta": "0",
            "progress_percent": 100,
        },
        "images": [
            {
                "image_url": "https://bucket.example.test/a.png?sig=1",
                "image_url_ttl": "3600",
                "image_type": "png",
                "nsfw_detection_result": {},
            },
            {"image_url": "https://bucket.example.test/b.png", "image_url_ttl": 3600},
            {"image_url": "", "image_url_ttl": "soon"},
        ],
        "videos": [],
        "audios": [],
        "extra": {"seed": "123456", "debug_info": {"submit_time_ms": ""}},
    }
    async with Server(httpx.Response(200, json=body)).client() as client:
        result = await client.get_task_result(TASK_ID)
    assert result.done and result.status == "TASK_STATUS_SUCCEED"
    assert [image.image_url_ttl for image in result.images] == [3600, 3600]
    assert result.images[0].image_type == "png"
    assert result.seed == "123456"
    assert result.eta == 0.0 and result.progress_percent == 100.0


@pytest.mark.parametrize(
    ("debug", "seconds"),
    [
        pytest.param(
            {"submit_time_ms": "1700000000000", "complete_time_ms": "1700000001250"},
            1.25,
            id="strings of epoch ms",
        ),
        pytest.param(
            {"submit_time_ms": 1700000000000, "complete_time_ms": 1700000000400}, 0.4, id="numbers"
        ),
        pytest.param({"submit_time_ms": "", "complete_time_ms": ""}, None, id="empty strings"),
        pytest.param({"submit_time_ms": "1700000000000"}, None, id="not complete yet"),
        pytest.param(
            {"submit_time_ms": "1700000001000", "complete_time_ms": "1700000000000"},
            None,
            id="completed before submitted",
        ),
        pytest.param({"submit_time_ms": "0", "complete_time_ms": "5"}, None, id="zero clock"),
        pytest.param("odd", None, id="not an object"),
    ],
)
async def test_task_result_reads_the_servers_own_duration(
    debug: object, seconds: float | None
) -> None:
    body = {
        "task": {"task_id": TASK_ID, "status": "TASK_STATUS_SUCCEED"},
        "extra": {"seed": "1", "debug_info": debug},
    }
    async with Server(httpx.Response(200, json=body)).client() as client:
        result = await client.get_task_result(TASK_ID)
    assert result.server_duration_s == (pytest.approx(seconds) if seconds is not None else None)


async def test_task_result_without_extra_or_images() -> None:
    body = {"task": {"task_id": TASK_ID, "status": "TASK_STATUS_QUEUED", "eta": None}}
    async with Server(httpx.Response(200, json=body)).client() as client:
        result = await client.get_task_result(TASK_ID)
    assert result.status == "TASK_STATUS_QUEUED"
    assert result.images == () and result.seed is None and result.eta is None


async def test_failed_task_carries_its_reason() -> None:
    server = Server(task_result(status="TASK_STATUS_FAILED", reason="ILLEGAL_IMAGE_CONTENT"))
    async with server.client() as client:
        result = await client.get_task_result(TASK_ID)
    assert result.done and result.reason == "ILLEGAL_IMAGE_CONTENT"


async def test_unknown_task_status_is_a_clear_error_not_a_crash() -> None:
    server = Server(task_result(status="TASK_STATUS_CANCELLED"))
    async with server.client() as client:
        with pytest.raises(NovitaError) as caught:
            await client.get_task_result(TASK_ID)
    assert caught.value.reason == "UNKNOWN_TASK_STATUS"
    assert "TASK_STATUS_CANCELLED" in str(caught.value) and TASK_ID in str(caught.value)


async def test_task_result_that_is_not_json_is_a_typed_error() -> None:
    async with Server(httpx.Response(200, text="upstream hiccup")).client() as client:
        with pytest.raises(NovitaError, match="upstream hiccup") as caught:
            await client.get_task_result(TASK_ID)
    assert caught.value.reason == "INVALID_RESPONSE"


# ---- downloads -----------------------------------------------------------------------------


async def test_download_sends_no_api_key_even_to_the_api_host() -> None:
    png = b"\x89PNG\r\n\x1a\n rest"
    server = Server(httpx.Response(200, content=png))
    async with server.client() as client:
        first = await client.download("https://bucket.example.test/x.png?X-Amz-Signature=abc")
        second = await client.download(f"{BASE}/results/x.png")
    assert first == png and second == png
    assert all("Authorization" not in request.headers for request in server.requests)
    assert client.stats.downloads == 2


@pytest.mark.parametrize("status", [403, 404])
async def test_expired_result_url_is_not_retried(status: int, sleeps: list[float]) -> None:
    body = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
    server = Server(httpx.Response(status, text=body))
    async with server.client() as client:
        with pytest.raises(DownloadError) as caught:
            await client.download("https://bucket.example.test/x.png?X-Amz-Signature=secret")
    assert len(server.requests) == 1
    assert caught.value.reason == "RESULT_URL_EXPIRED"
    assert not caught.value.retryable
    assert "X-Amz-Signature" not in str(caught.value)  # a signed URL is a credential too


async def test_empty_download_is_retried_then_refused(sleeps: list[float]) -> None:
    server = Server(httpx.Response(200, content=b""))
    async with server.client() as client:
        with pytest.raises(DownloadError) as caught:
            await client.download("https://bucket.example.test/x.png")
    assert len(server.requests) == NO_JITTER.max_attempts
    assert caught.value.reason == "EMPTY_RESULT_IMAGE"


async def test_download_retries_server_and_transport_errors(sleeps: list[float]) -> None:
    server = Server(
        httpx.Response(503), exc_for(httpx.ReadError), httpx.Response(200, content=b"img")
    )
    async with server.client() as client:
        assert await client.download("https://bucket.example.test/x.png") == b"img"
    assert len(server.requests) == 3


# ---- listing models ------------------------------------------------------------------------


async def test_list_models_follows_the_cursor() -> None:
    pages = {
        None: {"models": [{"sd_name": "a"}, {"sd_name": "b"}], "pagination": {"next_cursor": "c1"}},
        "c1": {"models": [{"sd_name": "c"}], "pagination": {"next_cursor": ""}},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("pagination.cursor")])

    server = Server(handler)
    async with server.client() as client:
        models = await client.list_models(types="checkpoint", is_inpainting=True)
    assert [m["sd_name"] for m in models] == ["a", "b", "c"]
    first = server.requests[0].url.params
    assert first["filter.types"] == "checkpoint"
    assert first["filter.is_inpainting"] == "true"
    assert server.requests[1].url.params["pagination.cursor"] == "c1"


async def test_list_models_stops_on_a_repeated_cursor() -> None:
    page = {"models": [{"sd_name": "a"}], "pagination": {"next_cursor": "same"}}
    server = Server(httpx.Response(200, json=page))
    async with server.client() as client:
        models = await client.list_models()
    assert len(models) == 2 and len(server.requests) == 2


# ---- the key never leaks -------------------------------------------------------------------


def echo_auth(status: int) -> Handler:
    """A hostile or buggy server that quotes the request's headers back in its error."""

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = f"bad header {request.headers.get('Authorization')}"
        return httpx.Response(status, json={"code": status, "reason": "X", "message": echoed})

    return handler


@pytest.mark.parametrize(
    "step",
    [
        pytest.param(echo_auth(403), id="403-echoing-the-header"),
        pytest.param(echo_auth(500), id="500-echoing-the-header"),
        pytest.param(exc_for(httpx.ReadTimeout), id="read-timeout"),
        pytest.param(exc_for(httpx.ConnectError), id="connect-error"),
        pytest.param(httpx.Response(429, text=f"slow down {FAKE_KEY}"), id="429-text"),
        pytest.param(httpx.Response(504, text=f"Bearer {FAKE_KEY}"), id="504-text"),
        pytest.param(
            httpx.LocalProtocolError(f"Illegal header value b'Bearer {FAKE_KEY}'"),
            id="local-protocol-error-quoting-the-header",
        ),
    ],
)
async def test_api_key_never_appears_in_errors_or_logs(
    step: httpx.Response | Exception | Handler,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = Server(step)
    async with server.client(retry=RetryPolicy(max_attempts=2, jitter=False)) as client:
        assert FAKE_KEY not in repr(client) and FAKE_KEY not in str(vars(client))
        with pytest.raises(NovitaError) as caught:
            await client.submit("aW1n", "bWFzaw==", InpaintParams())
    assert server.requests[0].headers["Authorization"] == f"Bearer {FAKE_KEY}"
    exc = caught.value
    # httpx exceptions hold the request, headers and all: they must not ride along.
    assert exc.__cause__ is None and exc.__context__ is None
    for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc)), caplog.text):
        assert FAKE_KEY not in text


def test_bad_key_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as caught:
        NovitaClient(f"{FAKE_KEY}\nX-Evil: 1")
    assert FAKE_KEY not in str(caught.value)


@pytest.mark.parametrize("base_url", ["api.novita.ai", "ftp://api.novita.ai", ""])
def test_bad_base_url_is_a_config_error(base_url: str) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        NovitaClient(None, base_url)


async def test_key_is_only_sent_under_the_base_url_path() -> None:
    server = Server(created())
    client = NovitaClient(
        FAKE_KEY,
        f"{BASE}/novita/",
        transport=httpx.MockTransport(server),
        retry=NO_JITTER,
    )
    async with client:
        await client.submit("aW1n", "bWFzaw==", InpaintParams())
        await client.download(f"{BASE}/elsewhere/x.png")
    submit_request, download_request = server.requests
    assert submit_request.url == f"{BASE}/novita/v3/async/inpainting"
    assert submit_request.headers["Authorization"] == f"Bearer {FAKE_KEY}"
    assert "Authorization" not in download_request.headers
