"""Show a batch's canary: its own gallery and dashboard artifacts (wraps `inpaint_flows.canary`)."""

from __future__ import annotations

import asyncio

from prefect import task
from prefect.artifacts import acreate_link_artifact, acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from inpaint_flows import artifacts
from inpaint_flows.canary import (
    CanaryReview,
    canary_gallery_dir,
    review_markdown,
    with_absolute_outputs,
)
from inpaint_flows.gallery import write_gallery
from inpaint_flows.models import JobOutcome
from inpaint_flows.settings import BatchSettings


@task(name="publish-canary", task_run_name="publish the canary for review", cache_policy=NO_CACHE)
async def publish_canary(
    outcomes: list[JobOutcome], settings: BatchSettings, waiting: int, api: str | None
) -> CanaryReview:
    """Write `OUT/canary/index.html` and publish the canary's summary and gallery link.

    The batch's own report and gallery are left alone until the batch ends.
    """
    name = settings.name
    gallery = await asyncio.to_thread(
        write_gallery,
        with_absolute_outputs(outcomes, settings.out),
        canary_gallery_dir(settings.out),
        title=f"Canary of {name}: awaiting approval",
        api=api,
    )
    review = CanaryReview(
        batch_name=name,
        outcomes=tuple(outcomes),
        waiting=waiting,
        gallery=str(gallery),
        defaults=settings.defaults,
        timeout_s=settings.canary_timeout_s,
        timeout_action=settings.canary_timeout_action,
    )
    await acreate_markdown_artifact(
        markdown=review_markdown(review),
        key=artifacts.artifact_key(name, "canary"),
        description=review.headline(),
    )
    await acreate_link_artifact(
        link=gallery.resolve().as_uri(),
        link_text=f"Open the canary gallery of {name} ({len(outcomes)} jobs)",
        key=artifacts.artifact_key(name, "canary-gallery"),
        description="The canary's results; a file:// link, it opens where the output folder is",
    )
    return review
