"""The nightly deployment on a real Prefect server: deploy, schedule, fail, notify, Retry, rerun.

The story (nightly_story.py) runs once: `prefect deploy --all` from prefect.yaml, a run of the
nightly deployment picked up by a `--run-once` process worker, the UI's Retry after the user
fixed the input, and a new run over the same inputs. These tests read what it left through the
Prefect API and the local Novita server's counters.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from inpaint_flows.deploy import create_failure_automation
from tests.deployments.nightly_story import NIGHTLY, RERUN_FAILED, NightlyStory
from tests.deployments.prefect_server import POOL, REPO, PrefectServer
from tests.flows.rerun_scenarios import NAMES, check_guarantees

pytestmark = [pytest.mark.server, pytest.mark.slow]


async def artifacts_of(server: PrefectServer, flow_run_id: UUID) -> list[Any]:
    async with server.client() as client:
        found: list[Any] = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            sort=ArtifactSort.CREATED_DESC,
        )
    return sorted(found, key=lambda a: a.created)  # oldest first


async def test_deploy_all_registers_the_schedule_pool_and_pull_step(
    prefect_server: PrefectServer, nightly: NightlyStory
) -> None:
    async with prefect_server.client() as client:
        dep = await client.read_deployment_by_name(NIGHTLY)
        rerun = await client.read_deployment_by_name(RERUN_FAILED)

    assert dep.work_pool_name == rerun.work_pool_name == POOL
    assert dep.global_concurrency_limit is not None
    assert dep.global_concurrency_limit.limit == 1  # one nightly run at a time
    assert set(dep.tags) == {"inpaint", "nightly"}
    assert dep.parameters["settings"]["api_key_secret"] == "novita-api-key"
    assert dep.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ]
    (schedule,) = dep.schedules
    assert schedule.schedule.model_dump(include={"cron", "timezone"}) == {
        "cron": "0 2 * * *",
        "timezone": "Europe/Berlin",
    }
    # The server's scheduler read the cron in Berlin time: 02:00 there, whatever UTC says.
    assert nightly.scheduled_starts, "the scheduler created no nightly runs"
    for start in nightly.scheduled_starts:
        local = datetime.fromisoformat(start).astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (2, 0), start


async def test_partly_failing_run_ends_failed_with_meaningful_names(
    prefect_server: PrefectServer, nightly: NightlyStory
) -> None:
    first = nightly.first
    assert "UUID" in nightly.deploy_run_output  # `prefect deployment run ... --params` worked
    assert first.state_type == "FAILED", first.message
    assert "1 of 4 failed" in first.message
    assert first.report.loc["rocket.jpg", "status"] == "invalid"
    assert first.name == "inpaint nightly"

    async with prefect_server.client() as client:
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[first.flow_run_id]))
        )
    names = {t.name for t in task_runs}
    for name in NAMES:  # every input has task runs named after its file
        assert any(n.endswith(name) for n in names), (name, sorted(names))
    assert "publish dashboard artifacts" in names
    assert any(n.startswith("write report to ") for n in names)


async def test_each_attempt_publishes_summary_table_progress_and_gallery_link(
    prefect_server: PrefectServer, nightly: NightlyStory
) -> None:
    artifacts = await artifacts_of(prefect_server, nightly.first.flow_run_id)
    by_key: dict[str, list[Any]] = {}
    for artifact in artifacts:
        by_key.setdefault(artifact.key, []).append(artifact)

    kinds = ("summary", "report", "progress", "gallery")
    assert set(by_key) == {f"inpaint-nightly-{kind}" for kind in kinds}
    assert all(len(v) == 2 for v in by_key.values()), "one version per attempt (run, Retry)"

    failed_summary, fixed_summary = (a.data for a in by_key["inpaint-nightly-summary"])
    assert "3 of 4 done, 1 to redo" in failed_summary
    assert "MISSING_MASK" in failed_summary and "rocket.jpg" in failed_summary
    assert "Redo what failed" in failed_summary and "report.csv" in failed_summary
    assert "4 of 4 done" in fixed_summary and "1 image(s) inpainted" in fixed_summary
    assert "3 already done by an earlier run" in fixed_summary

    failed_table = by_key["inpaint-nightly-report"][0]
    assert failed_table.type == "table"
    rows = (
        failed_table.data if isinstance(failed_table.data, list) else json.loads(failed_table.data)
    )
    assert rows[0]["name"] == "rocket.jpg" and rows[0]["status"] == "invalid"
    assert {r["name"] for r in rows} == set(NAMES)

    assert [a.data for a in by_key["inpaint-nightly-progress"]] == [100.0, 100.0]
    link = by_key["inpaint-nightly-gallery"][-1].data
    gallery = nightly.scenario.out / "index.html"
    assert gallery.as_uri() in link and gallery.is_file()


def test_ui_retry_reruns_the_same_flow_run_and_redoes_only_what_failed(
    nightly: NightlyStory,
) -> None:
    first, retried = nightly.first, nightly.retried
    assert retried.flow_run_id == first.flow_run_id
    assert retried.run_count == 2
    assert retried.state_type == "COMPLETED", retried.message
    check_guarantees(
        nightly.scenario.expectations(), first.report, first.counts, retried.counts, retried.report
    )


def test_new_run_over_the_same_inputs_sends_nothing(nightly: NightlyStory) -> None:
    before, again = nightly.retried, nightly.again
    assert again.flow_run_id != before.flow_run_id
    assert again.state_type == "COMPLETED", again.message
    assert again.counts.total_submits == before.counts.total_submits
    assert again.counts.total_polls == before.counts.total_polls
    assert again.counts.total_downloads == before.counts.total_downloads
    assert set(again.report["status"]) == {"skipped-already-done"}


def test_failed_run_triggers_the_example_automation(nightly: NightlyStory) -> None:
    # Other tests' runs on this shared server notify too once the automation exists (a canary
    # pauses, a killed worker's run is marked Crashed): only the story's own runs count here.
    story = {str(r.flow_run_id) for r in (nightly.first, nightly.retried, nightly.again)}

    def about_the_story() -> list[str]:
        texts = [str(n) for n in nightly.notifications]
        return [t for t in texts if any(run_id in t for run_id in story)]

    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and not about_the_story():
        time.sleep(0.5)
    assert about_the_story(), "no notification within 45 s of the failed run"
    text = about_the_story()[0]
    assert "inpaint nightly" in text and "Failed" in text
    assert str(nightly.first.flow_run_id) in text  # the body links to the run
    # Only the failed attempt notifies: the Retry and the new run completed.
    time.sleep(1)
    assert len(about_the_story()) == 1, nightly.notifications


def test_a_deployment_run_without_a_key_fails_at_once_and_says_why(
    prefect_server: PrefectServer, nightly: NightlyStory, tmp_path: Any
) -> None:
    """A worker run whose key went missing must not quietly use the local OpenCV server."""
    from tests.deployments.nightly_story import create_run
    from tests.flows.rerun_scenarios import copy_examples

    src = copy_examples(tmp_path / "in")
    settings = {"source": str(src), "out": str(tmp_path / "out"), "api_key_secret": None}
    run_id = create_run(prefect_server, NIGHTLY, {"settings": settings})
    prefect_server.worker_run_once()

    run = prefect_server.api("GET", f"/flow_runs/{run_id}")
    assert run["state"]["type"] == "FAILED"
    assert "No API key" in (run["state"]["message"] or ""), run["state"]
    assert not (tmp_path / "out" / "report.csv").exists()  # nothing ran, nothing was paid


def failure_automations(server: PrefectServer) -> list[dict[str, Any]]:
    body = {"automations": {"name": {"any_": ["inpaint-run-failed"]}}}
    found: list[dict[str, Any]] = server.api("POST", "/automations/filter", body)
    return found


def test_failure_automation_notifies_through_the_named_block(
    nightly: NightlyStory, prefect_server: PrefectServer
) -> None:
    block = prefect_server.api(
        "GET", "/block_types/slug/custom-webhook/block_documents/name/inpaint-alerts"
    )
    (automation,) = failure_automations(prefect_server)
    (action,) = automation["actions"]
    assert action["type"] == "send-notification"
    assert action["block_document_id"] == block["id"]


async def test_a_mistyped_block_names_the_block_and_keeps_the_automation(
    nightly: NightlyStory, prefect_server: PrefectServer
) -> None:
    before = failure_automations(prefect_server)
    with (
        temporary_settings({PREFECT_API_URL: prefect_server.api_url}),
        pytest.raises(
            ValueError, match=re.escape("No 'custom-webhook' block named 'inpaint-alert'")
        ),
    ):
        await create_failure_automation("custom-webhook/inpaint-alert")
    assert failure_automations(prefect_server) == before  # nothing deleted on the way
