"""Serve the project's deployments without a work pool, and create its failure automation.

The deployments are defined once (`inpaint_flows.deployments`); `serve` builds Prefect
deployments from those definitions and runs their flow runs from the current process.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from inpaint_flows.deployments import (
    HEARTBEAT_ENV,
    HEARTBEAT_S,
    REPO_ROOT,
    ServeOptions,
    deployments,
    runner_deployments,
    served,
)
from inpaint_flows.interrupts import heed_sigint

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

AUTOMATION_FILE = REPO_ROOT / "deployments" / "automation-failed-run.yaml"
CRASH_AUTOMATION_FILE = REPO_ROOT / "deployments" / "automation-crashed-run.yaml"


def serve(options: ServeOptions) -> None:
    """Serve every deployment until Ctrl-C, which pauses the deployments."""
    from prefect import serve as prefect_serve

    heed_sigint()
    # The flow runs served from here are this process's children: they send heartbeats too.
    for key, value in HEARTBEAT_ENV.items():
        os.environ.setdefault(key, value)
    prefect_serve(*runner_deployments(served(deployments(), options)))


def load_automation(
    block_document_id: str | None = None, path: str | Path = AUTOMATION_FILE
) -> AutomationCore:
    """An automation of `deployments/`, its notification actions pointed at one block."""
    import yaml
    from prefect.events.schemas.automations import AutomationCore

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for action in data.get("actions", []):
        if "block_document_id" in action and block_document_id is not None:
            action["block_document_id"] = block_document_id
    return AutomationCore.model_validate(data)


async def _replace(automation: AutomationCore) -> str:
    """Create `automation`, replacing any of the same name; returns its id."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        for existing in await client.read_automations_by_name(automation.name):
            await client.delete_automation(existing.id)
        return str(await client.create_automation(automation))


async def create_crash_detection(
    within_s: float | None = None, path: str | Path = CRASH_AUTOMATION_FILE
) -> str:
    """Create (or replace) the automation that marks a run Crashed when its heartbeats stop.

    `within_s` overrides how long a run may go without a heartbeat (default: the file's, three
    heartbeats); it must leave room for one late heartbeat.
    """
    automation = load_automation(path=path)
    if within_s is not None:
        if within_s < HEARTBEAT_S + 5:
            raise ValueError(
                f"--within {within_s:g}: runs send a heartbeat every {HEARTBEAT_S} s, so a "
                f"live run would be marked Crashed; give at least {HEARTBEAT_S + 5} s."
            )
        trigger = automation.trigger.model_copy(update={"within": timedelta(seconds=within_s)})
        automation = automation.model_copy(update={"trigger": trigger})
    return await _replace(automation)


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
    return await _replace(load_automation(str(document.id), path))
