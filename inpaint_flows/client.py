"""The one HTTP client for Novita's async inpainting API (and the local server that mimics it).

All HTTP of the project goes through `NovitaClient`: submit a task, read its result, download a
result image, list models. Retries are declared once, in `RetryPolicy`, and which failures may be
retried is decided in one place, `classify`:

    ===================================  ==========================  ==========================
    failure                              submit (POST, paid)         GETs and downloads
    ===================================  ==========================  ==========================
    429                                  wait for the pacer, retry   retry after backoff
                                         (not an attempt)            (not an attempt)
    5xx with a Novita error body         retry                       retry
    502 / 504 without a Novita body      SubmitOutcomeUnknown        retry
    400 / 401 / 403 / 404 / other 4xx    never                       never (download 403/404/
                                                                     410: RESULT_URL_EXPIRED)
    connect error / connect timeout /    retry (the request never    retry
    pool timeout / proxy error           left)
    read / write timeout, read / write   SubmitOutcomeUnknown        retry
    error, connection dropped            (never retried)
    unusable URL, local protocol error,  never                       never
    too many redirects
    2xx without a task id / empty image  SubmitOutcomeUnknown        retry (download)
    ===================================  ==========================  ==========================

A 429 never uses up a request's attempts: it means "not now", so the request waits (a submit
for the run's pacer, which slows the whole run down, `pacing.RateLimiter.rate_limited`) and is
sent again, for at most `RetryPolicy.rate_limit_patience_s` in all. Answers that concern the
account (refused key, no balance, unknown model) and a streak of connection failures stop the
batch's new submits through the run's `BatchHalt` (`inpaint_flows.halt`).

A submit costs money, so once its bytes may have reached the server, a lost answer is not
retried: a second POST could create a second paid task. The caller gets `SubmitOutcomeUnknown`
and decides (the pipeline's ledger records it).

The API key is held in a `SecretStr`, attached per request by an auth object that only adds it to
URLs under the API base URL (never to signed result URLs), and scrubbed from every message this
module builds. httpx exceptions are translated, not chained: their `.request` carries the headers.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import logging
import math
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, cast

import httpx
from pydantic import SecretStr

from inpaint_flows.contract import MODEL_NOT_FOUND, REPORTED_TASK_STATUSES, TaskStatus
from inpaint_flows.errors import (
    AuthError,
    ConfigError,
    DownloadError,
    InpaintFlowsError,
    NovitaAPIError,
    NovitaError,
    RateLimitedError,
    ServerError,
    SubmitOutcomeUnknown,
    TaskNotFoundError,
    TransportError,
)
from inpaint_flows.halt import RATE_LIMITED_TOO_LONG, UNREACHABLE, BatchHalt
from inpaint_flows.models import InpaintParams, ResultImage, TaskResult
from inpaint_flows.pacing import RateLimiter

__all__ = [
    "ClientStats",
    "NovitaClient",
    "RetryPolicy",
    "SubmitResponse",
    "classify",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.novita.ai"
SUBMIT_PATH = "/v3/async/inpainting"
TASK_RESULT_PATH = "/v3/async/task-result"
MODELS_PATH = "/v3/model"

_TASK_STATUSES: frozenset[str] = frozenset(REPORTED_TASK_STATUSES)
_AUTH_REASONS = frozenset(("MISSING_API_KEY", "INVALID_API_KEY", "BILLING_AUTH_FAILED"))
# Failures raised before any byte of the request reached the server: safe to resend a POST.
_NEVER_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
# Failures that will happen again however often the request is sent.
_UNSENDABLE: tuple[type[Exception], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.InvalidURL,
    httpx.TooManyRedirects,
)
_EXPIRED_STATUSES = frozenset((403, 404, 410))


async def _sleep(seconds: float) -> None:
    """Backoff sleep; a module function so tests can replace it."""
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is retried; used for every request.

    Exponential backoff with full jitter: before retry k (k = 1 after the first failure) wait a
    uniform random time in [0, min(max_delay, base_delay * 2**(k-1))], or exactly that ceiling
    when `jitter` is False. A `Retry-After` from the server replaces the backoff, capped at
    `max_delay`.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: bool = True
    # How long (in seconds of waiting) one request may keep meeting 429s before the batch
    # gives up: 429s do not use up `max_attempts`, so this bounds them.
    rate_limit_patience_s: float = 900.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must not be negative")

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 64))
        return rand() * ceiling if self.jitter else ceiling


@dataclass
class ClientStats:
    """Counters for benchmarks and tests; one client's lifetime."""

    submits: int = 0  # submits that returned a task id (each created a paid task)
    attempts: int = 0  # HTTP attempts on the submit endpoint, retries included
    rate_limited: int = 0  # 429 answers, any endpoint
    polls: int = 0  # get_task_result calls
    downloads: int = 0  # result images fetched successfully
    requests: int = 0  # HTTP attempts of every kind


