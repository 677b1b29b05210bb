"""The project's deployments, defined once; `deployments/prefect.yaml` is rendered from them.

`deployments()` is the one definition of each deployment (name, entrypoint, parameters,
schedule, tags, concurrency limit, work pool). Both ways of scheduling derive from it:

- `prefect deploy --all --prefect-file deployments/prefect.yaml`, for a work pool's workers: the
  file is `render_prefect_yaml(deployments())`, written by `inpaint-flows prefect-yaml`, and a
  test fails when the committed file differs from what the definitions render;
- `inpaint-flows serve` (`inpaint_flows.deploy`), which builds Prefect deployments from the same
  definitions and serves them from its own process.

Paths among a deployment's parameters are relative to the repository root (a worker's pull step
runs every flow there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inpaint_flows.locations import is_remote, join, parent_of

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"

NIGHTLY = "nightly"
ON_DEMAND = "on-demand"
SHARD = "shard"
SHARD_DEPLOYMENT = f"inpaint-batch/{SHARD}"  # what a sharded batch's parent runs its parts on
RERUN_FAILED = "rerun-failed"
WORK_POOL = "inpaint-pool"
SETTINGS = "settings"  # the batch flow's one parameter (`BatchSettings`)
PATH_PARAMETERS = ("source", "out", "mask", "state_dir", "report")
# Seconds between a run's heartbeats (the lowest Prefect allows); the crash-detection
# automation (deployments/automation-crashed-run.yaml) marks a run whose heartbeats stop.
HEARTBEAT_S = 30
HEARTBEAT_ENV = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S)}
# Recorded in prefect.yaml for the reader; `prefect deploy` does not require a match.
PREFECT_VERSION = "3.9.1"


@dataclass(frozen=True)
class ScheduleSpec:
    cron: str
    timezone: str | None = None
    slug: str | None = None
    active: bool = True


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment, in the terms both `prefect deploy` and `serve` need."""

    name: str
    entrypoint: str  # `flows/inpaint_batch.py:inpaint_batch`, relative to the repository
    description: str
    tags: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[ScheduleSpec, ...] = ()
    concurrency_limit: int | None = None
    work_pool: str | None = WORK_POOL  # None when served from a process

    @property
    def module_path(self) -> str:
        """`flows/inpaint_batch.py:inpaint_batch` → `flows.inpaint_batch.inpaint_batch`."""
        path, func = self.entrypoint.split(":")
        return f"{path.removesuffix('.py').replace('/', '.')}.{func}"


def deployments() -> list[DeploymentSpec]:
    """Every deployment of the project. Edit here, then `inpaint-flows prefect-yaml`."""
    return [
        DeploymentSpec(
            name=NIGHTLY,
            entrypoint="flows/inpaint_batch.py:inpaint_batch",
            description=(
                "Inpaint every image of the configured folder each night. Jobs done on an "
                "earlier night are skipped (the ledger in OUT/.inpaint-state remembers them), so "
                "a night only pays for new or changed inputs. Two runs over the same output "
                "folder would race for the same jobs: one at a time (concurrency limit 1)."
            ),
            tags=("inpaint", "nightly"),
            parameters={
                # Any field of inpaint_flows.settings.BatchSettings may be set here. The key is
                # the NAME of a Prefect Secret block, never the key itself.
                SETTINGS: {
                    "source": "examples",
                    "out": "out/nightly",
                    "batch_name": NIGHTLY,
                    "api_key_secret": "novita-api-key",
                    "images_per_minute": 10,  # the account's limit (Novita's default)
                    "max_in_flight": 8,
                    "poll_timeout_s": 900,
                }
            },
            schedules=(
                ScheduleSpec(cron="0 2 * * *", timezone="Europe/Berlin", slug="nightly-0200"),
            ),
            concurrency_limit=1,
        ),
        DeploymentSpec(
            name=ON_DEMAND,
            entrypoint="flows/inpaint_batch.py:inpaint_batch",
            description=(
                "Inpaint a folder when asked (no schedule): `prefect deployment run "
                "inpaint-batch/on-demand --params '{\"settings\": {...}}'`. Runs over different "
                "folders may run at once, on any worker of the pool; with an account limit "
                "recorded (`inpaint-flows limits set`) they share it."
            ),
            tags=("inpaint", ON_DEMAND),
            parameters={
                SETTINGS: {
                    "source": "examples",
                    "out": "out/on-demand",
                    "api_key_secret": "novita-api-key",
                }
            },
        ),
        DeploymentSpec(
            name=SHARD,
            entrypoint="flows/inpaint_batch.py:inpaint_batch",
            description=(
                "One part of a batch run with `shards` > 1: its parent run starts one run of "
                "this deployment per part, on any worker of the pool, then writes one report. "
                "Not for running by hand."
            ),
            tags=("inpaint", SHARD),
            parameters={SETTINGS: {"source": "examples"}},
        ),
        DeploymentSpec(
            name=RERUN_FAILED,
            entrypoint="flows/inpaint_batch.py:rerun_failed",
            description=(
                "Redo the failed and invalid rows of a report (after fixing the inputs) and "
                "merge the outcome into it. Succeeded rows are never sent again; a job whose "
                "remote task is still alive is polled, not paid for twice."
            ),
            tags=("inpaint", "rerun"),
            parameters={"report": "out/nightly/report.csv"},
        ),
    ]


