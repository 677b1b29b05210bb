"""The ASGI app: Novita's inpainting routes, the result-file bucket and the local stats.

Routes:
    POST /v3/async/inpainting        submit -> {"task_id"}
    GET  /v3/async/task-result       poll a task
    GET  /v3/model                   list the local models
    GET  /_local/files/{id}/{n}.{ext} signed result files (a "bucket": no API key, XML errors)
    GET  /_local/stats               counters (not Novita; no auth)
    POST /_local/restart             drop every task, as a crash would (not Novita; no auth)
    POST /_local/hold?held=true      keep queued tasks queued until held=false (not Novita)

Every error a /v3 client can meet has the contract body `{"code","reason","message","metadata"}`:
FastAPI's 422 handler, Starlette's 404/405 pages and uvicorn's plain-text 500 are all replaced.

Submit order: auth -> read body (size cap) -> count it -> injected fault -> JSON and field checks
-> model names (`novita` profile) -> image checks (per-side cap included) -> balance ->
moderation -> rate limit -> create task. A dropped submit (`drop_submit_rate`) closes the
socket before the task exists unless `drop_after_create`, which drops after the full answer was
prepared (a task was created when the request was valid).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from inpaint_flows.contract import (
    MODELS_PATH,
    REPORTED_TASK_STATUSES,
    SUBMIT_PATH,
    TASK_RESULT_PATH,
    ErrorBody,
    InpaintingBody,
    TaskCreated,
)
from novita_local.catalog import check_names
from novita_local.catalog import list_models as catalog_list
from novita_local.config import ServerConfig
from novita_local.connection import drop_connection
from novita_local.errors import ApiError
from novita_local.faults import PollFault, SubmitFault
from novita_local.guards import GuardMiddleware, server_error_reason
from novita_local.images import decode_pair, media_type
from novita_local.signing import Refusal
from novita_local.state import ServerState
from novita_local.stats import content_hash
from novita_local.validation import parse_json, validate_body

logger = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Invalid request, missing API key or balance not enough"),
        (401, "Missing or invalid API key (with auth_status 401)"),
        (403, "Invalid API key"),
        (404, "Not found (task, route, or a model name: MODEL_NOT_FOUND)"),
        (429, "Rate limit exceeded"),
        (500, "Server error"),
    )
}


_REFUSAL_KEYS = {
    Refusal.MISSING: "missing",
    Refusal.SIGNATURE: "signature",
    Refusal.EXPIRED: "expired",
    Refusal.NOT_FOUND: "not_found",
}


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """A new app with its own state; its workers run while the app's lifespan does."""
    config = config or ServerConfig()
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.stop()

    app = FastAPI(
        title="Novita-compatible local inpainting API",
        version="3",
        description="A local stand-in for Novita's async inpainting API (see novita_local).",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.local = state
    _install_error_handlers(app)
    app.add_middleware(
        GuardMiddleware,
        max_body_bytes=config.max_body_bytes,
        request_timeout=config.request_timeout,
    )

    @app.post(
        SUBMIT_PATH,
        response_model=None,
        responses={200: {"model": TaskCreated, "description": "Task created"}, **_ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InpaintingBody"}}
                },
            }
        },
    )
    async def submit(request: Request) -> Response:
        """Submit an inpainting task (`{"request": {...}, "extra": {...}}`)."""
        state.authorize(request.headers)
        raw = await request.body()
        parsed, parse_error, digest = await asyncio.to_thread(_parse_and_hash, raw)
        state.stats.submitted(digest)
        fault = state.faults.submit()

        async def drop() -> Response:
            state.stats.fault("submit_drop")
            state.stats.drop()
            await drop_connection(request.scope, request.receive)
            return Response()

        if fault is SubmitFault.DROP and not config.drop_after_create:
            return await drop()
        try:
            _raise_submit_fault(state, fault)
            if parse_error is not None:
                raise parse_error
            body = validate_body(parsed)
            if not config.helpful:
                check_names(body.request)
            images = await asyncio.to_thread(
                decode_pair,
                body.request.image_base64,
                body.request.mask_image_base64,
                max_side=config.side_limit,
            )
            task = state.create_task(body, images, str(request.base_url))
        except ApiError as error:
            state.stats.reject(error.reason)
            if fault is SubmitFault.DROP:
                return await drop()
            raise
        state.stats.accept(digest)
        if fault is SubmitFault.DROP:
            return await drop()
        return JSONResponse({"task_id": task.task_id})

    @app.get(
        TASK_RESULT_PATH,
        response_model=None,
        responses={200: {"description": "The task, its images and extra"}, **_ERRORS},
    )
    async def get_task_result(
        request: Request,
        task_id: str | None = Query(default=None, description="The id from the submit answer"),
    ) -> Response:
        """Poll a task's status and, once it succeeded, its signed image URLs."""
        state.authorize(request.headers)
        state.stats.poll(task_id or "")
        fault = state.faults.poll()
        if fault is PollFault.DROP:
            state.stats.fault("poll_drop")
            await drop_connection(request.scope, request.receive)
            return Response()
        if fault is PollFault.RATE_LIMIT:
            state.stats.fault("poll_429")
            state.stats.limited("injected_poll")
            raise ApiError("RATE_LIMIT_EXCEEDED", "rate limit exceeded (local fault injection)")
        if fault is PollFault.SERVER_ERROR:
            state.stats.fault("poll_500")
            raise ApiError(
                "GET_RESULT_FAILED",
                "failed to get the task result (local fault injection); poll again",
            )
        if not task_id:
            raise ApiError(
                "INVALID_REQUEST_BODY", "task_id is required: /v3/async/task-result?task_id=<id>"
            )
        task = state.store.get(task_id)
        if task is None:
            raise ApiError(
                "TASK_NOT_FOUND",
                f"task {task_id} not found (the local server forgets every task when it "
                "restarts); submit the job again",
            )
        state.store.sweep_expired()
        return JSONResponse(state.poll_body(task))

    @app.get(MODELS_PATH, response_model=None, responses=_ERRORS)
    async def list_models(
        request: Request,
        visibility: str | None = Query(default=None, alias="filter.visibility"),
        source: str | None = Query(default=None, alias="filter.source"),
        types: str | None = Query(default=None, alias="filter.types"),
        is_sdxl: str | None = Query(default=None, alias="filter.is_sdxl"),
        query: str | None = Query(default=None, alias="filter.query"),
        is_inpainting: str | None = Query(default=None, alias="filter.is_inpainting"),
        limit: str | None = Query(default=None, alias="pagination.limit"),
        cursor: str | None = Query(default=None, alias="pagination.cursor"),
    ) -> Response:
        """List the local models (filters and cursor pagination as on Novita)."""
        state.authorize(request.headers)
        return JSONResponse(catalog_list(dict(request.query_params)))

    @app.get("/_local/files/{task_id}/{name}", include_in_schema=False)
    async def download(request: Request, task_id: str, name: str) -> Response:
        params = request.query_params
        refusal = state.signer.check(
            task_id, name, params.get("expires"), params.get("signature"), time.time()
        )
        found = _find_file(state, task_id, name) if refusal is None else None
        if found is None:
            refusal = refusal or Refusal.NOT_FOUND
            state.stats.refuse_download(_REFUSAL_KEYS[refusal])
            return Response(
                refusal.xml(f"/{task_id}/{name}"),
                status_code=refusal.status,
                media_type="application/xml",
            )
        data, image_type = found
        state.stats.download(task_id)
        return Response(data, media_type=media_type(image_type))

    @app.get("/_local/stats", tags=["local"])
    async def stats() -> dict[str, Any]:
        """Counters for tests and benchmarks (not a Novita endpoint)."""
        return state.snapshot()

    @app.post("/_local/restart", include_in_schema=False)
    async def restart() -> dict[str, Any]:
        state.restart()
        return {"restarted": True}

    @app.post("/_local/hold", include_in_schema=False)
    async def hold(held: bool = True) -> dict[str, Any]:
        """Keep queued tasks queued (`?held=false` lets them run again): runs stay in flight."""
        state.pool.hold(held)
        return {"held": held}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _find_file(state: ServerState, task_id: str, name: str) -> tuple[bytes, str] | None:
    """The bytes of result `index.ext` of a task, by store lookup only (no paths involved)."""
    task = state.store.get(task_id)
    index_text, _, ext = name.partition(".")
    if task is None or ext != task.image_type:
        return None
    files = task.files
    if files is None or not (index_text.isascii() and index_text.isdigit()):
        return None
    index = int(index_text)
    if index >= len(files):
        return None
    return files[index], task.image_type


