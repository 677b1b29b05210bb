"""The client's connections to the API: httpx's transport, with a cheaper idle-connection check.

Before it sends a request, and again when a response is closed, httpcore's connection pool asks
every idle connection whether the server has closed it ("is the socket readable?"). Its anyio
stream answers by building the dict of all its socket's attributes (a `getpeername` call and
enum conversions included) to pick the raw socket out of it: measured on an 800-job batch with
50 in flight, those checks held the GIL ~5 s of the ~26 s the client spent in httpx and
httpcore (upstream: encode/httpcore#928). `ApiTransport` is httpx's own transport whose
connections keep their raw socket from the start and answer that one question from it, with
the same test httpcore makes (a zero-timeout poll); every other question, read, write and
close goes to httpcore's stream unchanged.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["ApiTransport", "CheapIdleCheck", "is_readable"]


def is_readable(sock: socket.socket | None) -> bool:
    """Whether a read on `sock` would return at once: for an idle keep-alive connection, that
    the server closed it (or sent what it should not have). A closed socket counts as
    readable, as in httpcore."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # pragma: no cover - Windows
    return bool(readable)


class CheapIdleCheck(httpcore.AsyncNetworkStream):
    """One connection's stream: httpcore's own, with the socket kept for `is_readable`."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> CheapIdleCheck:
        return CheapIdleCheck(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return is_readable(self._socket)
        return self._stream.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend, whose streams are wrapped in `CheapIdleCheck`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return CheapIdleCheck(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:  # pragma: no cover - the client never uses a socket file
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return CheapIdleCheck(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class ApiTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (same TLS settings, limits, environment), whose connections answer
    httpcore's idle check cheaply (`CheapIdleCheck`).

    httpx gives no public way to choose httpcore's network backend, so the one its pool was
    built with is wrapped in place; `uses_cheap_idle_check` says whether it took (the tests
    fail if an httpx or httpcore upgrade moves what this relies on).
    """

    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        pool = self._pool
        if isinstance(pool, httpcore.AsyncConnectionPool):
            backend = getattr(pool, "_network_backend", None)
            if isinstance(backend, httpcore.AsyncNetworkBackend):
                pool._network_backend = _Backend(backend)

    @property
    def uses_cheap_idle_check(self) -> bool:
        return isinstance(getattr(self._pool, "_network_backend", None), _Backend)
