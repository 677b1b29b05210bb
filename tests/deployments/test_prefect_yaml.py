"""The deployments cannot drift from the code: no server needed.

deployments/prefect.yaml is what the one definition (`inpaint_flows.deployments`) renders; every
entrypoint is imported for real (no placeholder flow) and its parameters validated against the
flow's signature; schedules parse; secrets are named, never given; `inpaint-flows serve` builds
the same deployments from the same definitions; the example automation is a valid automation.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint
from typer.testing import CliRunner

from cli.app import app
from inpaint_flows.deploy import (
    AUTOMATION_FILE,
    CRASH_AUTOMATION_FILE,
    create_crash_detection,
    create_failure_automation,
    load_automation,
)
from inpaint_flows.deployments import (
    PREFECT_FILE,
    RERUN_FAILED,
    ServeOptions,
    deployments,
    render_prefect_yaml,
    runner_deployments,
    served,
    with_options,
)

REPO = Path(__file__).resolve().parents[2]
RAW = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))
DEPLOYMENTS: list[dict[str, Any]] = RAW["deployments"]
KEY_LIKE = re.compile(r"^(sk[_-]|key[_-])|[A-Za-z0-9]{32,}")


def by_name(name: str) -> dict[str, Any]:
    return next(d for d in DEPLOYMENTS if d["name"] == name)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_entrypoint_loads_and_accepts_its_parameters(deployment: dict[str, Any]) -> None:
    path, func = deployment["entrypoint"].split(":")
    assert (REPO / path).is_file(), f"{deployment['entrypoint']} points at no file"
    flow: Flow[..., Any] = load_flow_from_entrypoint(
        f"{REPO / path}:{func}", use_placeholder_flow=False
    )

    flow.validate_parameters(deployment.get("parameters") or {})


def test_prefect_yaml_is_what_the_definitions_render() -> None:
    """Edit `inpaint_flows/deployments.py`, then `inpaint-flows prefect-yaml > deployments/
    prefect.yaml`: a hand edit of one side only fails here."""
    assert PREFECT_FILE.read_text(encoding="utf-8") == render_prefect_yaml(deployments())


def test_prefect_yaml_command_renders_the_definitions_with_overrides() -> None:
    result = CliRunner().invoke(
        app,
        [
            *("prefect-yaml", "--source", "photos", "--out", "out/photos"),
            *("--timezone", "UTC", "--canary", "5"),
        ],
    )
    assert result.exit_code == 0, result.output
    rendered = {d["name"]: d for d in yaml.safe_load(result.output)["deployments"]}
    settings = rendered["nightly"]["parameters"]["settings"]
    assert (settings["source"], settings["out"]) == ("photos", "out/photos")  # kept relative
    assert settings["canary"] == 5  # each night waits for approval of 5 jobs first
    (schedule,) = rendered["nightly"]["schedules"]
    assert (schedule["cron"], schedule["timezone"]) == ("0 2 * * *", "UTC")
    assert rendered[RERUN_FAILED]["parameters"]["report"] == "out/photos/report.csv"
    assert result.output == render_prefect_yaml(
        with_options(
            deployments(),
            ServeOptions(source="photos", out="out/photos", timezone="UTC", canary=5),
        )
    )


CONTAINER_FILE = REPO / "deployments" / "containers" / "prefect.yaml"
CONTAINER_ARGS = [
    *("--image", "ghcr.io/OWNER/inpaint-flows:latest"),
    *("--source", "s3://YOUR-BUCKET/in", "--out", "s3://YOUR-BUCKET/out"),
    *("--state-url", "postgresql://inpaint@db.internal/inpaint"),
    *("--storage-block", "aws-credentials/inpaint-bucket"),
]


def test_container_prefect_yaml_is_what_its_command_renders() -> None:
    """deployments/containers/prefect.yaml: the same definitions, for a docker or Kubernetes
    pool, every run's inputs and outputs in a bucket (its header gives the command)."""
    result = CliRunner().invoke(app, ["prefect-yaml", *CONTAINER_ARGS])
    assert result.exit_code == 0, result.output
    assert CONTAINER_FILE.read_text(encoding="utf-8") == result.output
    raw = yaml.safe_load(result.output)
    assert raw["build"] is None and raw["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/inpaint-flows"}}
    ]
    for deployment in raw["deployments"]:
        pool = deployment["work_pool"]
        assert pool["name"] == "inpaint-containers"
        assert pool["job_variables"]["image"] == "ghcr.io/OWNER/inpaint-flows:latest"
        path, func = deployment["entrypoint"].split(":")
        flow: Flow[..., Any] = load_flow_from_entrypoint(
            f"{REPO / path}:{func}", use_placeholder_flow=False
        )
        flow.validate_parameters(deployment.get("parameters") or {})
        settings = deployment["parameters"].get("settings")
        if settings is not None and deployment["name"] != "shard":
            assert settings["out"].startswith("s3://YOUR-BUCKET/"), deployment["name"]
    dockerfile = (REPO / "deployments" / "containers" / "Dockerfile").read_text(encoding="utf-8")
    assert "WORKDIR /opt/inpaint-flows" in dockerfile and ".[s3,postgres]" in dockerfile


def test_at_least_a_nightly_batch_and_a_rerun_failed_deployment() -> None:
    assert by_name("nightly")["entrypoint"] == "flows/inpaint_batch.py:inpaint_batch"
    assert by_name(RERUN_FAILED)["entrypoint"] == "flows/inpaint_batch.py:rerun_failed"