@dataclass(frozen=True)
class ServeOptions:
    """Overrides for the nightly batch; None keeps the definition's value."""

    source: str | None = None
    out: str | None = None
    cron: str | None = None
    timezone: str | None = None
    api_key_secret: str | None = None  # "" means: no Secret block (env key or local server)
    canary: int | None = None  # jobs to try and have approved before the rest of each night
    state_url: str | None = None  # a shared job store (every batch deployment)
    storage_block: str | None = None  # the bucket's credentials block (every batch deployment)


def with_options(specs: Sequence[DeploymentSpec], options: ServeOptions) -> list[DeploymentSpec]:
    """The nightly batch with `options` applied; a new output folder moves rerun-failed's
    default report with it (and, in a bucket, on-demand's folders beside it, since a local
    folder in a container vanishes with it). Paths are taken as given."""
    result = []
    for spec in specs:
        params = dict(spec.parameters)
        batch = dict(params.get(SETTINGS) or {})
        schedules = spec.schedules
        if spec.name == NIGHTLY:
            batch.update({k: v for k, v in (("source", options.source), ("out", options.out)) if v})
            if options.api_key_secret is not None:
                batch["api_key_secret"] = options.api_key_secret or None
            if options.canary is not None:
                batch["canary"] = options.canary
            if options.cron or options.timezone:
                base = schedules[0] if schedules else ScheduleSpec(cron="0 2 * * *")
                schedules = (
                    replace(
                        base,
                        cron=options.cron or base.cron,
                        timezone=options.timezone or base.timezone,
                        active=True,
                    ),
                )
        elif spec.name == ON_DEMAND and options.out and is_remote(options.out):
            batch["out"] = join(parent_of(options.out), ON_DEMAND)
            batch["source"] = options.source or batch["source"]
        elif spec.name == RERUN_FAILED:
            if options.out:
                params["report"] = join(options.out, "report.csv")
            if options.storage_block:
                params["storage_block"] = options.storage_block
        if SETTINGS in params:
            for key in ("state_url", "storage_block"):
                if getattr(options, key):
                    batch[key] = getattr(options, key)
            params[SETTINGS] = batch
        result.append(replace(spec, parameters=params, schedules=schedules))
    return result


def served(
    specs: Sequence[DeploymentSpec], options: ServeOptions, cwd: Path | None = None
) -> list[DeploymentSpec]:
    """The deployments as `serve` runs them: `options` applied (their paths taken from `cwd`),
    every other relative path made absolute against the repository, no work pool."""
    here = cwd or Path.cwd()
    options = replace(
        options,
        source=_absolute_path(options.source, here),
        out=_absolute_path(options.out, here),
    )
    return [
        replace(spec, parameters=_absolute(spec.parameters, REPO_ROOT), work_pool=None)
        for spec in with_options(specs, options)
    ]


def _absolute_path(value: str | None, root: Path) -> str | None:
    if not value or is_remote(value) or Path(value).is_absolute():
        return value
    return str(root / value)


