"""Rerunning a batch redoes only what failed: a new flow run, the rerun-failed flow, its CLI.

Each scenario makes a first run go wrong in one way (remote tasks still running when the run
gives up, tasks FAILED remotely, tasks lost by the provider), changes the world, reruns, and
checks the per-job guarantees on the local server's counters (see rerun_scenarios.py).
The UI's Retry of a deployment run is the third path; it needs a real server and a worker:
tests/deployments/test_retry.py. A run killed with SIGKILL mid-batch is covered with the crash
tests (issue 5).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL
from prefect.states import State

from flows.inpaint_batch import rerun_failed
from inpaint_flows.models import InpaintParams
from tests.deployments.prefect_server import INPAINT_FLOWS, clean_env
from tests.flows.helpers import JobCounts, call_batch_flow
from tests.flows.rerun_scenarios import Kind, Scenario

pytestmark = pytest.mark.usefixtures("prefect_harness")

REMOTE_KINDS: tuple[Kind, ...] = ("poll-timeout", "remote-failed", "unknown-task")
MakeScenario = Callable[..., Scenario]


@pytest.fixture
def make_scenario(tmp_path: Path) -> Iterator[MakeScenario]:
    made: list[Scenario] = []

    def make(kind: Kind, missing_mask: bool = False) -> Scenario:
        scenario = Scenario(kind, tmp_path / kind, missing_mask=missing_mask)
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        scenario.close()


async def run_batch(scenario: Scenario) -> State:
    settings = scenario.settings()
    settings["defaults"] = InpaintParams(**settings["defaults"])
    return await call_batch_flow(**settings, return_state=True)


async def first_run(scenario: Scenario) -> tuple[pd.DataFrame, JobCounts]:
    state = await run_batch(scenario)
    assert state.is_failed(), state.message
    report = scenario.report()
    scenario.check_first_run(report, scenario.counts())
    scenario.prepare_rerun()
    return report, scenario.counts()


@pytest.mark.parametrize("kind", REMOTE_KINDS)
async def test_new_run_over_same_inputs_redoes_only_what_failed(
    kind: Kind, make_scenario: MakeScenario
) -> None:
    scenario = make_scenario(kind)
    first, before = await first_run(scenario)

    state = await run_batch(scenario)  # same inputs, same parameters

    assert state.is_completed(), state.message
    scenario.check_rerun(first, before, scenario.counts(), scenario.report())


@pytest.mark.parametrize("kind", REMOTE_KINDS)
async def test_rerun_failed_flow_redoes_only_what_failed_and_merges(
    kind: Kind, make_scenario: MakeScenario
) -> None:
    scenario = make_scenario(kind)
    first, before = await first_run(scenario)

    state = await rerun_failed(report=str(scenario.out / "report.csv"), return_state=True)

    assert state.is_completed(), state.message
    final = scenario.report()
    assert sorted(final.index) == sorted(first.index)  # merged: every row still there
    scenario.check_rerun(first, before, scenario.counts(), final, merged=True)


@pytest.mark.slow
async def test_rerun_failed_cli_fixes_an_input_and_repolls_live_tasks(
    make_scenario: MakeScenario, tmp_path: Path
) -> None:
    """The command a user types, in its own process, against the same Prefect API."""
    scenario = make_scenario("poll-timeout", missing_mask=True)
    first, before = await first_run(scenario)
    env = clean_env(PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_HOME=str(tmp_path / "ph"))

    result = subprocess.run(
        # The fixed input's new task takes longer than the first run's poll budget: the user
        # raises it for this rerun (every other setting is the batch's own).
        [INPAINT_FLOWS, "rerun-failed", str(scenario.out / "report.csv"), "--poll-timeout", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 jobs this run" in result.stderr, result.stderr[-3000:]
    final = scenario.report()
    assert set(final["status"]) == {"succeeded"}
    scenario.check_rerun(first, before, scenario.counts(), final, merged=True)
