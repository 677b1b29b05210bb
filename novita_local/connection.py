"""Dropping a connection for real: the client gets no HTTP response at all, only a closed socket.

ASGI gives an application no way to close its connection: uvicorn answers 500 when an app returns
or raises without responding. So the local server runs uvicorn with `DroppableH11Protocol`, which
hands each request's transport to the app in `scope["extensions"]`, and `drop_connection` aborts
it. The client then sees `httpx.RemoteProtocolError` ("Server disconnected without sending a
response") or a read error, as it would if a load balancer or the server process died mid-request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

TRANSPORT_EXTENSION = "novita_local.transport"


class DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, exposing the transport to the app so it can drop the connection."""

    def handle_events(self) -> None:
        super().handle_events()
        # A request cycle created just now has not started running yet (it is a scheduled task),
        # so its scope can still be extended before the app sees it.
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})
            extensions[TRANSPORT_EXTENSION] = self.transport


def can_drop(scope: Mapping[str, Any]) -> bool:
    return TRANSPORT_EXTENSION in (scope.get("extensions") or {})


async def drop_connection(scope: Mapping[str, Any], receive: Any) -> None:
    """Abort the socket without a response and wait until uvicorn has noticed.

    Afterwards uvicorn ignores anything the app sends, so the caller may return any response.
    """
    transport: asyncio.Transport | None = (scope.get("extensions") or {}).get(TRANSPORT_EXTENSION)
    if transport is None:
        raise RuntimeError(
            "dropping a connection needs novita_local's uvicorn protocol (LocalServer or the CLI)"
        )
    transport.abort()
    for _ in range(100):  # connection_lost runs on the next loop iteration
        message = await asyncio.wait_for(receive(), timeout=1.0)
        if message["type"] == "http.disconnect":
            return
