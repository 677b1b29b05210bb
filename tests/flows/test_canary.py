"""A canary on a real Prefect API: the run pauses after 3 jobs, and each answer does what it says.

The batch (tests/flows/canary_support.py) has six inputs; the canary is the 2nd, 4th and 6th.
A 60 s deadline makes the paused run look for an answer every 2 s. The run is resumed through
the API exactly as the dashboard's form does
(`PrefectClient.resume_flow_run` with `run_input`); what the API saw is read from the local
server's own counters (`/_local/stats`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun

from inpaint_flows.canary import REASON_CANCELLED, REASON_TIMEOUT
from inpaint_flows.models import InpaintParams
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.canary_support import CANARY, NAMES, OWN_STRENGTH, REST, wait_until, write_batch
from tests.flows.helpers import call_batch_flow, job_counts

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAST = InpaintParams(steps=1)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as srv:
        yield srv


class CanaryRun:
    """A batch flow with `canary=3` started in the background, and its flow run once paused."""

    def __init__(self, tmp_path: Path, server: LocalServer, name: str, **settings: Any) -> None:
        self.name = name
        self.out = tmp_path / "out"
        self.server = server
        manifest = write_batch(tmp_path / "in")
        self.flow = asyncio.ensure_future(
            call_batch_flow(
                source=str(manifest),
                out=str(self.out),
                defaults=FAST,
                base_url=server.base_url,
                images_per_minute=None,
                max_in_flight=4,
                batch_name=name,
                canary=3,
                return_state=True,
                **{"canary_timeout_s": 60.0, **settings},
            )
        )

    async def paused(self) -> FlowRun:
        async def find() -> FlowRun | None:
            async with get_client() as client:
                runs = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        name=FlowRunFilterName(any_=[f"inpaint {self.name}"])
                    )
                )
            return next((r for r in runs if r.state and r.state.is_paused()), None)

        run: FlowRun = await wait_until(
            "the run to pause", find, still_running=lambda: not self.flow.done()
        )
        return run

    async def resume(self, run: FlowRun, run_input: dict[str, Any]) -> None:
        async with get_client() as client:
            result = await client.resume_flow_run(run.id, run_input=run_input)
        assert result.status.value == "ACCEPT", result

    async def finished(self) -> Any:
        return await asyncio.wait_for(self.flow, timeout=300)

    def report(self) -> pd.DataFrame:
        return pd.read_csv(self.out / "report.csv").set_index("name")

    def canary_gallery(self) -> str:
        return (self.out / "canary" / "index.html").read_text(encoding="utf-8")


async def artifact_markdown(key: str) -> str:
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key}"
    return str(max(found, key=lambda a: a.created).data)  # type: ignore[arg-type,return-value]


async def test_canary_pauses_after_three_jobs_and_approval_finishes_the_batch(
    tmp_path: Path, server: LocalServer
) -> None:
    batch = CanaryRun(tmp_path, server, "canary-approve")
    run = await batch.paused()

    # Paused after the canary: three jobs paid, the rest not sent, the canary shown.
    assert job_counts(server).submits_per_job == [1, 1, 1]
    gallery = batch.canary_gallery()
    assert all(name in gallery for name in CANARY)
    assert not any(name in gallery for name in REST)
    assert sorted(p.name for p in (batch.out / "images").iterdir()) == [
        "photo2.png",
        "photo4.png",
        "photo6.png",
    ]
    summary = await artifact_markdown("inpaint-canary-approve-canary")
    assert "3 of 3 done; 3 job(s) wait for your approval" in summary
    assert str(batch.out / "canary" / "index.html") in summary
    assert run.state is not None and run.state.state_details.run_input_keyset

    await batch.resume(run, {"action": "approve"})
    state = await batch.finished()

    assert state.is_completed(), state.message
    assert job_counts(server).submits_per_job == [1] * 6  # each job paid once
    report = batch.report()
    assert sorted(report.index) == sorted(NAMES)
    assert set(report["status"]) == {"succeeded"}


async def test_changed_defaults_redo_exactly_the_canary_jobs_whose_request_changed(
    tmp_path: Path, server: LocalServer
) -> None:
    batch = CanaryRun(tmp_path, server, "canary-change")
    run = await batch.paused()
    assert job_counts(server).total_submits == 3

    await batch.resume(
        run,
        {"action": "approve", "defaults": FAST.evolve(strength=0.6).model_dump(mode="json")},
    )
    state = await batch.finished()

    assert state.is_completed(), state.message
    counts = job_counts(server)
    # 3 canary + 2 canary redone (the third sets its own strength) + 3 others; each paid once.
    assert counts.submits_per_job == [1] * 8
    report = batch.report()
    assert set(report["status"]) == {"succeeded"}
    assert report.loc[OWN_STRENGTH, "param_strength"] == 0.5
    assert (report.drop(index=OWN_STRENGTH)["param_strength"] == 0.6).all()
    # The unchanged canary job keeps its first result: no second task for it.
    assert (report["submits"] == 1).all()
    saved = (batch.out / "batch.json").read_text(encoding="utf-8")
    assert '"strength": 0.6' in saved  # a rerun-failed keeps the approved defaults


async def test_cancel_pays_nothing_more_and_the_report_says_so(
    tmp_path: Path, server: LocalServer
) -> None:
    batch = CanaryRun(tmp_path, server, "canary-cancel")
    run = await batch.paused()

    await batch.resume(run, {"action": "cancel"})
    state = await batch.finished()

    assert state.is_cancelled(), state
    assert "Canary cancelled in the dashboard" in (state.message or "")
    assert job_counts(server).total_submits == 3
    report = batch.report()
    assert set(report.loc[list(CANARY), "status"]) == {"succeeded"}
    rest = report.loc[list(REST)]
    assert set(rest["status"]) == {"not-submitted"}
    assert set(rest["reason"]) == {REASON_CANCELLED}
    assert all("cancelled" in message for message in rest["message"])


async def test_an_unanswered_canary_times_out_cleanly_with_a_resumable_report(
    tmp_path: Path, server: LocalServer
) -> None:
    batch = CanaryRun(tmp_path, server, "canary-timeout", canary_timeout_s=2.0)

    state = await batch.finished()

    assert state.is_failed(), state
    assert "not approved within 2 s" in (state.message or "")
    assert job_counts(server).total_submits == 3
    report = batch.report()
    assert set(report.loc[list(REST), "status"]) == {"not-submitted"}
    assert set(report.loc[list(REST), "reason"]) == {REASON_TIMEOUT}
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["inpaint canary-timeout"]))
        )
    (run,) = runs
    assert run.state is not None and run.state.is_failed()
    assert "not approved" in (run.state.message or "")  # our report's words, not a crash

    # Resumable: the same batch again with the canary off pays only for the rest.
    again = await call_batch_flow(
        source=str(tmp_path / "in" / "batch.csv"),
        out=str(batch.out),
        defaults=FAST,
        base_url=server.base_url,
        images_per_minute=None,
        batch_name="canary-timeout",
        return_state=True,
    )
    assert again.is_completed(), again.message
    assert job_counts(server).submits_per_job == [1] * 6


async def test_cancel_pressed_on_the_paused_run_still_ends_with_a_report(
    tmp_path: Path, server: LocalServer
) -> None:
    """The dashboard's Cancel button instead of the form, on a run no worker kills."""
    from prefect.states import Cancelling

    # The deadline is far (the run checks every 3 s): it must see the Cancel itself, not at
    # the deadline (that message would not name the button).
    batch = CanaryRun(tmp_path, server, "canary-cancel-button", canary_timeout_s=90.0)
    run = await batch.paused()
    async with get_client() as client:
        await client.set_flow_run_state(run.id, Cancelling(), force=True)

    state = await batch.finished()

    assert job_counts(server).total_submits == 3
    report = batch.report()
    assert set(report.loc[list(REST), "reason"]) == {REASON_CANCELLED}
    assert all("its Cancel button" in message for message in report.loc[list(REST), "message"])
    assert state.is_cancelled(), state
