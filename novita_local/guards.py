"""Transport-level guards around the whole app: body size cap, time bound, last-resort errors.

Raw ASGI middleware (not Starlette's BaseHTTPMiddleware, which buffers and breaks streaming):

- A body whose Content-Length exceeds the cap is refused before a byte of it is read; one that
  streams past the cap (chunked upload) is refused as soon as it does, from inside `receive`, so
  at most `max_body_bytes` are ever held. uvicorn drains the unread rest, so the client still gets
  the 400 rather than a reset.
- Each request must be handled within `request_timeout` seconds, upload included: a slow-loris
  body gets 400 INVALID_REQUEST_BODY, a slow handler 500 with a contract body.
- Any exception that escapes the app is logged (without headers) and answered with a contract
  500 instead of uvicorn's plain-text one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from novita_local.errors import ApiError, BodyTooLarge

logger = logging.getLogger(__name__)


def server_error_reason(scope: Scope) -> str:
    """The contract's 500 reason for a failed request on this route."""
    if scope.get("method") == "POST":
        return "CREATE_TASK_FAILED"
    return "GET_RESULT_FAILED"


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, request_timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body_bytes:
            await _answer(scope, receive, send, BodyTooLarge(self.max_body_bytes, declared))
            return

        state: dict[str, Any] = {
            "received": 0,
            "body_done": declared in (None, 0) and "transfer-encoding" not in headers,
            "started": False,
        }

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    state["body_done"] = True
                if state["received"] > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            async with asyncio.timeout(self.request_timeout):
                await self.app(scope, limited_receive, tracking_send)
        except TimeoutError:
            if state["started"]:
                return  # uvicorn closes a half-sent response
            if not state["body_done"]:
                error = ApiError(
                    "INVALID_REQUEST_BODY",
                    f"request body was not received within {self.request_timeout:g} s",
                )
            else:
                error = ApiError(
                    server_error_reason(scope),
                    f"the server did not finish this request within {self.request_timeout:g} s",
                )
            await _answer(scope, receive, send, error)
        except ApiError as refused:  # e.g. BodyTooLarge raised outside a route's handlers
            if not state["started"]:
                await _answer(scope, receive, send, refused)
        except Exception:
            # The app's own handler has already answered with a contract 500 when it could.
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not state["started"]:
                error = ApiError(server_error_reason(scope), "internal server error")
                await _answer(scope, receive, send, error)


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def _answer(scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    await response(scope, receive, send)
