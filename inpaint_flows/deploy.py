"""Run the deployments of `deployments/prefect.yaml` without a work pool, and its automation.

`deployments/prefect.yaml` is the one definition of each deployment (name, entrypoint,
parameters, schedule, tags). `prefect deploy --all` sends it to a server for a work pool's
workers; `inpaint-flows serve` (this module) builds the same deployments from the same file and
serves them from the current process, so the two ways of scheduling cannot drift apart.

Paths among a deployment's parameters are relative to the repository root in the YAML (a
worker's pull step runs every flow there); here they are made absolute against that root, and
options given on the command line against the caller's directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events.schemas.automations import AutomationCore

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
AUTOMATION_FILE = REPO_ROOT / "deployments" / "automation-failed-run.yaml"

NIGHTLY = "nightly"
RERUN_FAILED = "rerun-failed"
PATH_PARAMETERS = ("source", "out", "mask", "state_dir", "report")
SETTINGS = "settings"  # the batch flow's one parameter (`BatchSettings`)


@dataclass(frozen=True)
class ScheduleSpec:
    cron: str
    timezone: str | None = None
    slug: str | None = None
    active: bool = True


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of `deployments:` in prefect.yaml, as far as this project uses it."""

    name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[ScheduleSpec, ...] = ()
    tags: tuple[str, ...] = ()
    description: str | None = None
    concurrency_limit: int | None = None
    work_pool: str | None = None

    @property
    def module_path(self) -> str:
        """`flows/inpaint_batch.py:inpaint_batch` → `flows.inpaint_batch.inpaint_batch`."""
        path, func = self.entrypoint.split(":")
        return f"{path.removesuffix('.py').replace('/', '.')}.{func}"


def load_specs(prefect_file: str | Path = PREFECT_FILE) -> list[DeploymentSpec]:
    """The deployments of a prefect.yaml (YAML anchors resolved, templates left alone)."""
    import yaml

    data = yaml.safe_load(Path(prefect_file).read_text(encoding="utf-8"))
    specs = []
    for entry in data.get("deployments") or []:
        schedules = tuple(
            ScheduleSpec(
                cron=s["cron"],
                timezone=s.get("timezone"),
                slug=s.get("slug"),
                active=s.get("active", True),
            )
            for s in entry.get("schedules") or []
            if "cron" in s
        )
        limit = entry.get("concurrency_limit")
        if isinstance(limit, dict):
            limit = limit.get("limit")
        specs.append(
            DeploymentSpec(
                name=entry["name"],
                entrypoint=entry["entrypoint"],
                parameters=dict(entry.get("parameters") or {}),
                schedules=schedules,
                tags=tuple(entry.get("tags") or ()),
                description=entry.get("description"),
                concurrency_limit=limit,
                work_pool=(entry.get("work_pool") or {}).get("name"),
            )
        )
    return specs


