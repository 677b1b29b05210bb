"""`extra.webhook`: a finished task is POSTed to the URL, retried on a non-2xx answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from novita_local.server import LocalServer
from tests.novita_local.helpers import StartServer, http, submit, valid_body

DELIVERED_ONCE = {"delivered": 1, "failed": 0}


class Receiver:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.calls.append(json.loads(self.rfile.read(length)))
                status = 500 if len(receiver.calls) <= receiver.failures else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            assert time.monotonic() < deadline, f"got {len(self.calls)} webhook calls"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    hook = Receiver(failures=getattr(request, "param", 0))
    yield hook
    hook.close()


def _webhook_counts(
    server: LocalServer, expected: dict[str, int], timeout: float = 10.0
) -> dict[str, int]:
    """The server's webhook counters once they equal `expected` (or as they are at the timeout).

    The receiver has the call before the server counts it as delivered: wait on the count.
    """
    deadline = time.monotonic() + timeout
    counts: dict[str, int]
    while (counts := server.stats()["webhooks"]) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return counts


def _submit_with_hook(start_server: StartServer, url: str) -> tuple[Any, str]:
    server = start_server()
    body = valid_body()
    body["extra"] = {"webhook": {"url": url}}
    with http(server) as client:
        return server, submit(client, body)


def test_webhook_receives_the_task_result(start_server: StartServer, receiver: Receiver) -> None:
    server, task_id = _submit_with_hook(start_server, receiver.url)
    receiver.wait(1)
    event = receiver.calls[0]
    assert event["event_type"] == "ASYNC_TASK_RESULT"
    assert event["payload"]["task"]["task_id"] == task_id
    assert event["payload"]["task"]["status"] == "TASK_STATUS_SUCCEED"
    assert len(event["payload"]["images"]) == 1
    assert _webhook_counts(server, DELIVERED_ONCE) == DELIVERED_ONCE


@pytest.mark.parametrize("receiver", [1], indirect=True)
def test_webhook_is_retried_after_a_failure(start_server: StartServer, receiver: Receiver) -> None:
    server, _ = _submit_with_hook(start_server, receiver.url)
    receiver.wait(2)
    assert _webhook_counts(server, DELIVERED_ONCE) == DELIVERED_ONCE
