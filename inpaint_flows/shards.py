"""One batch on several workers: split its jobs into shards, run each as a child flow run, and
gather every shard's rows back into the one report.

The parent run (`settings.shards > 1`) discovers the jobs, splits their names round-robin
(`split`), and starts one run of the `shard` deployment per part on the work pool; each child
runs only its names (`only`) over the same source, output folder and job store, and saves its
rows to `rows_path` instead of writing a report. The parent waits for every child, then writes
one report, one gallery and one set of artifacts from all rows. A child that ends without rows
(its process died, it was cancelled) leaves its jobs as `failed` / `SHARD_CRASHED`; what it paid
for is in the job store, so a rerun polls those tasks instead of paying again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import TypeAdapter

from inpaint_flows.containment import crashed_chunk_outcomes
from inpaint_flows.deployments import SHARD_DEPLOYMENT
from inpaint_flows.errors import ConfigError
from inpaint_flows.locations import is_remote, join, read_bytes, write_bytes
from inpaint_flows.models import Job, JobOutcome
from inpaint_flows.settings import BatchSettings
from inpaint_flows.storage import atomic_write_bytes

SHARD_CRASHED = "SHARD_CRASHED"
_ROWS = TypeAdapter(list[JobOutcome])


def split(names: Sequence[str], shards: int) -> list[list[str]]:
    """`names` in `shards` parts of near-equal size (round-robin over the sorted names, so a
    rerun splits the same way); empty parts are left out."""
    ordered = sorted(names)
    parts = [ordered[i::shards] for i in range(max(1, shards))]
    return [part for part in parts if part]


def shard_settings(settings: BatchSettings, index: int, count: int) -> BatchSettings:
    """A child's settings: the batch's, run here (no further shards), with a name of its own
    for its progress artifact."""
    return settings.replace(
        shards=1, canary=0, batch_name=f"{settings.name}-shard-{index + 1}-of-{count}"
    )


def rows_path(out: str | Path, parent_run: str, index: int) -> str:
    """Where a shard leaves its rows: under the output folder (in the bucket, when it is one,
    so children in other containers reach it)."""
    return join(os.fspath(out), f".shards/{parent_run}/{index + 1}.json")


def save_rows(outcomes: Sequence[JobOutcome], path: str | Path) -> None:
    """A shard's report rows, written whole (the parent reads them once the child ended)."""
    data = _ROWS.dump_json(list(outcomes))
    if is_remote(path):
        write_bytes(os.fspath(path), data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def load_rows(path: str | Path) -> list[JobOutcome] | None:
    """A shard's rows, or None when the child left none (it did not finish)."""
    try:
        data = read_bytes(os.fspath(path)) if is_remote(path) else Path(path).read_bytes()
        return _ROWS.validate_json(data)
    except (FileNotFoundError, ValueError):  # none, or cut short: the child did not finish
        return None


def rows_of_shards(
    jobs: Sequence[Job],
    parts: Sequence[Sequence[str]],
    paths: Sequence[str | Path],
    children: Sequence[object],
) -> list[JobOutcome]:
    """Every shard's rows; a shard that left none (`children[i]` is its flow run, or the error
    that kept it from running) gives `failed` / `SHARD_CRASHED` rows with the cause."""
    by_name = {job.name: job for job in jobs}
    outcomes: list[JobOutcome] = []
    for names, path, child in zip(parts, paths, children, strict=True):
        rows = load_rows(path)
        if rows is None:
            state = getattr(child, "state", None)
            cause = f"{child}" if state is None else f"it ended {state.name}: {state.message}"
            rows = crashed_chunk_outcomes(
                [by_name[name] for name in names],
                cause,
                api=None,
                reason=SHARD_CRASHED,
                what="the shard flow run doing it left no rows",
            )
        outcomes += rows
    return outcomes


async def require_shard_deployment() -> None:
    """Stop at once, saying what to do, when there is no shard deployment to run parts on."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_deployment_by_name(SHARD_DEPLOYMENT)
        except ObjectNotFound:
            raise ConfigError(
                f"shards > 1 runs the batch's parts as runs of the {SHARD_DEPLOYMENT} "
                f"deployment, and {client.api_url} has none: deploy it (`prefect --no-prompt "
                "deploy --all --prefect-file deployments/prefect.yaml`) and start workers on its "
                "pool, or set shards to 1.",
                reason="NO_SHARD_DEPLOYMENT",
            ) from None