def _absolute(parameters: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """Paths among `parameters` (and among its batch settings) made absolute against `root`."""
    out = dict(parameters)
    if isinstance(out.get(SETTINGS), Mapping):
        out[SETTINGS] = _absolute(out[SETTINGS], root)
    for key in PATH_PARAMETERS:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = _absolute_path(value, root)
    return out


def runner_deployments(specs: Sequence[DeploymentSpec]) -> list[RunnerDeployment]:
    """Prefect deployments served from this process (module entrypoints: any cwd works)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType
    from prefect.utilities.importtools import import_object

    result = []
    for spec in specs:
        flow = import_object(spec.module_path)
        result.append(
            flow.to_deployment(
                name=spec.name,
                parameters=spec.parameters,
                schedules=[
                    Cron(s.cron, timezone=s.timezone, slug=s.slug, active=s.active)
                    for s in spec.schedules
                ],
                tags=list(spec.tags),
                description=spec.description,
                concurrency_limit=spec.concurrency_limit,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return result


_HEADER = """\
# When and where the inpainting flows run. GENERATED from inpaint_flows/deployments.py by
# `inpaint-flows prefect-yaml > deployments/prefect.yaml`: edit the definitions there (or pass
# that command --source/--out/--cron/--timezone) and render again; a test fails when this file
# and the definitions differ. From the repository root, against any Prefect server:
#
#   prefect work-pool create inpaint-pool --type process      # once per server
#   prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml
#   prefect worker start --pool inpaint-pool                   # from the repo root, in its venv
#
# Paths in `parameters` are relative to the repository root: the pull step makes the worker run
# every flow there; the build step records that root where `prefect deploy` runs, so no path is
# hand-edited. Secrets never appear here: `api_key_secret` is the NAME of a Prefect Secret block
# holding the Novita key (see deployments/README.md).
"""


@dataclass(frozen=True)
class ContainerTarget:
    """Deployments for a docker or Kubernetes work pool: each flow run in a fresh container of
    `image` (built from deployments/containers/Dockerfile), the project at `/opt/inpaint-flows`."""

    image: str
    pool: str = "inpaint-containers"
    workdir: str = "/opt/inpaint-flows"


_CONTAINER_HEADER = """\
# The same deployments for a docker or Kubernetes work pool: every flow run in a fresh
# container, its inputs and outputs in a bucket. GENERATED from inpaint_flows/deployments.py by
#
#   inpaint-flows prefect-yaml --image ghcr.io/OWNER/inpaint-flows:latest \\
#     --source s3://YOUR-BUCKET/in --out s3://YOUR-BUCKET/out \\
#     --state-url postgresql://inpaint@db.internal/inpaint \\
#     --storage-block aws-credentials/inpaint-bucket > deployments/containers/prefect.yaml
#
# (a test fails when this file and that command's output differ). Then, from the repo root:
#
#   docker build -f deployments/containers/Dockerfile -t ghcr.io/OWNER/inpaint-flows:latest .
#   docker push ghcr.io/OWNER/inpaint-flows:latest
#   prefect work-pool create inpaint-containers --type docker       # or --type kubernetes
#   prefect --no-prompt deploy --all --prefect-file deployments/containers/prefect.yaml
#   prefect worker start --pool inpaint-containers    # docker pools: pip install prefect-docker
#
# Nothing secret is here: the Novita key is the NAME of a Secret block, the bucket's
# credentials the NAME of an AwsCredentials block (or the pool's environment / the node's
# role), the database password in the pool's PGPASSWORD (or the whole URL in
# INPAINT_STATE_URL). Containers share the job store in PostgreSQL, so a run in a new
# container resumes the last one's work and shards never pay twice.
"""


def render_prefect_yaml(
    specs: Sequence[DeploymentSpec], container: ContainerTarget | None = None
) -> str:
    """prefect.yaml for `prefect deploy --all`: the project's build and pull steps, then `specs`.

    With `container`, for a docker or Kubernetes work pool instead: no build step (the image
    is built and pushed with docker), every run starts in the image's project folder.
    """
    import yaml

    if container is not None:
        project: dict[str, Any] = {
            "name": "inpaint-flows",
            "prefect-version": PREFECT_VERSION,
            "build": None,
            "push": None,
            "pull": [
                {
                    "prefect.deployments.steps.set_working_directory": {
                        "directory": container.workdir
                    }
                }
            ],
            "deployments": [_yaml_entry(spec, container) for spec in specs],
        }
        body = yaml.safe_dump(project, sort_keys=False, allow_unicode=True, width=92)
        return _CONTAINER_HEADER + "\n" + body
    project = {
        "name": "inpaint-flows",
        "prefect-version": PREFECT_VERSION,
        "build": [
            {
                "prefect.deployments.steps.run_shell_script": {
                    "id": "repo-dir",
                    "script": "pwd",
                    "stream_output": False,
                }
            }
        ],
        "push": None,
        "pull": [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": "{{ repo-dir.stdout }}"
                }
            }
        ],
        "deployments": [_yaml_entry(spec) for spec in specs],
    }
    body = yaml.safe_dump(project, sort_keys=False, allow_unicode=True, width=92)
    return _HEADER + "\n" + body


def _yaml_entry(spec: DeploymentSpec, container: ContainerTarget | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "entrypoint": spec.entrypoint,
        "tags": list(spec.tags),
        "parameters": spec.parameters,
    }
    if spec.schedules:
        entry["schedules"] = [
            {k: v for k, v in vars(s).items() if v is not None} for s in spec.schedules
        ]
    if spec.concurrency_limit is not None:
        entry["concurrency_limit"] = spec.concurrency_limit
    if spec.work_pool is not None:
        # Every run sends heartbeats, so a run whose machine died is marked Crashed.
        variables: dict[str, Any] = {"env": dict(HEARTBEAT_ENV)}
        if container is not None:
            variables = {"image": container.image, **variables}
        entry["work_pool"] = {
            "name": container.pool if container else spec.work_pool,
            "work_queue_name": "default",
            "job_variables": variables,
        }
    return entry