@dataclass(frozen=True)
class SubmitResponse:
    """A created task: its id and how many HTTP attempts the submit took."""

    task_id: str
    attempts: int
    rate_limited: int = 0  # 429s this submit met before it was accepted


class _Kind(enum.Enum):
    SUBMIT = "submit"
    API_GET = "api-get"
    DOWNLOAD = "download"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (seconds or HTTP-date); None if unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify(exc: BaseException, *, submit: bool = False) -> bool:
    """Whether the request that failed with `exc` may be sent again: the one retry rule.

    Takes the client's own errors (whose `retryable` says it) or a raw httpx exception, which is
    judged as the client would translate it for a submit (`submit=True`) or a GET.
    """
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        kind = _Kind.SUBMIT if submit else _Kind.API_GET
        exc = _transport_error(exc, kind, what="request", secret=None)
    return isinstance(exc, NovitaError) and exc.retryable


class _BearerAuth(httpx.Auth):
    """Adds `Authorization: Bearer` to requests under the API base URL, and to nothing else."""

    def __init__(self, key: SecretStr, base_url: httpx.URL) -> None:
        self._key = key
        self._origin = (base_url.scheme, base_url.host, base_url.port)
        self._path = base_url.path.rstrip("/") + "/"

    def __repr__(self) -> str:
        return "_BearerAuth('***')"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url = request.url
        if (url.scheme, url.host, url.port) == self._origin and url.path.startswith(self._path):
            request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        yield request


