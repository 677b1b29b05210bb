"""Prefect's temporary server for a command run with no Prefect API configured, started early.

With no `PREFECT_API_URL`, Prefect starts a temporary server the first time a flow talks to its
API: it imports the whole server (FastAPI, SQLAlchemy, every model) into this process, only to
launch it as a child process, then waits for it. Measured on the 2-core machine: that import
alone is ~75 MB of this process's peak memory and seconds of CPU on the path to the first
submit. The CLI instead launches that same child itself (the command Prefect runs), before it
imports the flow, so the server boots while the flow's modules load, and this process never
imports the server. The flow then runs with `PREFECT_API_URL` pointing at it.

The child is stopped at exit, after Prefect's own exit handlers have sent the last logs and
events to it (exit handlers run last-registered first, and this one is registered before
Prefect is imported), exactly as Prefect stops its own.

A Prefect profile can set an API URL or turn the temporary server off without the environment
saying so; that is only known once Prefect's settings are loaded, so `TemporaryApi.serving` then
stops the child unused and lets Prefect's settings decide.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# Prefect gives its temporary server 20 s. A busy 2-core machine took 21-33 s to boot it (a
# batch failed before its first image over that); the wait stops at once if the server exits,
# so only a hung server waits this long. A value set in the environment is used as it is.
MIN_STARTUP_TIMEOUT_S = 120.0
_PORT_IN_USE = 3  # uvicorn's exit code when it cannot bind
_STOP_TIMEOUT_S = 5.0  # as Prefect waits for its own
# Between readiness probes: each is one refused or answered local connection; the first
# submit waits for the answer, so this pause (was 0.1 s) is what the start can lose.
_POLL_S = 0.02

# Prefect settings for this command's own server, unless the environment sets them. They skip
# start-up work a server that lives for one command does not need: measured as CPU seconds of
# its boot on the 2-core machine, 7.0-7.8 s with Prefect's defaults, 5.0-5.2 s with these.
# - Block types are registered by the code that saves a block (and by `prefect server start`);
#   registering, or even hashing, every installed collection's at each start imports them all
#   (prefect-aws: boto3). The memo is off too: its check is that same import.
# - Automations (the triggers and actions services) need a server that outlives the command.
# This machine may be offline: no telemetry attempts (each one logs an error line). The CLI's
# own process takes it too (`cli.app`), for a server Prefect would start itself.
ANALYTICS_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
_BLOCK_DEFAULTS = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
}
_SERVER_DEFAULTS = {**ANALYTICS_OFF, "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false"}
# Other names of the registration setting: one set by the user keeps Prefect's memo as well.
_REGISTER_ALIASES = (
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START",
    "PREFECT_API_BLOCKS_REGISTER_ON_START",
)


@dataclass
class TemporaryApi:
    """A Prefect API server child process this command started for itself."""

    port: int
    process: subprocess.Popen[bytes] | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @contextlib.contextmanager
    def serving(self) -> Iterator[str | None]:
        """While the server answers, Prefect's API URL is it; yields the URL, or None when
        Prefect's own settings name an API (or refuse a temporary one): then it is stopped."""
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_UI_URL,
            get_current_settings,
            temporary_settings,
        )

        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:
            self.stop()
            yield None
            return
        with contextlib.suppress(ImportError):
            # What creating the flow run imports first (Prefect encodes the parameters with
            # FastAPI's encoder, ~0.3 s): imported while the server still boots, not after.
            import fastapi.encoders  # noqa: F401
        self.wait_ready(startup_timeout(settings.server.ephemeral.startup_timeout_seconds))
        # No dashboard link: like Prefect's own temporary server, this one serves no UI.
        with temporary_settings(updates={PREFECT_API_URL: self.url, PREFECT_UI_URL: ""}):
            yield self.url

    def wait_ready(self, timeout: float) -> None:
        """Until `/health` answers; a port taken meanwhile gets one more try on another."""
        # Imported here, not with this module: `cli.main` imports this module before it
        # launches the server, and httpx's import (~0.13 s) would delay that launch.
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process is None:
                    raise RuntimeError("the temporary Prefect server was stopped")
                code = self.process.poll()
                if code == _PORT_IN_USE:
                    self.port = _free_port()
                    self.process = _launch(self.port)
                    continue
                if code is not None:
                    raise RuntimeError(
                        f"the temporary Prefect server exited with code {code} before it "
                        f"answered; set PREFECT_API_URL to use a running Prefect server instead."
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                time.sleep(_POLL_S)
        self.stop()
        raise RuntimeError(
            f"the temporary Prefect server did not answer within {timeout:.0f} s "
            f"({STARTUP_TIMEOUT_ENV}); set PREFECT_API_URL to use a running Prefect server."
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_temporary_api() -> TemporaryApi | None:
    """Launch Prefect's temporary server now, unless the environment names a Prefect API.

    Call before importing Prefect; the server boots in its own process meanwhile.
    """
    if os.environ.get("PREFECT_API_URL", "").strip():
        return None
    port = _free_port()
    api = TemporaryApi(port=port, process=_launch(port))
    atexit.register(api.stop)
    return api


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(port: int) -> subprocess.Popen[bytes]:
    """The command and environment Prefect's `SubprocessASGIServer` uses for its own."""
    spec = importlib.util.find_spec("prefect")
    assert spec is not None and spec.submodule_search_locations, "prefect is not installed"
    app_dir = Path(next(iter(spec.submodule_search_locations))).parent
    env = {
        **server_defaults(os.environ),
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    return subprocess.Popen(
        [
            sys.executable,
            *("-m", "uvicorn", "--app-dir", str(app_dir)),
            *("--factory", "prefect.server.api.server:create_app"),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--log-level", "error", "--lifespan", "on"),
        ],
        env=env,
    )


def server_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The defaults, without the block settings when `environ` asks about registration."""
    if any(name in environ for name in _REGISTER_ALIASES):
        return dict(_SERVER_DEFAULTS)
    return {**_SERVER_DEFAULTS, **_BLOCK_DEFAULTS}


def startup_timeout(configured: float, environ: Mapping[str, str] = os.environ) -> float:
    """Seconds to wait for the server: `configured` when the environment sets it, else at
    least `MIN_STARTUP_TIMEOUT_S`."""
    if environ.get(STARTUP_TIMEOUT_ENV, "").strip():
        return float(configured)
    return max(float(configured), MIN_STARTUP_TIMEOUT_S)
