"""A fresh copy of the repository deploys anywhere; `inpaint-flows serve` runs without a pool.

These get their own Prefect server (serve first, on a server that never saw a deploy): both
register the deployment names the other tests here need in their work-pool versions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novita_local.server import LocalServer
from tests.deployments.nightly_story import NIGHTLY, RERUN_FAILED, create_run
from tests.deployments.prefect_server import (
    FINAL_STATES,
    INPAINT_FLOWS,
    POOL,
    REPO,
    PrefectServer,
    running_server,
    wait_for,
)
from tests.flows.rerun_scenarios import copy_examples, read_report

pytestmark = [pytest.mark.server, pytest.mark.slow]

STOP_TIMEOUT_S = 60.0
# A background job of a non-interactive shell inherits SIGINT as ignored, and so does all it
# starts: a CI job launched that way once made the Ctrl-C below a no-op (serve was killed after
# the timeout and stayed unpaused). Serve starts that way here, so the test does not depend on
# how pytest itself was launched, and Ctrl-C must work even then.
SIGINT_IGNORED = ("/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh")


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server


def test_serve_runs_the_nightly_deployment_without_a_work_pool(
    own_server: PrefectServer, tmp_path: Path
) -> None:
    src = copy_examples(tmp_path / "in")
    out = tmp_path / "out"
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [
            *SIGINT_IGNORED,
            *(INPAINT_FLOWS, "serve", "--source", str(src), "--out", str(out)),
            *("--cron", "15 3 * * *", "--timezone", "UTC", "--api-key-secret", ""),
        ],
        env=own_server.env(PREFECT_RUNNER_POLL_FREQUENCY="1"),
        cwd=tmp_path,  # not the repository: module entrypoints work from anywhere
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stopped_by_ctrl_c = False
    try:
        dep = wait_for("the served deployment", lambda: _nightly(own_server))
        assert dep["work_pool_name"] is None  # nothing but this process will run it
        assert dep["parameters"]["settings"]["source"] == str(src)
        assert dep["parameters"]["settings"]["api_key_secret"] is None
        (schedule,) = dep["schedules"]
        assert schedule["schedule"]["cron"] == "15 3 * * *"
        assert schedule["schedule"]["timezone"] == "UTC"

        with LocalServer() as api:
            settings = {
                **dep["parameters"]["settings"],
                "base_url": api.base_url,
                "images_per_minute": None,
                "defaults": {"steps": 1},
            }
            run_id = create_run(own_server, NIGHTLY, {"settings": settings})
            state = wait_for(
                "the served run to finish",
                lambda: _final_state(own_server, run_id),
            )
        assert state == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        assert set(read_report(out)["status"]) == {"succeeded"}
    finally:
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C: serve pauses its deployments and exits
        try:
            serve.wait(timeout=STOP_TIMEOUT_S)
            stopped_by_ctrl_c = True
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        log.close()
    served = (tmp_path / "serve.log").read_text()[-3000:]
    assert stopped_by_ctrl_c, f"serve still ran {STOP_TIMEOUT_S:.0f} s after SIGINT:\n{served}"
    assert serve.returncode == 0, served
    # serve pauses before it exits, so the server already has it.
    stopped = _nightly(own_server)
    assert stopped is not None and stopped["paused"] is True, f"not paused by Ctrl-C:\n{served}"


def test_deploy_all_from_a_fresh_copy_points_workers_at_that_copy(
    own_server: PrefectServer, tmp_path: Path
) -> None:
    """No path to edit by hand: the pull step is wherever `prefect deploy` ran."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: cannot list the files a clone would have")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    clone = tmp_path / "fresh clone"
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)

    own_server.prefect("work-pool", "create", POOL, "--type", "process")
    own_server.prefect("deploy", "--all", "--prefect-file", "deployments/prefect.yaml", cwd=clone)

    for name in (NIGHTLY, RERUN_FAILED):
        dep = own_server.api("GET", f"/deployments/name/{name}")
        assert dep["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(clone)}}
        ]
        assert dep["work_pool_name"] == POOL


def _nightly(server: PrefectServer) -> dict[str, Any] | None:
    try:
        dep: dict[str, Any] = server.api("GET", f"/deployments/name/{NIGHTLY}")
    except Exception:
        return None
    return dep


def _final_state(server: PrefectServer, run_id: Any) -> str | None:
    state = server.api("GET", f"/flow_runs/{run_id}")["state"]
    return str(state["type"]) if state and state["type"] in FINAL_STATES else None
