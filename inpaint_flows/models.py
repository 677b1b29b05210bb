"""Typed data that travels between the pipeline's stages.

Every model here is a frozen pydantic model made of plain values (paths as strings, numbers,
enums), so Prefect can hash it for cache keys and persist it as a task result, and so a report
row can be rebuilt from it without touching the network.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from inpaint_flows.contract import (
    DEFAULT_MODEL,
    FINAL_TASK_STATUSES,
    MAX_EMBEDDINGS,
    MAX_LORAS,
    CheckpointName,
    ClipSkip,
    FullRes,
    FullResPadding,
    GuidanceScale,
    ImageNum,
    MaskBlur,
    MaskInvert,
    ModelRef,
    NoiseMultiplier,
    Prompt,
    ResponseImageType,
    SamplerName,
    Seed,
    Steps,
    Strength,
    TaskStatus,
)
from inpaint_flows.masks import MaskRecipe


class FrozenModel(BaseModel):
    """A typed record that never changes in place; `evolve` makes a validated copy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def evolve(self, **changes: Any) -> Self:
        """A copy with `changes`, validated like a new record: a misspelt or mistyped field is
        an error (`model_copy(update=...)` would accept both silently)."""
        return type(self).model_validate({**dict(self), **changes})


class LoRA(FrozenModel):
    model_name: ModelRef
    strength: Strength


class Embedding(FrozenModel):
    model_name: ModelRef


class InpaintParams(FrozenModel):
    """Every request field of `POST /v3/async/inpainting` except the two images.

    Defaults are the values of the project's original example request. Each field's type and
    range is the contract's (`inpaint_flows.contract`), the same the local server checks, so a
    bad batch default or manifest value is refused before anything is paid for.
    """

    model_name: CheckpointName = DEFAULT_MODEL
    prompt: Prompt = "a clean, natural background"
    negative_prompt: Prompt | None = "blurry, low quality, artifacts"
    image_num: ImageNum = 1
    steps: Steps = 25
    guidance_scale: GuidanceScale = 7.5
    sampler_name: SamplerName = "Euler a"
    seed: Seed = -1
    mask_blur: MaskBlur | None = 1
    sd_vae: ModelRef | None = None
    loras: tuple[LoRA, ...] | None = Field(default=None, max_length=MAX_LORAS)
    embeddings: tuple[Embedding, ...] | None = Field(default=None, max_length=MAX_EMBEDDINGS)
    clip_skip: ClipSkip | None = 1
    strength: Strength | None = 0.85
    inpainting_full_res: FullRes = 1
    inpainting_full_res_padding: FullResPadding = 32
    inpainting_mask_invert: MaskInvert = 0
    initial_noise_multiplier: NoiseMultiplier = 1.0
    response_image_type: ResponseImageType = "png"

    def request_fields(self) -> dict[str, Any]:
        """The `request` object's fields (without images), unset optionals left out."""
        data = self.model_dump(exclude={"response_image_type"}, exclude_none=True, mode="json")
        return data

    def extra_fields(self) -> dict[str, Any]:
        """The `extra` object sent beside `request`."""
        return {"response_image_type": self.response_image_type}

    def with_overrides(self, overrides: dict[str, Any]) -> InpaintParams:
        """A copy with some fields replaced, validated like a fresh model; itself when there are
        none (frozen, so the rows of a manifest without overrides share one: ~2.8 KB per job
        less for the whole run)."""
        if not overrides:
            return self
        return InpaintParams.model_validate({**self.model_dump(), **overrides})


