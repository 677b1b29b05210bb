"""One batch in two shards on two process workers: each job paid once, one merged report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import report_rows
from tests.deployments.account_story import ON_DEMAND, distinct_batch, workers
from tests.deployments.nightly_story import create_run
from tests.deployments.prefect_server import FINAL_STATES, PrefectServer
from tests.flows.helpers import job_counts

pytestmark = [pytest.mark.server, pytest.mark.slow]
JOBS = 4


def test_one_batch_in_two_shards_on_two_workers(
    prefect_server: PrefectServer, job_store_url: str | None, tmp_path: Path
) -> None:
    """The shards share one PostgreSQL job store, as workers on two machines would."""
    prefect_server.deploy()
    out = tmp_path / "out"
    with LocalServer(ServerConfig(latency=0.2, workers=4)) as api:
        settings = {
            "source": str(distinct_batch(tmp_path / "in", JOBS, salt=55)),
            "out": str(out),
            "batch_name": "sharded",
            "base_url": api.base_url,
            "api_key_secret": None,
            "images_per_minute": None,
            "shards": 2,
            "defaults": {"steps": 1},
        }
        parent = create_run(prefect_server, ON_DEMAND, {"settings": settings})
        with workers(prefect_server, 2, tmp_path / "logs", job_store_url):
            deadline = time.monotonic() + 300
            while (state := prefect_server.api("GET", f"/flow_runs/{parent}")["state"])[
                "type"
            ] not in FINAL_STATES:
                assert time.monotonic() < deadline, "the sharded batch did not end in 300 s"
                time.sleep(0.5)  # polling a condition, not waiting a fixed time
        counts = job_counts(api)
    assert state["type"] == "COMPLETED", state["message"]
    assert counts.submits_per_job == [1] * JOBS  # each job paid once, by one shard or the other
    children = prefect_server.api(
        "POST",
        "/flow_runs/filter",
        {"flow_runs": {"parent_flow_run_id": {"any_": [str(parent)]}}},
    )
    assert len(children) == 2 and {c["state"]["type"] for c in children} == {"COMPLETED"}
    rows = report_rows(out)  # one report, written by the parent from both shards' rows
    assert sorted(r["status"] for r in rows) == ["succeeded"] * JOBS
    assert len({r["name"] for r in rows}) == JOBS
    assert (out / "index.html").is_file()
