"""The UI's Retry and the rerun-failed deployment keep every rerun guarantee, on a real server.

Four deployment runs go wrong at once, each in its own way (see tests/flows/rerun_scenarios.py),
all picked up by one `--run-once` process worker:

- poll-timeout:   the run gave up while its remote tasks were still running;
- remote-failed:  every task ended FAILED at the provider (and was resubmitted once, in-run);
- unknown-task:   the run gave up, then the provider lost every task (restart → 404);
- poll-timeout + a missing mask, redone by the `rerun-failed` deployment instead of Retry.

Then the world changes (tasks finish, the provider recovers, the user restores the mask), the
first three are retried exactly as the UI does it and the fourth goes through rerun-failed; a
second worker pass runs them all. The per-job counters on each local server must show: re-polled,
not resubmitted; exactly one new submit; nothing sent again for what had succeeded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployments.nightly_story import (
    NIGHTLY,
    RERUN_FAILED,
    RunSnapshot,
    create_run,
    snapshot,
    ui_retry,
)
from tests.deployments.prefect_server import PrefectServer
from tests.flows.rerun_scenarios import Kind, Scenario

pytestmark = [pytest.mark.server, pytest.mark.slow]

RETRIED: tuple[Kind, ...] = ("poll-timeout", "remote-failed", "unknown-task")


@pytest.fixture
def side_by_side(prefect_server: PrefectServer) -> Iterator[None]:
    """Lift the nightly deployment's one-run-at-a-time limit while independent scenarios run.

    The limit is there for real nights over one output folder; these scenarios write to
    separate folders, and one worker pass runs them together. Restored afterwards.
    """
    prefect_server.deploy()
    dep = prefect_server.api("GET", f"/deployments/name/{NIGHTLY}")
    limit = dep["global_concurrency_limit"]["limit"]
    prefect_server.api("PATCH", f"/deployments/{dep['id']}", {"concurrency_limit": None})
    yield
    prefect_server.api("PATCH", f"/deployments/{dep['id']}", {"concurrency_limit": limit})


@pytest.fixture
def scenarios(tmp_path: Path) -> Iterator[dict[str, Scenario]]:
    made: dict[str, Scenario] = {kind: Scenario(kind, tmp_path / kind) for kind in RETRIED}
    made["rerun-failed"] = Scenario("poll-timeout", tmp_path / "rerun-failed", missing_mask=True)
    yield made
    for scenario in made.values():
        scenario.close()


@pytest.mark.usefixtures("side_by_side")
def test_retry_and_rerun_failed_deployments_redo_only_what_failed(
    prefect_server: PrefectServer, scenarios: dict[str, Scenario]
) -> None:
    runs = {name: create_run(prefect_server, NIGHTLY, s.params()) for name, s in scenarios.items()}
    prefect_server.worker_run_once()

    first: dict[str, RunSnapshot] = {}
    for name, scenario in scenarios.items():
        first[name] = snapshot(prefect_server, runs[name], scenario)
        assert first[name].state_type == "FAILED", (name, first[name].message)
        scenario.check_first_run(first[name].report, first[name].counts)
        scenario.prepare_rerun()

    for kind in RETRIED:
        ui_retry(prefect_server, runs[kind])
    report = scenarios["rerun-failed"].out / "report.csv"
    # Every setting of the batch is kept; the poll budget is raised for this rerun, since the
    # fixed input's new task takes longer than the first run's budget (a user's natural move).
    rerun_id = create_run(
        prefect_server, RERUN_FAILED, {"report": str(report), "poll_timeout_s": 60.0}
    )
    prefect_server.worker_run_once()

    for kind in RETRIED:
        after = snapshot(prefect_server, runs[kind], scenarios[kind])
        assert after.state_type == "COMPLETED", (kind, after.message)
        assert after.run_count == 2, kind  # the same flow run, run again
        scenarios[kind].check_rerun(
            first[kind].report, first[kind].counts, after.counts, after.report
        )

    rerun = snapshot(prefect_server, rerun_id, scenarios["rerun-failed"])
    assert rerun.state_type == "COMPLETED", rerun.message
    assert rerun.name.startswith("rerun failed of ")
    final = rerun.report
    assert sorted(final.index) == sorted(first["rerun-failed"].report.index)
    scenarios["rerun-failed"].check_rerun(
        first["rerun-failed"].report,
        first["rerun-failed"].counts,
        rerun.counts,
        final,
        merged=True,
    )