class NovitaClient:
    """Async client for Novita's inpainting API, around one `httpx.AsyncClient`.

    Use it as an async context manager so its connections are closed.

    Args:
        api_key: Sent as `Authorization: Bearer` to the API only; None sends no header (the
            local server needs none).
        base_url: The API root, e.g. `https://api.novita.ai` or a local server's URL.
        transport: An httpx transport to use instead of the network (tests).
        timeout: Seconds for each of connect, read, write and pool acquisition.
        retry: The retry policy for every request; `RetryPolicy()` when None.
        limiter: Paces submits by images per minute; told about 429s so others back off too.
        halt: The run's batch-wide stop: told about account errors and connection failures,
            and checked before every submit attempt.
        connections: Connections to the API, at most, all kept open between requests: as many
            as requests that run at once (a batch's in-flight limit). None keeps httpx's
            default (100 at once, 20 kept open), which with more than 20 jobs in flight closes
            and reopens a connection for most requests.
    """

    def __init__(
        self,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        connections: int | None = None,
        halt: BatchHalt | None = None,
    ) -> None:
        self.base_url = _checked_base_url(base_url)
        self._key = _checked_key(api_key)
        self._auth = (
            _BearerAuth(self._key, httpx.URL(self.base_url)) if self._key is not None else None
        )
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self.halt = halt or BatchHalt()
        self.stats = ClientStats()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            limits=(
                httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
                if connections
                else httpx.Limits(max_connections=100, max_keepalive_connections=20)
            ),
            headers={"Accept": "application/json"},
            event_hooks={"request": [self._log_request], "response": [self._log_response]},
        )

    def __repr__(self) -> str:
        key = "'***'" if self._key is not None else "None"
        return f"NovitaClient(base_url={self.base_url!r}, api_key={key})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ---- API -------------------------------------------------------------------------------

    async def submit(self, image_b64: str, mask_b64: str, params: InpaintParams) -> SubmitResponse:
        """Create an inpainting task (a paid request); returns its id.

        Raises `SubmitOutcomeUnknown` when the request may have reached Novita but no answer
        came: a task may exist and was paid for, and it is not submitted again here.
        """
        body = {
            "extra": params.extra_fields(),
            "request": {
                **params.request_fields(),
                "image_base64": image_b64,
                "mask_image_base64": mask_b64,
            },
        }
        what = f"Submitting an inpainting task (POST {SUBMIT_PATH})"
        response, attempts, limited = await self._send(
            _Kind.SUBMIT, "POST", SUBMIT_PATH, what=what, json=body, images=params.image_num
        )
        data = _json_object(response)
        task_id = data.get("task_id") if data is not None else None
        if not task_id and data is not None and isinstance(data.get("data"), dict):
            task_id = data["data"].get("task_id")  # the deprecated v2 envelope
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown(
                self._redact(
                    f"{what}: HTTP {response.status_code} but the answer holds no task id "
                    f"({_snippet(response)}). A paid task may exist on Novita; it was not "
                    "submitted again. Rerunning this job will submit it again."
                )
            )
        self.stats.submits += 1
        if self.limiter is not None:
            self.limiter.accepted()
        return SubmitResponse(task_id=task_id, attempts=attempts, rate_limited=limited)

    async def get_task_result(self, task_id: str) -> TaskResult:
        """The task's status, and its result images once it succeeded."""
        self.stats.polls += 1
        what = f"Getting the result of task {task_id}"
        response, _, _ = await self._send(
            _Kind.API_GET, "GET", TASK_RESULT_PATH, what=what, params={"task_id": task_id}
        )
        data = _json_object(response)
        if data is None:
            raise NovitaError(
                self._redact(f"{what}: the answer is not a JSON object ({_snippet(response)})."),
                reason="INVALID_RESPONSE",
            )
        return _parse_task_result(data, task_id)

    async def download(self, url: str) -> bytes:
        """Fetch a result image from its signed URL; no API key is sent with it."""
        what = f"Downloading result image {_public_url(url)}"
        response, _, _ = await self._send(_Kind.DOWNLOAD, "GET", url, what=what)
        self.stats.downloads += 1
        return response.content

    async def list_models(self, **filters: str | int | bool) -> list[dict[str, Any]]:
        """Every model matching `filters`, following the cursor across pages.

        Filter names are the API's without the `filter.` prefix, e.g.
        `list_models(types="checkpoint", is_inpainting=True, query="realistic")`.
        """
        params: dict[str, str] = {"pagination.limit": "100"}
        for name, value in filters.items():
            key = name if "." in name else f"filter.{name}"
            params[key] = str(value).lower() if isinstance(value, bool) else str(value)
        models: list[dict[str, Any]] = []
        seen: set[str] = set()
        while True:
            response, _, _ = await self._send(
                _Kind.API_GET, "GET", MODELS_PATH, what="Listing models", params=params
            )
            data = _json_object(response) or {}
            if "models" not in data and isinstance(data.get("data"), dict):
                data = data["data"]
            page = data.get("models") or []
            models.extend(m for m in page if isinstance(m, dict))
            pagination = data.get("pagination")
            cursor = pagination.get("next_cursor") if isinstance(pagination, dict) else None
            if not cursor or not page or str(cursor) in seen:
                return models
            seen.add(str(cursor))
            params["pagination.cursor"] = str(cursor)

    # ---- the retry loop --------------------------------------------------------------------

    async def _send(
        self,
        kind: _Kind,
        method: str,
        url: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        images: int = 0,
    ) -> tuple[httpx.Response, int, int]:
        """Send one request under the retry policy.

        Returns the 2xx response, the attempts made (429s not counted) and the 429s met.
        """
        attempt = 0  # HTTP attempts, 429s included (the report's `attempts`)
        failures = 0  # failed attempts that count against `max_attempts`: not 429s
        limited = 0
        waited_429_s = 0.0  # what 429s have cost this request so far, in seconds of waiting
        while True:
            if kind is _Kind.SUBMIT:
                self.halt.check()  # a batch-wide fault: this submit is not sent at all
                if images and self.limiter is not None:
                    await self.limiter.acquire(images)
                self.halt.check()
                self.stats.attempts += 1
            attempt += 1
            self.stats.requests += 1
            error: InpaintFlowsError
            retry_after: float | None = None
            try:
                response = await self._http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    auth=self._auth if kind is not _Kind.DOWNLOAD else None,
                    follow_redirects=kind is _Kind.DOWNLOAD,
                )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                # Translated, then raised outside this block so the httpx exception (whose
                # request holds the Authorization header) is neither cause nor context.
                error = _transport_error(exc, kind, what=what, secret=self._key)
                if kind is not _Kind.DOWNLOAD and isinstance(
                    error, TransportError | SubmitOutcomeUnknown
                ):
                    self.halt.connection_failed(error.reason)
            else:
                _unbind_stream(response)
                if kind is not _Kind.DOWNLOAD:
                    self.halt.answered()
                if response.is_success and (kind is not _Kind.DOWNLOAD or response.content):
                    return response, attempt, limited
                error, retry_after = _status_error(response, kind, what=what, secret=self._key)
                if kind is not _Kind.DOWNLOAD and isinstance(error, NovitaError):
                    self.halt.api_error(error)
            if isinstance(error, RateLimitedError):
                # "Not now": wait and send again; it does not use up an attempt.
                self.stats.rate_limited += 1
                limited += 1
                if waited_429_s >= self.retry.rate_limit_patience_s:
                    self.halt.halt(
                        RATE_LIMITED_TOO_LONG,
                        f"{error.message} The API kept answering 429 for {limited} requests "
                        f"({waited_429_s:.0f} s of waiting). New submits stopped: lower "
                        "images_per_minute to the account's limit, then rerun the same "
                        "command: nothing is paid twice.",
                    )
                    raise error
                limiter = self.limiter if kind is _Kind.SUBMIT else None
                # The account's window is full: the whole run slows down, and this submit waits
                # for its next slot (in `acquire` above, or Retry-After here).
                wait = limiter.rate_limited(retry_after) if limiter is not None else None
                if limiter is not None and wait is not None:
                    waited_429_s += wait
                    logger.info("%s: 429; the run now paces at %s/min", what, limiter.rate)
                    if retry_after is not None:
                        await _sleep(min(wait, self.retry.max_delay))
                    continue
                delay = self.retry.delay(limited, retry_after)
                waited_429_s += delay
                await _sleep(delay)
                continue
            failures += 1
            delay = self.retry.delay(failures, retry_after)
            stopped = self.halt.stop
            if (
                not classify(error)
                or failures >= self.retry.max_attempts
                or (stopped is not None and stopped.reason == UNREACHABLE)
            ):
                if attempt > 1:
                    error.args = (f"{error} (gave up after {attempt} attempts)",)
                raise error
            logger.warning(
                "%s: %s; retry %d of %d in %.1f s",
                what,
                error.reason,
                failures,
                self.retry.max_attempts - 1,
                delay,
            )
            await _sleep(delay)

    def _redact(self, text: str) -> str:
        return _redact(text, self._key)

    # ---- logging (no headers, ever) --------------------------------------------------------

    async def _log_request(self, request: httpx.Request) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return  # ~4,000 requests per 1,000 jobs: not even the URL is formatted
        logger.debug("%s %s", request.method, _public_url(str(request.url)))

    async def _log_response(self, response: httpx.Response) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        request = response.request
        logger.debug(
            "%s %s -> %d", request.method, _public_url(str(request.url)), response.status_code
        )


def _unbind_stream(response: httpx.Response) -> None:
    """Let a read response be freed as soon as it is dropped, not at the next full GC.

    httpx 0.28 binds each response's stream back to the response (a reference cycle,
    encode/httpx#3733), so a downloaded image and the submitted body (via `response.request`)
    stay in memory until Python's cyclic collector runs, which in a big process is rarely: a
    1 MP batch grew ~0.2 MB per job. The body is already read and the stream closed here.
    """
    response.stream = httpx.ByteStream(b"")


# ---- translating failures ------------------------------------------------------------------


def _transport_error(
    exc: Exception, kind: _Kind, *, what: str, secret: SecretStr | None
) -> InpaintFlowsError:
    """Our error for an httpx exception; its retryability is the table in the module docstring."""
    detail = _redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secret)
    if isinstance(exc, _UNSENDABLE):
        message = f"{what}: the request cannot be sent ({detail})."
        if kind is _Kind.DOWNLOAD:
            return DownloadError(message + " The result URL is unusable.", retryable=False)
        if isinstance(exc, httpx.LocalProtocolError):
            return NovitaError(message, reason="LOCAL_PROTOCOL_ERROR")
        return ConfigError(message + " Check the base URL (e.g. https://api.novita.ai).")
    if kind is _Kind.DOWNLOAD:
        return DownloadError(f"{what}: the connection failed ({detail}).", retryable=True)
    if kind is _Kind.SUBMIT and not isinstance(exc, _NEVER_SENT):
        return SubmitOutcomeUnknown(
            f"{what}: the request was sent but no answer came ({detail}). A paid task may "
            "exist on Novita; it was not submitted again. Rerunning this job will submit it "
            "again, which may create a second paid task."
        )
    return TransportError(f"{what}: the connection failed ({detail}). Check the network.")


