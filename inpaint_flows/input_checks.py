"""Checking one job's inputs before anything is paid for: `prepare_job`, pure, no network.

Every check the API would make is made here first, so an input the API would refuse is reported
as invalid and never paid for. It reads the files as `pictures` does, and measures what would be
sent with `payload`'s own plans: what is checked is what is sent (the size limit applies to the
exact bytes `encode_payload` returns, and the mask is compared with the image after both had
their EXIF orientation applied).

Decisions, in one place:

- Masks: soft values are allowed; a mask is empty when no pixel is above `EMPTY_MASK_LEVEL`
  (1 of 255) after `inpainting_mask_invert`. An all-white mask is allowed (it repaints
  everything).
- Drawn masks (made by `pictures.drawn_mask`) are checked like a file and their pixels (not a
  file) go into the job key: the same shapes pay once, a changed shape is a new job.
- The job key hashes the image file's bytes, the mask file's bytes (or the drawn mask's pixels)
  and the request parameters (`models.job_key_for`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, ImageOps

from inpaint_flows.errors import MaskError
from inpaint_flows.jobs import problem_error
from inpaint_flows.models import Job, PreparedJob, job_key_for
from inpaint_flows.payload import check_payload, plan_image, plan_mask, png_size
from inpaint_flows.pictures import (
    IMAGE,
    MASK,
    SourcePath,
    check_mask_size,
    drawn_mask,
    exif_orientation,
    mask_coverage,
    open_picture,
    oriented_size,
    source_sha256,
)

__all__ = ["EMPTY_MASK_LEVEL", "is_empty_mask", "prepare_job"]

EMPTY_MASK_LEVEL = 1  # a mask whose every pixel is <= this (of 255) repaints nothing


def is_empty_mask(mask: Image.Image) -> bool:
    """Whether the "L" `mask` repaints nothing: no pixel above `EMPTY_MASK_LEVEL`."""
    _, high = mask.getextrema()
    return not (isinstance(high, int | float) and high > EMPTY_MASK_LEVEL)


def prepare_job(job: Job) -> PreparedJob:
    """Read and check one job's image and mask; the result holds numbers, not pixels.

    Checks, in order: a discovery problem recorded on the job; the image (exists, not empty,
    readable format, one frame, at most MAX_PIXELS, not damaged, payload at most
    MAX_IMAGE_BYTES); the mask (the same, plus: same size as the image after orientation, not
    empty after `inpainting_mask_invert`). Raises the matching `InputError` subclass with a
    message naming the file, the problem and the fix.
    """
    if job.problem is not None:
        raise problem_error(job)
    image_path = job.image_path
    with open_picture(image_path, IMAGE) as raw_image:
        orientation = exif_orientation(raw_image)
        stored_size = raw_image.size
        image_size = oriented_size(stored_size, orientation)
        image_payload = plan_image(raw_image, orientation).payload_size(image_path, raw_image)
    check_payload(image_path, IMAGE, image_payload)

    if job.mask_recipe is not None:
        return _prepare_drawn(job, stored_size, image_size, orientation, image_payload)
    if job.mask_path is None:
        raise MaskError(
            f"{job.name}: no mask was given for {image_path}. Add one next to it (`name_mask.png`),"
            " in `masks/`, in the manifest's `mask` column, or pass a single mask for all images.",
            reason="MISSING_MASK",
        )
    mask_path = job.mask_path
    with open_picture(mask_path, MASK) as raw_mask:
        mask_plan = plan_mask(raw_mask, image_size, orientation)
        mask = mask_plan.build(raw_mask)
        check_mask_size(job, mask.size, raw_mask.size, image_size, orientation)
        mask_payload = mask_plan.payload_size(mask_path, raw_mask, built=mask)
        if job.params.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        _check_not_empty(job, mask_path, mask)
        coverage = mask_coverage(mask)
        del mask
    check_payload(mask_path, MASK, mask_payload)

    image_sha256, mask_sha256 = source_sha256(image_path), source_sha256(mask_path)
    return PreparedJob(
        job=job,
        job_key=job_key_for(image_sha256, mask_sha256, job.params),
        image_sha256=image_sha256,
        mask_sha256=mask_sha256,
        width=image_size[0],
        height=image_size[1],
        mask_coverage_pct=round(coverage, 4),
        image_bytes=image_payload,
        mask_bytes=mask_payload,
    )


def _prepare_drawn(
    job: Job,
    stored_size: tuple[int, int],
    image_size: tuple[int, int],
    orientation: int,
    image_payload: int,
) -> PreparedJob:
    """`prepare_job` for a job whose mask is drawn: the drawn pixels are checked and hashed."""
    assert job.mask_recipe is not None
    mask, warnings = drawn_mask(job, stored_size, image_size, orientation)
    mask_payload = png_size(mask)
    what = f"drawn from {job.mask_source}" + (
        f" ({job.mask_recipe.ops.describe()})" if job.mask_recipe.ops.any else ""
    )
    check_payload(Path(f"{job.name} (mask {what})"), MASK, mask_payload)
    checked = ImageOps.invert(mask) if job.params.inpainting_mask_invert else mask
    if is_empty_mask(checked):
        hint = (
            "inpainting_mask_invert=1 turns it into an empty mask. Set inpainting_mask_invert=0."
            if job.params.inpainting_mask_invert
            else "Check the shapes, or use a smaller --mask-shrink."
        )
        raise MaskError(
            f"{job.name}: the mask {what} is empty: nothing would be repainted. {hint}",
            reason="EMPTY_MASK",
        )
    digest = hashlib.sha256(f"L {mask.size[0]}x{mask.size[1]}\n".encode())
    digest.update(mask.tobytes())
    image_sha256 = source_sha256(job.image_path)
    return PreparedJob(
        job=job,
        job_key=job_key_for(image_sha256, digest.hexdigest(), job.params),
        image_sha256=image_sha256,
        mask_sha256=digest.hexdigest(),
        width=image_size[0],
        height=image_size[1],
        mask_coverage_pct=round(mask_coverage(checked), 4),
        image_bytes=image_payload,
        mask_bytes=mask_payload,
        mask_warnings=tuple(warnings),
    )


def _check_not_empty(job: Job, mask_path: SourcePath, mask: Image.Image) -> None:
    if not is_empty_mask(mask):
        return
    if job.params.inpainting_mask_invert:
        what = (
            "is all white, and inpainting_mask_invert=1 turns it into an empty mask: nothing"
            " would be repainted. Set inpainting_mask_invert=0 or fix the mask."
        )
    else:
        what = (
            "is empty (all black): nothing would be repainted. Paint the area to repaint white,"
            " or set inpainting_mask_invert=1 if black marks it."
        )
    raise MaskError(f"{job.name}: mask {mask_path} {what}", reason="EMPTY_MASK")
