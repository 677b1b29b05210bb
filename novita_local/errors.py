"""The one exception the server raises to answer with a contract error body.

    ApiError                 any error response: reason token + message (+ extra headers, and a
                             status when it is not the contract's one, e.g. a 401 key refusal)
      └─ BodyTooLarge        the request body crossed the configured cap while streaming

Handlers raise; `app.py` turns the exception into `{"code","reason","message","metadata"}` with the
status that `contract.error_status` gives the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from inpaint_flows.contract import error_body, error_status


class ApiError(Exception):
    """An error answer: `reason` is a contract token, `message` says what and how to fix it."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        metadata: dict[str, object] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.headers = dict(headers or {})
        self.metadata = metadata
        self._status = status  # None: the contract's status for `reason`

    @property
    def status(self) -> int:
        return self._status if self._status is not None else error_status(self.reason)

    def body(self) -> dict[str, object]:
        # A message may quote client text holding lone surrogates, which UTF-8 cannot carry.
        message = self.message.encode("utf-8", "replace").decode("utf-8")
        return error_body(self.reason, message, self.metadata, status=self.status)


class BodyTooLarge(ApiError):
    """The body is bigger than `ServerConfig.max_body_bytes`."""

    def __init__(self, limit: int, seen: int | None = None) -> None:
        size = f"{seen} bytes" if seen is not None else f"more than {limit} bytes"
        super().__init__(
            "IMAGE_FILE_EXCEEDS_MAX_SIZE",
            f"request body is {size}; this server accepts at most {limit} bytes "
            "(each image must be at most 30 MB decoded)",
        )