def _status_error(
    response: httpx.Response, kind: _Kind, *, what: str, secret: SecretStr | None
) -> tuple[InpaintFlowsError, float | None]:
    """Our error for a non-2xx (or empty download) answer, and the server's Retry-After."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    reason, message, novita_body = _error_body(response)
    said = f"HTTP {status}" + (f" {reason}" if reason else "") + f": {message}"
    text = _redact(f"{what} failed: {said}", secret)
    if kind is _Kind.DOWNLOAD:
        if response.is_success:
            text = _redact(f"{what}: the server sent an empty body.", secret)
            return DownloadError(text, reason="EMPTY_RESULT_IMAGE", retryable=True), None
        if status in _EXPIRED_STATUSES:
            return DownloadError(
                f"{text}. The signed result URL has expired or is not valid; it cannot be "
                "renewed, so the task has to be run again.",
                reason="RESULT_URL_EXPIRED",
                retryable=False,
            ), None
        retryable = status == 429 or status >= 500
        return DownloadError(text + ".", retryable=retryable), retry_after
    if status == 429:
        return RateLimitedError(
            f"{text}. Lower images_per_minute to your account's limit.",
            reason=reason,
            retry_after=retry_after,
        ), retry_after
    if kind is _Kind.SUBMIT and status in (502, 504) and not novita_body:
        # A gateway answered for Novita: the request may have reached it and created a task.
        return SubmitOutcomeUnknown(
            f"{text}. A gateway answered instead of Novita, so a paid task may exist; it was "
            "not submitted again. Rerunning this job will submit it again."
        ), None
    if status >= 500:
        return ServerError(
            f"{text}. Novita had a server error; try again later.",
            status_code=status,
            reason=reason,
        ), retry_after
    if status in (401, 403) or reason in _AUTH_REASONS:
        return AuthError(
            f"{text}. Check the API key (NOVITA_API_KEY or the Secret block); not retried.",
            status_code=status,
            reason=reason,
        ), None
    if status == 404 and reason == "TASK_NOT_FOUND":
        return TaskNotFoundError(
            f"{text}. The task is unknown or its result has expired; submit the job again.",
            status_code=status,
            reason=reason,
        ), None
    hint = {
        400: "The request was refused as invalid; fix it before running again (not retried).",
        404: "Nothing answers at this path; check the base URL.",
    }.get(status, "Not retried.")
    if reason == MODEL_NOT_FOUND:
        hint = (
            "A model name in the request is not known to the API: use a name GET /v3/model "
            "lists (`inpaint-flows check` shows which are unknown); not retried."
        )
    return NovitaAPIError(f"{text}. {hint}", status_code=status, reason=reason), None


def _error_body(response: httpx.Response) -> tuple[str | None, str, bool]:
    """(reason, message, is a Novita error body) from an error answer, JSON or not."""
    data = _json_object(response)
    if data is not None:
        reason = data.get("reason")
        message = data.get("message") or data.get("msg")
        if isinstance(reason, str) or isinstance(message, str):
            return (
                reason if isinstance(reason, str) and reason else None,
                str(message) if message else "(no message)",
                isinstance(reason, str) and bool(reason),
            )
    return None, _snippet(response), False


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return cast(dict[str, Any], data) if isinstance(data, dict) else None


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    """The start of a body on one line, for messages about non-JSON answers."""
    try:
        text = " ".join(response.text.split())
    except (UnicodeDecodeError, LookupError):
        text = ""
    if not text:
        return "empty body"
    return text if len(text) <= limit else text[:limit] + "…"


def _redact(text: str, secret: SecretStr | None) -> str:
    if secret is None:
        return text
    return text.replace(secret.get_secret_value(), "***")


def _public_url(url: str) -> str:
    """A URL fit for logs and messages: a signed URL's query string is a credential too."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    if not parsed.query:
        return url
    if parsed.path == TASK_RESULT_PATH or parsed.path.endswith(TASK_RESULT_PATH):
        return url  # the query is just the task id
    return str(parsed.copy_with(query=None)) + "?…"