def _absolute(parameters: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """Paths among `parameters` (and among its batch settings) made absolute against `root`."""
    out = dict(parameters)
    if isinstance(out.get(SETTINGS), Mapping):
        out[SETTINGS] = _absolute(out[SETTINGS], root)
    for key in PATH_PARAMETERS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str(root / value)
    return out


@dataclass(frozen=True)
class ServeOptions:
    """Overrides for the nightly batch when serving; None keeps the YAML's value."""

    source: str | None = None
    out: str | None = None
    cron: str | None = None
    timezone: str | None = None
    api_key_secret: str | None = None  # "" means: no Secret block (env key or local server)


def apply_options(
    specs: Sequence[DeploymentSpec], options: ServeOptions, cwd: Path | None = None
) -> list[DeploymentSpec]:
    """Make paths absolute and apply the command line's overrides to the nightly batch.

    A new output folder moves the rerun-failed deployment's default report with it.
    """
    here = cwd or Path.cwd()
    cli = _absolute(
        {k: v for k, v in (("source", options.source), ("out", options.out)) if v}, here
    )
    result = []
    for spec in specs:
        params = _absolute(spec.parameters, REPO_ROOT)
        schedules = spec.schedules
        if spec.name == NIGHTLY:
            batch = dict(params.get(SETTINGS) or {})
            batch.update(cli)
            if options.api_key_secret is not None:
                batch["api_key_secret"] = options.api_key_secret or None
            params[SETTINGS] = batch
            if options.cron or options.timezone:
                base = schedules[0] if schedules else ScheduleSpec(cron="0 2 * * *")
                schedules = (
                    ScheduleSpec(
                        cron=options.cron or base.cron,
                        timezone=options.timezone or base.timezone,
                        slug=base.slug,
                        active=True,
                    ),
                )
        elif spec.name == RERUN_FAILED and "out" in cli:
            params["report"] = str(Path(cli["out"]) / "report.csv")
        result.append(
            DeploymentSpec(
                name=spec.name,
                entrypoint=spec.entrypoint,
                parameters=params,
                schedules=schedules,
                tags=spec.tags,
                description=spec.description,
                concurrency_limit=spec.concurrency_limit,
                work_pool=None,
            )
        )
    return result


def runner_deployments(specs: Sequence[DeploymentSpec]) -> list[RunnerDeployment]:
    """Prefect deployments served from this process (module entrypoints: any cwd works)."""
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType
    from prefect.utilities.importtools import import_object

    deployments = []
    for spec in specs:
        flow = import_object(spec.module_path)
        deployments.append(
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
    return deployments


def serve(options: ServeOptions, prefect_file: str | Path = PREFECT_FILE) -> None:
    """Serve every deployment of `prefect_file` until Ctrl-C, which pauses the deployments."""
    from prefect import serve as prefect_serve

    _heed_sigint()
    specs = apply_options(load_specs(prefect_file), options)
    prefect_serve(*runner_deployments(specs))


def _heed_sigint() -> None:
    """Make SIGINT (Ctrl-C, `kill -INT`) stop serving even if this process inherited it ignored.

    A command started in the background of a non-interactive shell (`inpaint-flows serve &` in
    a script, a CI job started that way, and everything it starts) inherits SIGINT as ignored.
    Python then installs no KeyboardInterrupt handler, nor does asyncio, so the signal was
    dropped: serve kept running, and when it was killed instead its deployments stayed active
    with nothing to run them. Servers such as uvicorn take SIGINT back the same way. A handler
    someone installed on purpose is left alone.
    """
    import signal
    import threading

    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def load_automation(block_document_id: str, path: str | Path = AUTOMATION_FILE) -> AutomationCore:
    """The example failure automation, pointed at one notification block."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for action in data.get("actions", []):
        if "block_document_id" in action:
            action["block_document_id"] = block_document_id
    return AutomationCore.model_validate(data)


async def create_failure_automation(block: str, path: str | Path = AUTOMATION_FILE) -> str:
    """Create (or replace) the failure automation for a notification block named `type/name`.

    `block` is e.g. `slack-webhook/inpaint-alerts`: create the block first in the UI (Blocks)
    or in Python. Returns the automation's id.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    block_type, _, name = block.partition("/")
    if not block_type or not name or "/" in name:
        raise ValueError(
            f"Notification block {block!r}: give it as TYPE/NAME, e.g. "
            "slack-webhook/inpaint-alerts (`prefect block ls` lists the current server's blocks)."
        )
    async with get_client() as client:
        try:
            # Only its id is needed: never fetch the webhook URL or other secrets.
            document = await client.read_block_document_by_name(
                name, block_type, include_secrets=False
            )
        except ObjectNotFound:
            raise ValueError(
                f"No {block_type!r} block named {name!r} on {client.api_url}: create it first "
                "(UI: Blocks → +, or `prefect block ls` to see the names there), then run this "
                "again."
            ) from None
        automation = load_automation(str(document.id), path)
        for existing in await client.read_automations_by_name(automation.name):
            await client.delete_automation(existing.id)
        return str(await client.create_automation(automation))
