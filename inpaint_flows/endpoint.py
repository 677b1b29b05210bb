"""Which API a run talks to: the real Novita API, a given base URL, or the embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from inpaint_flows.secrets import resolve_api_key

NOVITA_BASE_URL = "https://api.novita.ai"


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    local: bool  # True when this process started the local server for the run


@contextmanager
def resolve_endpoint(base_url: str | None, api_key_secret: str | None) -> Iterator[Endpoint]:
    """The endpoint for a run; starts the local server in-process when nothing else is set.

    A given base URL always wins. Without one, a key (env or Secret block) means the real API;
    no key means the bundled Novita-compatible server, for the run's duration.
    """
    if base_url:
        yield Endpoint(base_url.rstrip("/"), local=False)
        return
    if resolve_api_key(api_key_secret) is not None:
        yield Endpoint(NOVITA_BASE_URL, local=False)
        return
    from novita_local.config import ServerConfig
    from novita_local.server import LocalServer

    with LocalServer(ServerConfig()) as server:
        yield Endpoint(server.base_url, local=True)