# ---- construction checks and tolerant parsing ----------------------------------------------


def _checked_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"The base URL {base_url!r} is not an http(s) URL; use e.g. https://api.novita.ai "
            "or the local server's http://127.0.0.1:PORT."
        )
    return url


def _checked_key(api_key: str | None) -> SecretStr | None:
    if api_key is None or not api_key.strip():
        return None
    key = api_key.strip()
    if not (key.isascii() and key.isprintable()) or any(c.isspace() for c in key):
        # Never quote the key: the message would put it in logs and reports.
        raise ConfigError(
            "The API key contains spaces, control or non-ASCII characters; copy it again from "
            "the Novita dashboard (Key management)."
        )
    return SecretStr(key)


def _parse_task_result(data: dict[str, Any], task_id: str) -> TaskResult:
    """A `TaskResult` from a task-result body, tolerant of the variations seen in the wild."""
    if "task" not in data and isinstance(data.get("data"), dict):
        data = data["data"]
    task = _object(data.get("task"))
    status = task.get("status")
    if status not in _TASK_STATUSES:
        raise NovitaError(
            f"Task {task_id}: the API reported "
            + (f"an unknown status {status!r}" if status is not None else "no status")
            + f"; expected one of "
            f"{', '.join(sorted(_TASK_STATUSES))}. The client may need updating for it.",
            reason="UNKNOWN_TASK_STATUS",
        )
    images: list[ResultImage] = []
    for item in data.get("images") or ():
        if not isinstance(item, dict) or not item.get("image_url"):
            continue
        ttl = _number(item.get("image_url_ttl"))
        image_type = item.get("image_type")
        images.append(
            ResultImage(
                image_url=str(item["image_url"]),
                image_url_ttl=int(ttl) if ttl is not None else None,
                image_type=str(image_type) if image_type else None,
            )
        )
    extra = _object(data.get("extra"))
    seed = extra.get("seed")
    return TaskResult(
        task_id=str(task.get("task_id") or task_id),
        status=cast(TaskStatus, status),
        reason=str(task.get("reason") or ""),
        eta=_number(task.get("eta")),
        progress_percent=_number(task.get("progress_percent")),
        images=tuple(images),
        seed=str(seed) if seed is not None and seed != "" else None,
        server_duration_s=server_duration_s(_object(extra.get("debug_info"))),
    )


MAX_TASK_DURATION_S = 86_400.0


def server_duration_s(debug: dict[str, Any]) -> float | None:
    """Seconds from `submit_time_ms` to `complete_time_ms` of a task-result's
    `extra.debug_info`, if both are there and make sense; else None."""
    submitted = _number(debug.get("submit_time_ms"))
    completed = _number(debug.get("complete_time_ms"))
    if submitted is None or completed is None or submitted <= 0:
        return None
    seconds = (completed - submitted) / 1000
    return seconds if 0 <= seconds <= MAX_TASK_DURATION_S else None


def _object(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (absent and null parts are common)."""
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    """A finite number from a JSON number or numeric string; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
