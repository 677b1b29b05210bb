"""Hardening: a body size cap answered with a contract error, a time bound per request, and
contract bodies (never FastAPI's or uvicorn's) for unknown routes, wrong methods and crashes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from inpaint_flows.contract import ERROR_BODY_KEYS
from tests.novita_local.helpers import (
    StartServer,
    assert_error,
    http,
    raw_request,
    submit,
    valid_body,
)

CAP = 64 * 1024


def test_body_over_the_cap_is_refused_by_content_length(start_server: StartServer) -> None:
    server = start_server(max_body_bytes=CAP)
    body = valid_body(prompt="p", negative_prompt="n" * 1000)
    body["request"]["image_base64"] = "A" * (CAP * 3)
    with http(server) as client:
        error = assert_error(
            client.post("/v3/async/inpainting", json=body), 400, "IMAGE_FILE_EXCEEDS_MAX_SIZE"
        )
        assert str(CAP) in error["message"]
        # the same connection still serves the next request
        assert client.post("/v3/async/inpainting", json=valid_body()).status_code == 200


def test_streamed_body_over_the_cap_is_refused(start_server: StartServer) -> None:
    server = start_server(max_body_bytes=CAP)
    sent = {"bytes": 0}

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(64):
            sent["bytes"] += 8192
            yield b"A" * 8192

    with http(server) as client:
        response = client.post(
            "/v3/async/inpainting", content=chunks(), headers={"content-type": "application/json"}
        )
    assert_error(response, 400, "IMAGE_FILE_EXCEEDS_MAX_SIZE")


def test_slow_upload_hits_the_time_bound(start_server: StartServer) -> None:
    server = start_server(request_timeout=0.5)
    started = time.monotonic()
    answer = raw_request(
        server,
        b"POST /v3/async/inpainting HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"request": ',
    )
    assert time.monotonic() - started < 3
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    error = json.loads(body)
    assert error["reason"] == "INVALID_REQUEST_BODY"
    assert "not received within" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "reason"),
    [
        pytest.param("GET", "/v3/async/unknown", 404, "API_NOT_FOUND", id="unknown-route"),
        pytest.param("GET", "/", 404, "API_NOT_FOUND", id="root"),
        pytest.param("POST", "/v3/async/txt2img", 404, "API_NOT_FOUND", id="other-novita-api"),
        pytest.param("GET", "/v3/async/inpainting", 405, "METHOD_NOT_ALLOWED", id="get-submit"),
        pytest.param("DELETE", "/v3/async/task-result", 405, "METHOD_NOT_ALLOWED", id="delete"),
    ],
)
def test_routing_errors_have_contract_bodies(
    client: httpx.Client, method: str, path: str, status: int, reason: str
) -> None:
    error = assert_error(client.request(method, path), status, reason)
    assert path in error["message"]


def test_unexpected_exception_gives_a_contract_500(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server()

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(server.state, "result_body", broken)
    with http(server) as client:
        task_id = submit(client)
        response = client.get("/v3/async/task-result", params={"task_id": task_id})
        assert_error(response, 500, "GET_RESULT_FAILED")
        assert "boom" not in response.text  # internals stay in the server log
        # and the next request is served normally
        assert client.get("/v3/model").status_code == 200


def test_wrong_content_type_is_still_parsed_as_json(client: httpx.Client) -> None:
    """Like a tolerant API: the body is JSON whatever the Content-Type says."""
    response = client.post(
        "/v3/async/inpainting",
        content=json.dumps(valid_body()).encode(),
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 200
    assert set(client.post("/v3/async/inpainting", data={"a": "b"}).json()) == ERROR_BODY_KEYS
