"""Local server hardening not covered by `tests/novita_local` (which has the body cap, the slow
upload bound, path traversal, tampered and foreign-key signatures, and schemathesis).

Added here: a slow handler is cut at the per-request bound *without creating a task* (so a
client that retries the 500 cannot pay twice), a signature of one task cannot open another
task's file, hostile JSON and oversized headers get a 4xx and leave the server serving. Two
findings the server does not handle yet are recorded as strict xfails, so fixing them turns
these tests into reminders to drop the marker.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from inpaint_flows.contract import ERROR_BODY_KEYS
from novita_local import app as app_module
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.novita_local.helpers import valid_body
from tests.reliability.helpers import HANG_GUARD_S


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(seed=1)) as running:
        yield running


@pytest.fixture
def bounded_server() -> Iterator[LocalServer]:
    """A server that gives up on a request after 0.5 s (only for the tests of that bound: on a
    busy machine a hostile body's parse can take longer than that)."""
    with LocalServer(ServerConfig(seed=1, request_timeout=0.5)) as running:
        yield running


def contract_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_BODY_KEYS and body["code"] == status
    return body


def wait_done(client: httpx.Client, task_id: str) -> dict[str, Any]:
    for _ in range(200):
        result: dict[str, Any] = client.get(
            "/v3/async/task-result", params={"task_id": task_id}
        ).json()
        if result["task"]["status"] == "TASK_STATUS_SUCCEED":
            return result
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


@pytest.mark.slow
def test_slow_submit_is_cut_at_the_bound_and_creates_no_task(
    bounded_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = bounded_server
    real = app_module.decode_pair
    release, finished = threading.Event(), threading.Event()

    def slow_decode(*args: Any, **kwargs: Any) -> Any:
        # In the server's worker thread (the event loop stays free), until the test lets go.
        release.wait(HANG_GUARD_S)
        try:
            return real(*args, **kwargs)
        finally:
            finished.set()

    monkeypatch.setattr(app_module, "decode_pair", slow_decode)
    with httpx.Client(base_url=server.base_url, timeout=HANG_GUARD_S) as client:
        response = client.post("/v3/async/inpainting", json=valid_body())
        assert not finished.is_set()  # answered while the handler could not have finished
        error = contract_error(response, 500)
        assert error["reason"] == "CREATE_TASK_FAILED"
        assert "did not finish this request within 0.5 s" in error["message"]
        release.set()
        assert finished.wait(HANG_GUARD_S)  # the abandoned decode ends; still no task may appear
        stats = server.stats()
        assert stats["submissions"]["accepted"] == 0
        assert stats["tasks"]["total"] == 0
        monkeypatch.setattr(app_module, "decode_pair", real)
        assert client.post("/v3/async/inpainting", json=valid_body()).status_code == 200


def test_one_tasks_signature_does_not_open_another_task(server: LocalServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        first, second = (
            client.post("/v3/async/inpainting", json=valid_body(seed=s)).json()["task_id"]
            for s in (1, 2)
        )
        url = wait_done(client, first)["images"][0]["image_url"]
        wait_done(client, second)
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        swapped = parts.path.replace(first, second)
        response = client.get(
            f"{swapped}?expires={query['expires'][0]}&signature={query['signature'][0]}"
        )
        assert response.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text
        assert client.get(url).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"request": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-nesting"),
        pytest.param(b'{"request": {"steps": 1' + b"0" * 5000 + b"}}", id="5000-digit-number"),
        pytest.param(b'{"request": {"steps": NaN, "guidance_scale": Infinity}}', id="nan"),
        pytest.param(b'\xff\xfe{"request": {}}', id="not-utf8"),
        pytest.param(b'{"request": {}, "request": []}', id="duplicate-key"),
    ],
)
def test_hostile_json_gets_a_contract_400_and_no_task(server: LocalServer, body: bytes) -> None:
    with httpx.Client(base_url=server.base_url, timeout=20) as client:
        error = contract_error(client.post("/v3/async/inpainting", content=body), 400)
        assert error["reason"] == "INVALID_REQUEST_BODY"
        assert client.get("/v3/model").status_code == 200
    assert server.stats()["submissions"]["accepted"] == 0


def test_lone_surrogate_in_a_string_gets_a_400(server: LocalServer) -> None:
    body = b'{"request": {"prompt": "caf\\ud800"}}'
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        contract_error(client.post("/v3/async/inpainting", content=body), 400)


def test_oversized_header_is_refused_and_the_server_keeps_serving(server: LocalServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /v3/model HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
        answer = sock.recv(200)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431"))
    assert httpx.get(f"{server.base_url}/v3/model", timeout=5).status_code == 200


@pytest.mark.xfail(
    strict=True,
    reason="server finding: request_timeout starts once the headers are read, so a client that "
    "never finishes its headers (slow loris) holds a connection with no time bound",
)
def test_unfinished_headers_are_dropped_within_the_bound(bounded_server: LocalServer) -> None:
    with socket.create_connection(("127.0.0.1", bounded_server.port), timeout=3) as sock:
        sock.sendall(b"GET /v3/model HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        started = time.monotonic()
        try:
            sock.recv(1000)  # an answer or a close, either ends the wait
        except TimeoutError:
            pytest.fail("the connection was still held after 3 s (bound: 0.5 s)")
        assert time.monotonic() - started < 3
