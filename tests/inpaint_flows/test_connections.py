"""The client's transport: httpx's, whose idle connections answer "closed by the server?" from
the socket they keep (`inpaint_flows.connections`)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx

from inpaint_flows.client import NovitaClient
from inpaint_flows.connections import ApiTransport, CheapIdleCheck, is_readable


async def _until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def test_readable_only_when_the_peer_sent_or_closed() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not is_readable(ours)
        theirs.sendall(b"x")
        assert is_readable(ours)
        ours.recv(1)
        assert not is_readable(ours)
        theirs.close()
        assert is_readable(ours)  # a read would return b"": the server hung up
    assert is_readable(ours)  # closed here too: never reused
    assert is_readable(None)


def test_the_client_uses_the_cheap_check() -> None:
    """Fails if an httpx or httpcore upgrade moves what `ApiTransport` wraps."""
    client = NovitaClient(None, "http://127.0.0.1:9", connections=4)
    transport = client._http._transport
    assert isinstance(transport, ApiTransport)
    assert transport.uses_cheap_idle_check


class _OneAnswerServer:
    """Answers one request per connection, then closes it without saying so (no
    `Connection: close`), as a server whose keep-alive timeout ran out does."""

    def __init__(self) -> None:
        self.connections = 0
        self.hung_up = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.hung_up.set()


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    state = _OneAnswerServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with (
        server,
        httpx.AsyncClient(transport=ApiTransport(limits=limits), base_url=url) as client,
    ):
        first = await client.get("/a")
        assert first.json() == {}
        await state.hung_up.wait()
        stream = first.extensions["network_stream"]
        assert isinstance(stream, CheapIdleCheck)
        await _until(lambda: stream.get_extra_info("is_readable"))  # the FIN has arrived
        # The kept connection is closed at the server's end: the check sees it, so the next
        # request opens a new one instead of failing on the dead one.
        assert (await client.get("/b")).json() == {}
    assert state.connections == 2


async def test_a_kept_connection_is_reused() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with (
        server,
        httpx.AsyncClient(
            transport=ApiTransport(limits=limits), base_url=f"http://127.0.0.1:{port}"
        ) as client,
    ):
        for path in ("/a", "/b", "/c"):
            assert (await client.get(path)).json() == {}
    assert connections == 1