def _parse_and_hash(raw: bytes) -> tuple[Any, ApiError | None, str | None]:
    try:
        parsed = parse_json(raw)
    except ApiError as error:
        return None, error, None
    return parsed, None, content_hash(parsed) if isinstance(parsed, dict) else None


def _raise_submit_fault(state: ServerState, fault: SubmitFault) -> None:
    if fault is SubmitFault.RATE_LIMIT:
        state.stats.fault("submit_429")
        state.stats.limited("injected_submit")
        raise ApiError("RATE_LIMIT_EXCEEDED", "rate limit exceeded (local fault injection)")
    if fault is SubmitFault.SERVER_ERROR:
        state.stats.fault("submit_500")
        raise ApiError(
            "CREATE_TASK_FAILED",
            "failed to create the task (local fault injection); no task was created",
        )
    if fault is SubmitFault.UNAVAILABLE:
        state.stats.fault("submit_503")
        raise ApiError(
            "SERVICE_UNAVAILABLE",
            "service unavailable (local fault injection); no task was created",
        )


def _install_error_handlers(app: FastAPI) -> None:
    Handler = Callable[[Request, Any], Awaitable[Response]]

    async def api_error(_: Request, exc: ApiError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            error = ApiError(
                "API_NOT_FOUND",
                f"no API at {request.method} {request.url.path}; see /docs for this server's API",
            )
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            error = ApiError(
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed on {request.url.path}; use {allowed}",
                headers={"Allow": allowed} if allowed else None,
            )
        elif exc.status_code >= 500:
            error = ApiError(server_error_reason(request.scope), str(exc.detail))
        else:
            error = ApiError("INVALID_REQUEST_BODY", str(exc.detail))
        return await api_error(request, error)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for item in exc.errors()[:5]:
            where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "body"))
            parts.append(f"{where or 'request'}: {item.get('msg', 'invalid')}")
        return await api_error(request, ApiError("INVALID_REQUEST_BODY", "; ".join(parts)))

    async def unexpected(request: Request, exc: Exception) -> Response:
        return await api_error(
            request, ApiError(server_error_reason(request.scope), "internal server error")
        )

    handlers: dict[Any, Handler] = {
        ApiError: api_error,
        StarletteHTTPException: http_error,
        RequestValidationError: validation_error,
        Exception: unexpected,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the body models, without the 422 answers this server never gives."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body_schema = InpaintingBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body_schema.pop("$defs", {}))
    components["InpaintingBody"] = body_schema
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    schema["security"] = [{"bearer": []}, {}]
    schema["info"]["x-task-statuses"] = list(REPORTED_TASK_STATUSES)
    app.openapi_schema = schema
    return schema
