"""The nightly deployment with `canary=3` on a real Prefect server and a process worker.

The run pauses after three jobs with the canary's summary and gallery published, and its
resume form saved; approving through the API (what the dashboard's form sends) finishes the
batch, each job paid once. The other answers (new defaults, cancel, no answer) are shown on the
flow itself in tests/flows/test_canary.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from novita_local.server import LocalServer
from tests.deployments.canary_story import start_paused_canary
from tests.deployments.prefect_server import PrefectServer
from tests.flows.canary_support import CANARY, NAMES
from tests.flows.helpers import job_counts

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture
def api() -> Iterator[LocalServer]:
    with LocalServer() as server:
        yield server


def test_a_deployment_run_pauses_after_its_canary_and_approval_finishes_it(
    prefect_server: PrefectServer, api: LocalServer, tmp_path: Path
) -> None:
    run = start_paused_canary(prefect_server, api, tmp_path, "canary-deploy")
    try:
        state = run.state()
        assert state["name"] == "Paused"
        assert state["state_details"]["run_input_keyset"], "no resume form was saved"
        assert job_counts(api).submits_per_job == [1, 1, 1]
        keys = run.artifact_keys()
        assert {"inpaint-canary-deploy-canary", "inpaint-canary-deploy-canary-gallery"} <= keys
        gallery = (run.out / "canary" / "index.html").read_text(encoding="utf-8")
        assert all(name in gallery for name in CANARY)

        run.resume({"action": "approve"})
        final = run.finish()
    finally:
        run.close()

    assert final["type"] == "COMPLETED", final
    assert job_counts(api).submits_per_job == [1] * 6
    report = pd.read_csv(run.out / "report.csv")
    assert sorted(report["name"]) == sorted(NAMES)
    assert set(report["status"]) == {"succeeded"}
