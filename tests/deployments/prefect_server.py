"""A real `prefect server start` for tests: its own PREFECT_HOME, a free port, the CLI around it.

Everything that talks to this server does so explicitly: subprocesses get `env()`, and the test
process uses `client()` (a `PrefectClient` bound to this URL). The session's
`prefect_test_harness` (tests/conftest.py) points this process's *settings* at another, temporary
API; nothing here reads those settings, so the two never mix.

`shared_server()` hands every test module of a session the same server (it takes ~6 s to start):
fixtures in tests/deployments/ and tests/browser/ enter it, the last one out stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
INPAINT_FLOWS = str(BIN / "inpaint-flows")
POOL = "inpaint-pool"
START_TIMEOUT_S = 90.0
API_ATTEMPTS = 6
RETRY_STATUSES = {429, 502, 503}
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}  # a flow run that has ended


def wait_for(what: str, check: Any, timeout: float = 180.0) -> Any:
    """`check()`'s first truthy value, polled every 0.5 s (a condition, not a fixed wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment minus every PREFECT_* setting and the Novita key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k != "NOVITA_API_KEY"
    }
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.update(extra)
    return env


@dataclass
class PrefectServer:
    home: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    deployed: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    resources: ExitStack = field(default_factory=ExitStack)  # closed before the server stops
    # The server's database: PostgreSQL (postgresql+asyncpg://...) when given, else SQLite in home.
    database_url: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def env(self, **extra: str) -> dict[str, str]:
        if self.database_url:
            extra = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": self.database_url, **extra}
        return clean_env(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url, **extra)

    # -- processes ------------------------------------------------------------------------
    def start(self) -> PrefectServer:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env(),
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends uvicorn too
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"prefect server did not answer /api/health in {START_TIMEOUT_S} s")

    def stop(self) -> None:
        self.resources.close()
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def run(
        self, *args: str, timeout: float = 300, check: bool = True, cwd: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (e.g. PREFECT, ...) against this server, from the repository root."""
        result = subprocess.run(
            list(args),
            env=self.env(),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
            )
        return result

    def prefect(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(PREFECT, "--no-prompt", *args, **kw)

    def worker_run_once(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """One process worker pass: it runs every flow run due in the pool, then exits."""
        return self.prefect("worker", "start", "--pool", POOL, "--run-once", timeout=timeout)

    def deploy(self) -> None:
        """What README tells a user to do against a fresh server, from the repo root."""
        if self.deployed:
            return
        self.prefect("work-pool", "create", POOL, "--type", "process")
        self.prefect("deploy", "--all", "--prefect-file", str(PREFECT_FILE.relative_to(REPO)))
        self.deployed = True

    # -- API ------------------------------------------------------------------------------
    def client(self) -> Any:
        from prefect.client.orchestration import PrefectClient

        return PrefectClient(api=self.api_url)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call, retried on 429/502/503 as Prefect's own client does.

        A busy SQLite server answers 503 while the database is locked (seen in CI while a
        `serve` process and a flow run wrote at once); the UI and `PrefectClient` retry it.
        """
        for attempt in range(API_ATTEMPTS):
            response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
            if response.status_code not in RETRY_STATUSES or attempt == API_ATTEMPTS - 1:
                break
            time.sleep(0.5 * 2**attempt)
        response.raise_for_status()
        return response.json() if response.content else None


def params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, separators=(",", ":"))


@contextmanager
def running_server(home: Path) -> Iterator[PrefectServer]:
    server = PrefectServer(home=home, port=free_port()).start()
    try:
        yield server
    finally:
        server.stop()


_shared: PrefectServer | None = None
_users = 0


@contextmanager
def shared_server(home: Path, database_url: str | None = None) -> Iterator[PrefectServer]:
    """One server for every module of the session that enters this; `home` and `database_url`
    are used once."""
    global _shared, _users
    if _shared is None:
        _shared = PrefectServer(home=home, port=free_port(), database_url=database_url).start()
    _users += 1
    try:
        yield _shared
    finally:
        _users -= 1
        if _users == 0 and _shared is not None:
            _shared.stop()
            _shared = None
