"""The nightly deployment's story on a real server, run once per session and asserted on by
several tests (tests/deployments/test_nightly.py, tests/browser/).

1. deploy from deployments/prefect.yaml (as README says), create the failure automation;
2. `prefect deployment run inpaint-batch/nightly --params ...` over a copy of examples/ whose
   rocket mask is missing, against a local Novita server; a `--run-once` process worker runs it
   → Failed (3 succeeded, 1 invalid);
3. the user puts the mask back and presses Retry (what the UI sends); a worker runs it again
   → the same flow run, run_count 2, Completed;
4. a new nightly run over the same inputs → Completed, nothing sent.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd

from tests.deployments.prefect_server import PrefectServer, params_json
from tests.flows.helpers import JobCounts
from tests.flows.rerun_scenarios import Scenario

NIGHTLY = "inpaint-batch/nightly"
RERUN_FAILED = "rerun-failed/rerun-failed"


@dataclass(frozen=True)
class RunSnapshot:
    """A flow run as the API shows it after a worker pass, with the server's counters."""

    flow_run_id: UUID
    name: str
    state_type: str
    state_name: str
    message: str
    run_count: int
    counts: JobCounts
    report: pd.DataFrame


@dataclass
class NightlyStory:
    scenario: Scenario
    deploy_run_output: str
    first: RunSnapshot
    retried: RunSnapshot
    again: RunSnapshot
    scheduled_starts: list[str]  # what the server's scheduler made of the nightly cron
    first_gallery: Path  # index.html in a copy of the output folder as the failed run left it
    notifications: list[dict[str, Any]] = field(default_factory=list)


class WebhookReceiver:
    """Collects the JSON bodies POSTed to it: the automation's notifications."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                received.append(json.loads(body or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/notify"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def snapshot(server: PrefectServer, flow_run_id: UUID, scenario: Scenario) -> RunSnapshot:
    run = server.api("GET", f"/flow_runs/{flow_run_id}")
    return RunSnapshot(
        flow_run_id=flow_run_id,
        name=run["name"],
        state_type=run["state"]["type"],
        state_name=run["state"]["name"],
        message=run["state"]["message"] or "",
        run_count=run["run_count"],
        counts=scenario.counts(),
        report=scenario.report(),
    )


def ui_retry(server: PrefectServer, flow_run_id: UUID) -> None:
    """Exactly what the UI's Retry button sends (prefect-ui-library `retryFlowRun`)."""
    server.api(
        "POST",
        f"/flow_runs/{flow_run_id}/set_state",
        {
            "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
            "force": True,
        },
    )


def create_run(server: PrefectServer, deployment: str, params: dict[str, Any]) -> UUID:
    dep = server.api("GET", f"/deployments/name/{deployment}")
    run = server.api("POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": params})
    return UUID(run["id"])


def create_failure_automation(server: PrefectServer, receiver: WebhookReceiver) -> None:
    """A webhook notification block, then the documented one-liner that creates the automation."""
    block = (
        "from prefect.blocks.notifications import CustomWebhookNotificationBlock as B\n"
        f"B(name='inpaint-alerts', url={receiver.url!r},"
        " json_data={'subject': '{{subject}}', 'body': '{{body}}'})"
        ".save('inpaint-alerts', overwrite=True)\n"
    )
    server.run(sys.executable, "-c", block)
    server.run(
        sys.executable,
        "-c",
        "import asyncio; from inpaint_flows.deploy import create_failure_automation as c; "
        "print(asyncio.run(c('custom-webhook/inpaint-alerts')))",
    )


def take_over_the_schedule(server: PrefectServer, timeout: float = 30.0) -> list[str]:
    """The scheduled nightly runs the server created; then the schedule is paused for the tests.

    Paused so that a `--run-once` worker started near 02:00 Berlin time never picks up a real
    nightly run (over examples/, into the repository's out/).
    """
    dep = server.api("GET", f"/deployments/name/{NIGHTLY}")
    query = {
        "deployments": {"id": {"any_": [dep["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        "sort": "EXPECTED_START_TIME_ASC",
    }
    deadline = time.monotonic() + timeout
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not runs:
        runs = server.api("POST", "/flow_runs/filter", {**query, "limit": 5})
        time.sleep(0.5)
    for schedule in dep["schedules"]:
        server.api(
            "PATCH", f"/deployments/{dep['id']}/schedules/{schedule['id']}", {"active": False}
        )
    starts = [run["expected_start_time"] for run in runs]
    for run in server.api("POST", "/flow_runs/filter", query):
        server.api("DELETE", f"/flow_runs/{run['id']}")
    return starts


def tell_story(server: PrefectServer, root: Path) -> NightlyStory:
    server.deploy()
    scheduled_starts = take_over_the_schedule(server)
    scenario = Scenario("invalid-fixed", root / "nightly")
    server.resources.callback(scenario.close)
    receiver = WebhookReceiver()
    server.resources.callback(receiver.close)
    create_failure_automation(server, receiver)

    params = scenario.params()
    params["settings"]["batch_name"] = "nightly"  # the deployment's own name
    result = server.prefect("deployment", "run", NIGHTLY, "--params", params_json(params))
    match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    assert match, result.stdout
    run_id = UUID(match.group(1))
    server.worker_run_once()
    first = snapshot(server, run_id, scenario)
    first_gallery = scenario.root / "out-after-first-run"
    shutil.copytree(scenario.out, first_gallery, ignore=shutil.ignore_patterns(".inpaint-state"))

    scenario.prepare_rerun()  # the user puts the missing mask back
    ui_retry(server, run_id)
    server.worker_run_once()
    retried = snapshot(server, run_id, scenario)

    again_id = create_run(server, NIGHTLY, params)
    server.worker_run_once()
    again = snapshot(server, again_id, scenario)
    return NightlyStory(
        scenario=scenario,
        deploy_run_output=result.stdout,
        first=first,
        retried=retried,
        again=again,
        scheduled_starts=scheduled_starts,
        first_gallery=first_gallery / "index.html",
        notifications=receiver.received,
    )


def nightly_story(server: PrefectServer, root: Path) -> NightlyStory:
    """Told once per server; later callers get the same story."""
    if "nightly" not in server.cache:
        server.cache["nightly"] = tell_story(server, root)
    story: NightlyStory = server.cache["nightly"]
    return story
