"""A worker's machine dies mid-batch: the shipped automation marks the run Crashed when its
heartbeats stop, and a rerun finishes the batch without paying again for submitted tasks."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy
import sqlalchemy.exc

from inpaint_flows.ledger import jobs
from inpaint_flows.output_folder import STATE_DIR
from inpaint_flows.store_location import SQLITE_FILE
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import report_rows
from tests.deployments.account_story import ON_DEMAND, distinct_batch
from tests.deployments.nightly_story import create_run
from tests.deployments.prefect_server import (
    FINAL_STATES,
    INPAINT_FLOWS,
    POOL,
    PREFECT,
    REPO,
    PrefectServer,
    wait_for,
)
from tests.flows.helpers import job_counts

pytestmark = [pytest.mark.server, pytest.mark.slow]
JOBS = 3
WITHIN_S = 40  # the shipped 90 s, shortened for the test (heartbeats every 30 s)
CRASH_AUTOMATION = "inpaint-run-unresponsive"


def _state(server: PrefectServer, run_id: Any) -> dict[str, Any]:
    state: dict[str, Any] = server.api("GET", f"/flow_runs/{run_id}")["state"] or {}
    return state


def _kill_machine(worker: subprocess.Popen[bytes]) -> None:
    """What a dead machine does to a worker and the flow run it started: SIGKILL, no goodbye."""
    family = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    for proc in family:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=30)


@pytest.fixture
def crash_detection(prefect_server: PrefectServer) -> Iterator[None]:
    """The shipped automation, with a short wait; removed after the test, so that runs of other
    tests on this shared server (slow under load) are never marked Crashed by it."""
    prefect_server.run(INPAINT_FLOWS, "crash-detection", "--within", str(WITHIN_S))
    yield
    body = {"automations": {"name": {"any_": [CRASH_AUTOMATION]}}}
    for automation in prefect_server.api("POST", "/automations/filter", body):
        prefect_server.api("DELETE", f"/automations/{automation['id']}")


def recorded_task_ids(out: Path) -> int:
    """How many jobs the run's store records as submitted with their task id."""
    store = out / STATE_DIR / SQLITE_FILE
    if not store.is_file():
        return 0
    engine = sqlalchemy.create_engine(f"sqlite:///file:{store}?mode=ro&uri=true")
    query = sqlalchemy.select(sqlalchemy.func.count()).where(
        jobs.c.state == "submitted", jobs.c.task_id.is_not(None)
    )
    try:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    except sqlalchemy.exc.OperationalError:  # its tables are not made yet
        return 0
    finally:
        engine.dispose()


@pytest.mark.usefixtures("crash_detection")
def test_a_dead_worker_run_is_marked_crashed_and_a_rerun_pays_nothing_twice(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    prefect_server.deploy()
    with LocalServer(ServerConfig(latency=0.2)) as api:
        settings = {
            "source": str(distinct_batch(tmp_path / "in", JOBS, salt=77)),
            "out": str(tmp_path / "out"),
            "batch_name": "crash-detection",
            "base_url": api.base_url,
            "api_key_secret": None,
            "images_per_minute": None,
            "defaults": {"steps": 1},
        }
        httpx.post(f"{api.base_url}/_local/hold", timeout=10).raise_for_status()
        run_id = create_run(prefect_server, ON_DEMAND, {"settings": settings})
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", POOL],
                env=prefect_server.env(PREFECT_WORKER_QUERY_SECONDS="1"),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            # Paid at the server *and* recorded by the run: killed between the two, a job's
            # outcome is unknown to the run and is knowingly submitted again (README).
            wait_for(
                "every task submitted (paid), recorded and held in flight",
                lambda: (
                    job_counts(api).total_submits == JOBS
                    and recorded_task_ids(tmp_path / "out") == JOBS
                ),
                timeout=180,
            )
        finally:
            _kill_machine(worker)
        assert _state(prefect_server, run_id)["type"] == "RUNNING"  # nobody is left to end it

        crashed = wait_for(
            "the automation to mark the run Crashed",
            lambda: (s := _state(prefect_server, run_id))["type"] == "CRASHED" and s,
            timeout=WITHIN_S + 150,
        )
        assert "heartbeats stopped" in crashed["message"]

        httpx.post(f"{api.base_url}/_local/hold", params={"held": "false"}, timeout=10)
        rerun_id = create_run(prefect_server, ON_DEMAND, {"settings": settings})
        prefect_server.worker_run_once()
        assert wait_for(
            "the rerun to end", lambda: _state(prefect_server, rerun_id)["type"] in FINAL_STATES, 60
        )
        assert _state(prefect_server, rerun_id)["type"] == "COMPLETED"
        counts = job_counts(api)
        assert counts.total_submits == JOBS  # the dead run's tasks were polled, not paid again
        assert counts.submits_per_job == [1] * JOBS
    assert [row["status"] for row in report_rows(tmp_path / "out")] == ["succeeded"] * JOBS