class JobStatus(StrEnum):
    """What happened to one input; one value per report row."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INVALID = "invalid"
    SKIPPED_ALREADY_DONE = "skipped-already-done"
    # Never sent (nothing paid): a batch-wide fault (auth, balance, unreachable API) or an
    # interruption stopped new submits first. Rerunning sends it.
    NOT_SUBMITTED = "not-submitted"
    PENDING = "pending"  # never written to a final report: a job not reached yet


# Rows that rerun-failed redoes, that fail a run, and that the summary counts as failures.
RERUN_STATUSES = frozenset({JobStatus.FAILED, JobStatus.INVALID, JobStatus.NOT_SUBMITTED})


class Job(FrozenModel):
    """One input as found on disk: what to send, before anything was read or checked.

    `name` is the input's path relative to the source root (POSIX separators); it is unique in a
    batch and is what output names derive from. `problem` holds a discovery-time error (missing
    mask, bad manifest value): such a job is reported invalid and never submitted;
    `problem_reason` is that error's reason token for the report (e.g. `MISSING_MASK`).
    `mask_recipe` says how the mask is drawn when it is not only the file at `mask_path`
    (annotations, manifest shapes, a region, grow/shrink/feather); see `masks`.
    """

    name: str
    image_path: str
    mask_path: str | None
    params: InpaintParams
    output_stem: str
    problem: str | None = None
    problem_reason: str | None = None
    mask_recipe: MaskRecipe | None = None

    @property
    def mask_source(self) -> str | None:
        """The report's `mask_source`: `file`, or the recipe's sources (`coco+region`)."""
        if self.mask_recipe is not None:
            return self.mask_recipe.sources(self.mask_path is not None) or None
        return "file" if self.mask_path is not None else None

    @property
    def mask_ops(self) -> str | None:
        """The report's `mask_ops`: the grow/shrink/feather applied (e.g. `grow 8`)."""
        return (self.mask_recipe.ops.describe() or None) if self.mask_recipe else None


class PreparedJob(FrozenModel):
    """A job whose image and mask were read and checked; nothing is held in memory.

    `job_key` hashes the image bytes, mask bytes and request parameters: the same key means the
    same paid request, so it is the idempotence key for submits, the ledger and caching.
    """

    job: Job
    job_key: str
    # What was checked, by content: a submit sends these bytes or nothing (`payload`).
    image_sha256: str
    mask_sha256: str  # a drawn mask: of its pixels (it is drawn again to be sent)
    width: int
    height: int
    mask_coverage_pct: float
    image_bytes: int
    mask_bytes: int
    mask_warnings: tuple[str, ...] = ()  # e.g. a box clipped at the image's edge


def job_key_for(image_sha256: str, mask_sha256: str, params: InpaintParams) -> str:
    """The content hash that identifies one paid request."""
    blob = json.dumps(
        {"image": image_sha256, "mask": mask_sha256, "params": params.model_dump(mode="json")},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultImage(FrozenModel):
    image_url: str
    image_url_ttl: int | None = None
    image_type: str | None = None


class TaskResult(FrozenModel):
    """The parts of a task-result response the pipeline uses."""

    task_id: str
    status: TaskStatus
    reason: str = ""
    eta: float | None = None
    progress_percent: float | None = None
    images: tuple[ResultImage, ...] = ()
    seed: str | None = None
    # How long the server took from accepting the task to completing it, by its own clock
    # (`extra.debug_info`); None when it does not say (the times may be "").
    server_duration_s: float | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_TASK_STATUSES


class JobOutcome(FrozenModel):
    """One report row: what was asked for one input and what happened.

    Fields are in report order (who, what happened, inputs, the task); the report's columns are
    derived from them (`inpaint_flows.report`), `params` becoming one `param_*` column per field.
    """

    name: str
    status: JobStatus
    reason: str | None = None  # Novita reason token, or our own token for local errors
    message: str | None = None  # a sentence for a person: what happened and what to do
    image_path: str
    mask_path: str | None
    width: int | None = None
    height: int | None = None
    mask_coverage_pct: float | None = None
    mask_source: str | None = None  # file, coco, yolo, labelme, voc, manifest, region (+-joined)
    mask_ops: str | None = None  # e.g. "grow 4, feather 2"
    mask_warnings: str | None = None  # what was fixed on the way, e.g. a box clipped at an edge
    job_key: str | None = None
    task_id: str | None = None
    attempts: int = 0  # HTTP attempts across submit retries
    submits: int = 0  # submits that created a (paid) task, across runs
    polls: int = 0
    rate_limited: int = 0  # 429s this job's submits met (each waited, none failed the job)
    submitted_at: str | None = None  # ISO 8601 UTC
    finished_at: str | None = None
    latency_s: float | None = None
    seed_used: str | None = None
    outputs: tuple[str, ...] = ()
    api: str | None = None  # which API produced this row, e.g. "local (OpenCV) http://..."
    params: InpaintParams
