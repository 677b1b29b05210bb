"""A misbehaving HTTP proxy in front of the local server, for faults the server has no knob for.

The local server's `latency` is processing time: its HTTP answers are always quick. A real API
(or the network to it) is sometimes slow to *answer*, past the client's read timeout. This proxy
forwards every request to the server and, for a seeded share of them, holds the answer back for
`delay` seconds. The upstream request has completed by then: a submit held back created its task,
exactly the case where the client must not assume nothing was paid.

It can also play a broken gateway that quotes the request's Authorization header back in an error
body (`echo_auth_rate`), to prove the client scrubs the key from what it records.

Result URLs point at the proxy too: the request's Host header is passed on, and the server builds
URLs from the address the client used.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter
from types import TracebackType
from typing import Any

import httpx
import uvicorn

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def route_kind(method: str, path: str) -> str:
    if method == "POST" and path.endswith("/v3/async/inpainting"):
        return "submit"
    if path.endswith("/v3/async/task-result"):
        return "poll"
    if "/_local/files/" in path:
        return "download"
    return "other"


class MisbehavingProxy:
    """An ASGI proxy on 127.0.0.1 in a daemon thread; `base_url` is what clients use."""

    def __init__(
        self,
        upstream: str,
        *,
        delay: float = 0.0,
        slow_rates: dict[str, float] | None = None,
        echo_auth_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = delay
        self.slow_rates = slow_rates or {}
        self.echo_auth_rate = echo_auth_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.slowed: Counter[str] = Counter()
        self.echoed = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _draw(self) -> float:
        with self._lock:
            return self._random.random()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        kind = route_kind(method, path)
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _HOP_BY_HOP
        }
        if kind != "other" and self._draw() < self.echo_auth_rate:
            self.echoed += 1
            said = headers.get("authorization", "(none)")
            payload = {
                "code": 502,
                "reason": "BAD_GATEWAY",
                "message": f"gateway could not forward request with Authorization: {said}",
                "metadata": {"authorization": said},
            }
            await _respond(send, 502, json.dumps(payload).encode(), "application/json")
            return
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{self.upstream}{path}" + (f"?{query}" if query else "")
        headers["host"] = f"127.0.0.1:{self.port}"
        async with httpx.AsyncClient(timeout=60) as client:
            upstream = await client.request(method, url, content=body, headers=headers)
        slow = kind in self.slow_rates and self._draw() < self.slow_rates[kind]
        if slow:
            with self._lock:
                self.slowed[kind] += 1
            await asyncio.sleep(self.delay)
        await _respond(
            send,
            upstream.status_code,
            upstream.content,
            upstream.headers.get("content-type", "application/octet-stream"),
        )

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> MisbehavingProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self, lifespan="on", access_log=False, log_config=None, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> MisbehavingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _respond(send: Any, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode("latin-1")),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
