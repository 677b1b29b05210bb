"""Which API a run talks to: Novita, a given base URL, or (only when asked) the local server.

Local mode is explicit: `base_url="local"` starts the bundled Novita-compatible server for the
run. A run with no key and no base URL is an error, not a silent switch to OpenCV output: a
deployment whose key went missing must fail, not "succeed" every night with local results. (The
command line, run by a person who sees what it says, asks for local mode itself when there is
no key.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from inpaint_flows.client import DEFAULT_BASE_URL as NOVITA_BASE_URL
from inpaint_flows.errors import ConfigError
from inpaint_flows.secrets import ENV_VAR, resolve_api_key


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str | None
    local: bool  # True when this process started the local server for the run

    @property
    def label(self) -> str:
        """Which API produced the results, for the report, summary and gallery."""
        if self.local:
            return f"local server (OpenCV, no diffusion model) {self.base_url}"
        if self.base_url == NOVITA_BASE_URL:
            return f"Novita {self.base_url}"
        return self.base_url


@asynccontextmanager
async def resolve_endpoint(
    base_url: str | None, api_key_secret: str | None
) -> AsyncIterator[Endpoint]:
    """The endpoint for a run, and its key (read now, at call time, never stored).

    `base_url`: a URL, "local" for the bundled server (started for the run's duration), or
    None for Novita, which needs a key.
    """
    key = await resolve_api_key(api_key_secret)
    if base_url and base_url.strip().lower() == "local":
        try:  # the one place the core starts it
            from novita_local.config import ServerConfig
            from novita_local.server import LocalServer
        except ImportError as exc:
            raise ConfigError(
                f"base_url 'local' needs the bundled server's packages ({exc.name} is missing): "
                "pip install 'inpaint-flows[local]'."
            ) from None

        with LocalServer(ServerConfig()) as server:
            yield Endpoint(server.base_url, api_key=None, local=True)
        return
    if base_url:
        yield Endpoint(base_url.strip().rstrip("/"), api_key=key, local=False)
        return
    if key is None:
        raise ConfigError(
            f"No API key: set {ENV_VAR} (or name a Prefect Secret block with api_key_secret) "
            "to use Novita, or set base_url to 'local' to run against the bundled local server "
            "(OpenCV inpainting, no diffusion model). Nothing was sent.",
            reason="MISSING_API_KEY",
        )
    yield Endpoint(NOVITA_BASE_URL, api_key=key, local=False)
