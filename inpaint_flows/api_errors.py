"""What an API answer or a failed request means: the project's error for it, retryable or not.

`NovitaClient` sends; this module reads what came back (or what went wrong on the way) and
turns it into one of `inpaint_flows.errors`, following the table in `inpaint_flows.client`'s
docstring. Every message is scrubbed of the API key, and signed URLs lose their query string.
"""

from __future__ import annotations

import email.utils
import enum
import math
from datetime import UTC, datetime
from typing import Any, cast

import httpx
from pydantic import SecretStr

from inpaint_flows.contract import MODEL_NOT_FOUND, TASK_RESULT_PATH
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

AUTH_REASONS = frozenset(("MISSING_API_KEY", "INVALID_API_KEY", "BILLING_AUTH_FAILED"))
# Failures raised before any byte of the request reached the server: safe to resend a POST.
NEVER_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
# Failures that will happen again however often the request is sent.
UNSENDABLE: tuple[type[Exception], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.InvalidURL,
    httpx.TooManyRedirects,
)
EXPIRED_STATUSES = frozenset((403, 404, 410))


class RequestKind(enum.Enum):
    """Which kind of request failed: it decides what a failure means (see the table)."""

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


def transport_error(
    exc: Exception, kind: RequestKind, *, what: str, secret: SecretStr | None
) -> InpaintFlowsError:
    """Our error for an httpx exception; its retryability is the table in the module docstring."""
    detail = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secret)
    if isinstance(exc, UNSENDABLE):
        message = f"{what}: the request cannot be sent ({detail})."
        if kind is RequestKind.DOWNLOAD:
            return DownloadError(message + " The result URL is unusable.", retryable=False)
        if isinstance(exc, httpx.LocalProtocolError):
            return NovitaError(message, reason="LOCAL_PROTOCOL_ERROR")
        return ConfigError(message + " Check the base URL (e.g. https://api.novita.ai).")
    if kind is RequestKind.DOWNLOAD:
        return DownloadError(f"{what}: the connection failed ({detail}).", retryable=True)
    if kind is RequestKind.SUBMIT and not isinstance(exc, NEVER_SENT):
        return SubmitOutcomeUnknown(
            f"{what}: the request was sent but no answer came ({detail}). A paid task may "
            "exist on Novita; it was not submitted again. Rerunning this job will submit it "
            "again, which may create a second paid task."
        )
    return TransportError(f"{what}: the connection failed ({detail}). Check the network.")


def status_error(
    response: httpx.Response, kind: RequestKind, *, what: str, secret: SecretStr | None
) -> tuple[InpaintFlowsError, float | None]:
    """Our error for a non-2xx (or empty download) answer, and the server's Retry-After."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    reason, message, novita_body = error_body(response)
    said = f"HTTP {status}" + (f" {reason}" if reason else "") + f": {message}"
    text = redact(f"{what} failed: {said}", secret)
    if kind is RequestKind.DOWNLOAD:
        if response.is_success:
            text = redact(f"{what}: the server sent an empty body.", secret)
            return DownloadError(text, reason="EMPTY_RESULT_IMAGE", retryable=True), None
        if status in EXPIRED_STATUSES:
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
    if kind is RequestKind.SUBMIT and status in (502, 504) and not novita_body:
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
    if status in (401, 403) or reason in AUTH_REASONS:
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


def error_body(response: httpx.Response) -> tuple[str | None, str, bool]:
    """(reason, message, is a Novita error body) from an error answer, JSON or not."""
    data = json_object(response)
    if data is not None:
        reason = data.get("reason")
        message = data.get("message") or data.get("msg")
        if isinstance(reason, str) or isinstance(message, str):
            return (
                reason if isinstance(reason, str) and reason else None,
                str(message) if message else "(no message)",
                isinstance(reason, str) and bool(reason),
            )
    return None, snippet(response), False


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return cast(dict[str, Any], data) if isinstance(data, dict) else None


def snippet(response: httpx.Response, limit: int = 200) -> str:
    """The start of a body on one line, for messages about non-JSON answers."""
    try:
        text = " ".join(response.text.split())
    except (UnicodeDecodeError, LookupError):
        text = ""
    if not text:
        return "empty body"
    return text if len(text) <= limit else text[:limit] + "…"


def redact(text: str, secret: SecretStr | None) -> str:
    if secret is None:
        return text
    return text.replace(secret.get_secret_value(), "***")


def public_url(url: str) -> str:
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
