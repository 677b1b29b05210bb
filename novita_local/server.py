"""Run the local server in a background thread: for test fixtures and the CLI's embedded default.

    with LocalServer(ServerConfig(ipm=10)) as server:
        httpx.post(f"{server.base_url}/v3/async/inpainting", json=...)
        server.stats()["submissions"]["accepted"]

The socket is bound before the thread starts, so `port=0` gets a free port with no race and
`base_url` is right as soon as the constructor's `start()` returns. Logging is left as the host
process configured it (uvicorn's dictConfig is not applied), and the access log is off unless
`ServerConfig.access_log`.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from novita_local.app import create_app
from novita_local.config import ServerConfig
from novita_local.connection import DroppableH11Protocol
from novita_local.state import ServerState

_START_TIMEOUT = 15.0


def uvicorn_config(app: Any, config: ServerConfig, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings shared by `LocalServer` and the CLI."""
    settings: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "http": DroppableH11Protocol,
        "lifespan": "on",
        "access_log": config.access_log,
        "log_config": None,
        "timeout_graceful_shutdown": 3,
        "server_header": False,
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


class LocalServer:
    """A Novita-compatible server on 127.0.0.1 (or `config.host`), in a daemon thread."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.app = create_app(self.config)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.local
        return state

    @property
    def base_url(self) -> str:
        """`http://host:port`, no trailing slash; pass it as the client's base URL."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> LocalServer:
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.app, self.config))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"novita-local-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local Novita server did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, end the workers, close the socket; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def stats(self) -> dict[str, Any]:
        """The same counters as `GET /_local/stats`."""
        return self.state.snapshot()

    def hold(self, held: bool = True) -> None:
        """The same as `POST /_local/hold?held=...`: keep queued tasks queued, or let them run."""
        self.state.pool.hold(held)

    def restart(self) -> None:
        """Simulate a crash and restart: every task is lost; polls then get 404 TASK_NOT_FOUND."""
        self.state.restart()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