def test_nightly_has_a_cron_schedule_in_a_named_timezone() -> None:
    (schedule,) = by_name("nightly")["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert cron.timezone == "Europe/Berlin"
    assert schedule["slug"], "a slug lets a redeploy update the schedule instead of adding one"


def test_every_deployment_runs_on_the_process_pool_with_the_inpaint_tag() -> None:
    """The failure automation matches on the `inpaint` tag: a deployment without it is silent."""
    for deployment in DEPLOYMENTS:
        assert deployment["work_pool"]["name"] == "inpaint-pool", deployment["name"]
        assert "inpaint" in deployment["tags"], deployment["name"]


def test_workers_run_flows_from_the_repository_root_of_whoever_deployed() -> None:
    (build,) = RAW["build"]
    (pull,) = RAW["pull"]
    step = build["prefect.deployments.steps.run_shell_script"]
    assert step["script"] == "pwd"
    directory = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ " + step["id"] + ".stdout }}"


def test_secrets_are_named_never_given() -> None:
    for deployment in DEPLOYMENTS:
        params = deployment.get("parameters") or {}
        for key, value in {**params, **params.get("settings", {})}.items():
            assert "key" not in key or key == "api_key_secret", f"{key} looks like a secret"
            if isinstance(value, str):
                assert not KEY_LIKE.search(value), f"{key}={value!r} looks like a key"
    assert by_name("nightly")["parameters"]["settings"]["api_key_secret"] == "novita-api-key"


def test_serve_builds_the_same_deployments_with_overrides(tmp_path: Path) -> None:
    specs = served(
        deployments(),
        ServeOptions(source="photos", out="night-out", cron="30 1 * * *", timezone="UTC"),
        cwd=tmp_path,
    )
    built = {d.name: d for d in runner_deployments(specs)}

    assert sorted(built) == sorted(d["name"] for d in DEPLOYMENTS)
    nightly = built["nightly"]
    assert nightly.parameters["settings"]["source"] == str(tmp_path / "photos")
    assert nightly.parameters["settings"]["out"] == str(tmp_path / "night-out")
    assert nightly.parameters["settings"]["api_key_secret"] == "novita-api-key"
    assert nightly.work_pool_name is None  # served from the process, not a pool
    (schedule,) = nightly.schedules or []
    assert isinstance(schedule.schedule, CronSchedule)
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 1 * * *", "UTC")
    assert nightly.concurrency_limit == 1
    rerun = built[RERUN_FAILED]
    assert rerun.parameters["report"] == str(tmp_path / "night-out" / "report.csv")
    for spec in specs:  # module entrypoints: a served run works from any directory
        path, func = spec.entrypoint.split(":")
        flow: Flow[..., Any] = load_flow_from_entrypoint(f"{REPO / path}:{func}")
        flow.validate_parameters(spec.parameters)
        assert built[spec.name].entrypoint == spec.module_path


def test_serve_takes_the_definitions_paths_from_the_repository() -> None:
    (nightly, *_) = served(deployments(), ServeOptions(api_key_secret=""))
    assert nightly.parameters["settings"]["source"] == str(REPO / "examples")
    assert (
        nightly.parameters["settings"]["api_key_secret"] is None
    )  # '' = NOVITA_API_KEY (or set base_url: local)


def test_failure_automation_is_a_valid_automation_on_failed_inpaint_runs() -> None:
    block_id = str(uuid.uuid4())
    automation = load_automation(block_id, AUTOMATION_FILE)

    trigger = automation.trigger.model_dump()
    assert set(trigger["expect"]) == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.Paused",  # a canary waits for approval
    }
    assert "prefect.tag.inpaint" in str(trigger["match_related"])
    (action,) = automation.actions
    assert str(getattr(action, "block_document_id", "")) == block_id


@pytest.mark.parametrize("block", ["inpaint-alerts", "/inpaint-alerts", "slack-webhook/a/b"])
async def test_failure_automation_wants_a_type_and_a_name(block: str) -> None:
    with pytest.raises(
        ValueError, match=r"give it as TYPE/NAME, e\.g\. slack-webhook/inpaint-alerts"
    ):
        await create_failure_automation(block)  # refused before any server is asked


def test_every_pool_deployment_sends_heartbeats_for_crash_detection() -> None:
    for deployment in DEPLOYMENTS:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30", deployment["name"]


def test_crash_detection_marks_inpaint_runs_whose_heartbeats_stop() -> None:
    automation = load_automation(path=CRASH_AUTOMATION_FILE)
    trigger = automation.trigger.model_dump()
    assert trigger["posture"] == "Proactive"
    assert trigger["after"] == {"prefect.flow-run.heartbeat"}
    assert "prefect.flow-run.heartbeat" in trigger["expect"]
    assert "prefect.tag.inpaint" in str(trigger["match_related"])
    assert trigger["within"].total_seconds() == 90  # three heartbeats of 30 s
    (action,) = automation.actions
    assert action.type == "change-flow-run-state"
    assert str(getattr(action, "state", "")).upper().endswith("CRASHED")


async def test_crash_detection_refuses_a_wait_shorter_than_a_heartbeat() -> None:
    with pytest.raises(ValueError, match="a live run would be marked Crashed"):
        await create_crash_detection(20)  # refused before any server is asked
