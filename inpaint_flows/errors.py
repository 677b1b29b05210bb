"""Every error the pipeline raises or records, in one place.

    InpaintFlowsError
    ├── InputError                 a user's file or manifest is unusable; never submitted
    │   ├── ManifestError          the manifest cannot be read, or a row is wrong
    │   ├── ImageError             an image cannot be read or breaks a limit
    │   ├── MaskError              a mask is missing, unreadable, empty or mismatched
    │   └── AnnotationError        an annotation file cannot be read, or names an unknown label
    ├── ConfigError                a setting (key, base URL, parameter) is wrong
    ├── StoreError                 the job store (its database) cannot be used right now
    │   └── ClaimLostError         another run took over a job this run held (its lease lapsed)
    └── NovitaError                anything the API or the way to it did
        ├── NovitaAPIError         the API answered with an error body (has status, reason)
        │   ├── RateLimitedError   429 RATE_LIMIT_EXCEEDED
        │   ├── ServerError        5xx
        │   ├── AuthError          MISSING_API_KEY / INVALID_API_KEY / billing auth
        │   └── TaskNotFoundError  404 TASK_NOT_FOUND (expired or lost task)
        ├── TransportError         the request could not be completed (connect, reset, timeout)
        ├── SubmitOutcomeUnknown   a submit was sent but no answer came: a task may exist
        ├── TaskFailedError        the task ended TASK_STATUS_FAILED (has reason)
        ├── PollTimeoutError       the task did not finish within the poll budget
        ├── DownloadError          a result image could not be fetched or is not an image
        └── BatchStoppedError      not sent: a batch-wide fault stopped new submits

Each error has a `reason` token (Novita's, or our own in the same style) that goes into the
report, and a message that says which file or task, what happened and what to do. No message
may contain the API key: the client never formats request headers into errors.
"""

from __future__ import annotations


class InpaintFlowsError(Exception):
    """Base class; `reason` is a stable token recorded in the report."""

    reason: str = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class InputError(InpaintFlowsError):
    reason = "INVALID_INPUT"


class ManifestError(InputError):
    reason = "INVALID_MANIFEST"


class ImageError(InputError):
    reason = "INVALID_IMAGE"


class MaskError(InputError):
    reason = "INVALID_MASK"


class AnnotationError(InputError):
    reason = "INVALID_ANNOTATIONS"


class ConfigError(InpaintFlowsError):
    reason = "INVALID_CONFIG"


class StoreError(InpaintFlowsError):
    """The job store failed: its database is unreachable, refused us, or is not ours.

    Messages name the database with its password replaced by `***`.
    """

    reason = "JOB_STORE_ERROR"


class ClaimLostError(StoreError):
    """This run's claim on a job was taken over by another run after its lease lapsed."""

    reason = "CLAIM_LOST"


class NovitaError(InpaintFlowsError):
    reason = "NOVITA_ERROR"

    @property
    def retryable(self) -> bool:
        """Whether the same request may be sent again safely."""
        return False


class NovitaAPIError(NovitaError):
    """The API answered with an error status and (usually) a contract error body."""

    def __init__(self, message: str, *, status_code: int = 0, reason: str | None = None) -> None:
        super().__init__(message, reason=reason or f"HTTP_{status_code}")
        self.status_code = status_code

    def __reduce__(self) -> tuple[object, ...]:
        # Prefect pickles a failed task's exception; keyword-only fields must survive that.
        return (_rebuild, (type(self), str(self), self.__dict__))


class RateLimitedError(NovitaAPIError):
    reason = "RATE_LIMIT_EXCEEDED"

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 429,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, reason=reason or self.reason)
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return True


class ServerError(NovitaAPIError):
    @property
    def retryable(self) -> bool:
        return True


class AuthError(NovitaAPIError):
    pass


class TaskNotFoundError(NovitaAPIError):
    reason = "TASK_NOT_FOUND"


class TransportError(NovitaError):
    reason = "TRANSPORT_ERROR"

    @property
    def retryable(self) -> bool:
        return True


class SubmitOutcomeUnknown(NovitaError):
    reason = "SUBMIT_OUTCOME_UNKNOWN"


class TaskFailedError(NovitaError):
    reason = "TASK_FAILED"


class PollTimeoutError(NovitaError):
    reason = "POLL_TIMEOUT"


class DownloadError(NovitaError):
    reason = "DOWNLOAD_FAILED"

    def __init__(self, message: str, *, reason: str | None = None, retryable: bool = True) -> None:
        super().__init__(message, reason=reason)
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        return self._retryable


class BatchStoppedError(NovitaError):
    """A job was not submitted because the batch stopped (auth, balance, unreachable, ...).

    Its `reason` is the cause's (e.g. BILLING_BALANCE_NOT_ENOUGH); nothing was paid for it.
    """

    reason = "BATCH_STOPPED"


def _rebuild(
    cls: type[InpaintFlowsError], message: str, state: dict[str, object]
) -> InpaintFlowsError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc
