"""The progress artifact on a real (temporary) Prefect API: what the dashboard shows at the end."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

import tasks.artifacts
from inpaint_flows import progress
from tasks.artifacts import LiveProgress

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def _progress_on_server(artifact_id: UUID) -> Any:
    async with get_client() as client:
        (artifact,) = await client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id]))
        )
    return artifact.data


async def test_progress_ends_at_the_latest_count_when_chunks_finish_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first update is slow to reach the server (a busy API); later ones must not be
    overtaken by it, or the dashboard would end a finished run at 25 %."""
    real_update = tasks.artifacts.aupdate_progress_artifact
    calls = 0

    async def first_one_slow(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.3)
        return await real_update(**kwargs)

    monkeypatch.setattr(tasks.artifacts, "aupdate_progress_artifact", first_one_slow)

    @flow
    async def four_chunks_at_once() -> LiveProgress:
        live = await LiveProgress.start("progress-race", total=4)
        await asyncio.gather(*(live.advance(1) for _ in range(4)))
        return live

    heard: list[tuple[int, int]] = []
    with progress.listening(lambda done, total: heard.append((done, total))):
        live = await four_chunks_at_once()
    assert heard == [(1, 4), (2, 4), (3, 4), (4, 4)]  # the CLI's bar hears every chunk, in order
    assert live.done == 4
    assert calls == 4
    assert await _progress_on_server(live.artifact_id) == 100


async def test_an_empty_batch_leaves_progress_at_zero_without_dividing_by_zero() -> None:
    @flow
    async def nothing_to_do() -> LiveProgress:
        live = await LiveProgress.start("progress-empty", total=0)
        await live.advance(0)
        return live

    live = await nothing_to_do()
    assert await _progress_on_server(live.artifact_id) == 0
