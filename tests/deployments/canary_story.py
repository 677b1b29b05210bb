"""A nightly deployment run with `canary=3`, paused on a real Prefect server by a process worker
(shared by tests/deployments/test_canary.py and tests/browser/test_canary_form.py).

The worker runs in the background (`--run-once`: it exits when its run has ended), so the test
can look at the paused run, answer it through the API, and then wait for the worker.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from novita_local.server import LocalServer
from tests.deployments.nightly_story import NIGHTLY, create_run
from tests.deployments.prefect_server import (
    FINAL_STATES as FINAL,
)
from tests.deployments.prefect_server import (
    POOL,
    PREFECT,
    REPO,
    PrefectServer,
    wait_for,
)
from tests.flows.canary_support import write_batch


@dataclass
class PausedCanary:
    server: PrefectServer
    api: LocalServer
    run_id: UUID
    out: Path
    worker: subprocess.Popen[bytes]
    log: Path

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.server.api("GET", f"/flow_runs/{self.run_id}")["state"]
        return state

    def artifact_keys(self) -> set[str]:
        found = self.server.api(
            "POST",
            "/artifacts/filter",
            {"artifacts": {"flow_run_id": {"any_": [str(self.run_id)]}}},
        )
        return {a["key"] for a in found if a["key"]}

    def resume(self, run_input: dict[str, Any]) -> None:
        """What the dashboard's form sends when Resume is pressed."""

        async def send() -> Any:
            async with self.server.client() as client:
                return await client.resume_flow_run(self.run_id, run_input=run_input)

        result = asyncio.run(send())
        assert result.status.value == "ACCEPT", result

    def finish(self, timeout: float = 300.0) -> dict[str, Any]:
        """Wait for the worker to end with the run; the run's final state."""
        try:
            self.worker.wait(timeout=timeout)
        finally:
            if self.worker.poll() is None:
                self.worker.kill()
                self.worker.wait()
        state = self.state()
        assert state["type"] in FINAL, (state, self.log.read_text()[-3000:])
        return state

    def close(self) -> None:
        if self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()


def start_paused_canary(
    server: PrefectServer, api: LocalServer, root: Path, batch_name: str
) -> PausedCanary:
    """Create the run, start a worker, return once the run is Paused after its canary."""
    server.deploy()
    manifest = write_batch(root / "in")
    out = root / "out"
    settings = {
        "source": str(manifest),
        "out": str(out),
        "batch_name": batch_name,
        "base_url": api.base_url,
        "api_key_secret": None,
        "images_per_minute": None,
        "defaults": {"steps": 1},
        "canary": 3,
        "canary_timeout_s": 300.0,
    }
    run_id = create_run(server, NIGHTLY, {"settings": settings})
    log = root / "worker.log"
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [PREFECT, "--no-prompt", "worker", "start", "--pool", POOL, "--run-once"],
            env=server.env(),
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    paused = PausedCanary(server, api, run_id, out, worker, log)
    try:
        wait_for(
            "the run to pause after its canary",
            lambda: _paused_or_failed(paused),
        )
    except BaseException:
        paused.close()
        raise
    return paused


def _paused_or_failed(run: PausedCanary) -> bool:
    state = run.state()
    if state and state["type"] in FINAL:
        raise AssertionError(
            f"the run ended before pausing: {state}\n{run.log.read_text()[-3000:]}"
        )
    return bool(state and state["type"] == "PAUSED")
