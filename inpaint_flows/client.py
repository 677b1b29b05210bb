"""The one HTTP client for Novita's async inpainting API (and the local server that mimics it).

All HTTP of the project goes through `NovitaClient`: submit a task, read its result, download a
result image, list models. Retries are declared once, in `RetryPolicy`, and which failures may be
retried is decided in one place, `classify`, from the errors `api_errors` makes of answers and
failures (task-result bodies are read by `task_results`):

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
import logging
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
from pydantic import SecretStr

from inpaint_flows.api_errors import (
    RequestKind,
    json_object,
    public_url,
    redact,
    snippet,
    status_error,
    transport_error,
)
from inpaint_flows.connections import ApiTransport
from inpaint_flows.contract import MODELS_PATH, SUBMIT_PATH, TASK_RESULT_PATH
from inpaint_flows.errors import (
    ConfigError,
    InpaintFlowsError,
    NovitaError,
    RateLimitedError,
    SubmitOutcomeUnknown,
    TransportError,
)
from inpaint_flows.halt import RATE_LIMITED_TOO_LONG, UNREACHABLE, BatchHalt
from inpaint_flows.models import InpaintParams, TaskResult
from inpaint_flows.pacing import RateLimiter
from inpaint_flows.task_results import parse_task_result

__all__ = [
    "ClientStats",
    "NovitaClient",
    "RetryPolicy",
    "SubmitResponse",
    "classify",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.novita.ai"


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


def classify(exc: BaseException, *, submit: bool = False) -> bool:
    """Whether the request that failed with `exc` may be sent again: the one retry rule.

    Takes the client's own errors (whose `retryable` says it) or a raw httpx exception, which is
    judged as the client would translate it for a submit (`submit=True`) or a GET.
    """
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        kind = RequestKind.SUBMIT if submit else RequestKind.API_GET
        exc = transport_error(exc, kind, what="request", secret=None)
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
        limits = (
            httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
            if connections
            else httpx.Limits(max_connections=100, max_keepalive_connections=20)
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport or ApiTransport(limits=limits),
            timeout=httpx.Timeout(timeout),
            limits=limits,  # also for the proxy transports httpx mounts from the environment
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
            RequestKind.SUBMIT, "POST", SUBMIT_PATH, what=what, json=body, images=params.image_num
        )
        data = json_object(response)
        task_id = data.get("task_id") if data is not None else None
        if not task_id and data is not None and isinstance(data.get("data"), dict):
            task_id = data["data"].get("task_id")  # the deprecated v2 envelope
        if not isinstance(task_id, str) or not task_id:
            raise SubmitOutcomeUnknown(
                self._redact(
                    f"{what}: HTTP {response.status_code} but the answer holds no task id "
                    f"({snippet(response)}). A paid task may exist on Novita; it was not "
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
            RequestKind.API_GET, "GET", TASK_RESULT_PATH, what=what, params={"task_id": task_id}
        )
        data = json_object(response)
        if data is None:
            raise NovitaError(
                self._redact(f"{what}: the answer is not a JSON object ({snippet(response)})."),
                reason="INVALID_RESPONSE",
            )
        return parse_task_result(data, task_id)

    async def download(self, url: str) -> bytes:
        """Fetch a result image from its signed URL; no API key is sent with it."""
        what = f"Downloading result image {public_url(url)}"
        response, _, _ = await self._send(RequestKind.DOWNLOAD, "GET", url, what=what)
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
                RequestKind.API_GET, "GET", MODELS_PATH, what="Listing models", params=params
            )
            data = json_object(response) or {}
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
        kind: RequestKind,
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
            if kind is RequestKind.SUBMIT:
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
                    auth=self._auth if kind is not RequestKind.DOWNLOAD else None,
                    follow_redirects=kind is RequestKind.DOWNLOAD,
                )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                # Translated, then raised outside this block so the httpx exception (whose
                # request holds the Authorization header) is neither cause nor context.
                error = transport_error(exc, kind, what=what, secret=self._key)
                if kind is not RequestKind.DOWNLOAD and isinstance(
                    error, TransportError | SubmitOutcomeUnknown
                ):
                    self.halt.connection_failed(error.reason)
            else:
                _unbind_stream(response)
                if kind is not RequestKind.DOWNLOAD:
                    self.halt.answered()
                if response.is_success and (kind is not RequestKind.DOWNLOAD or response.content):
                    return response, attempt, limited
                error, retry_after = status_error(response, kind, what=what, secret=self._key)
                if kind is not RequestKind.DOWNLOAD and isinstance(error, NovitaError):
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
                limiter = self.limiter if kind is RequestKind.SUBMIT else None
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
        return redact(text, self._key)

    # ---- logging (no headers, ever) --------------------------------------------------------

    async def _log_request(self, request: httpx.Request) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return  # ~4,000 requests per 1,000 jobs: not even the URL is formatted
        logger.debug("%s %s", request.method, public_url(str(request.url)))

    async def _log_response(self, response: httpx.Response) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return
        request = response.request
        logger.debug(
            "%s %s -> %d", request.method, public_url(str(request.url)), response.status_code
        )


def _unbind_stream(response: httpx.Response) -> None:
    """Let a read response be freed as soon as it is dropped, not at the next full GC.

    httpx 0.28 binds each response's stream back to the response (a reference cycle,
    encode/httpx#3733), so a downloaded image and the submitted body (via `response.request`)
    stay in memory until Python's cyclic collector runs, which in a big process is rarely: a
    1 MP batch grew ~0.2 MB per job. The body is already read and the stream closed here.
    """
    response.stream = httpx.ByteStream(b"")


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
