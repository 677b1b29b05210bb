"""What is sent for a job: its image and mask as payload bytes, and the API's size limit on them.

What is checked is what is sent: a `_Plan` is the one decision how an opened file becomes
payload bytes, and both sides use it. `input_checks.prepare_job` asks a plan how many bytes it
would send (`payload_size`, counted without keeping a copy) and checks that against the limit;
`encode_payload` asks the same plan for the bytes themselves right before each submit, and checks
them again. Given the job's check (`PreparedJob`), it sends a file only if its bytes are the
ones checked (their SHA-256, the job key's own): a file that changed since its check is refused,
never sent as something else under the old key; and the checked bytes need no second decode
when they are sent as they are (a decode per image and mask per submit, on the event loop).

Decisions, in one place:

- Payload: a file already in an accepted format, RGB (image) or L/RGB (mask), with no rotation
  to apply is sent byte for byte. Anything else is re-encoded after orientation and conversion
  (`pictures`): masks and lossless images as PNG, images decoded from JPEG as JPEG quality 95
  (4:4:4), because a rotated phone photo re-encoded as PNG can pass 30 MB. A drawn mask is
  always sent as PNG.
- The 30 MB limit applies to the bytes sent before base64, as `inpaint_flows.contract` states.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from PIL import Image

from inpaint_flows.contract import MAX_IMAGE_BYTES
from inpaint_flows.errors import MaskError
from inpaint_flows.jobs import problem_error
from inpaint_flows.models import Job, PreparedJob
from inpaint_flows.pictures import (
    ACCEPTED_FORMATS,
    IMAGE,
    MASK,
    Role,
    SourcePath,
    check_mask_size,
    checked_content,
    drawn_mask,
    exif_orientation,
    mask_turn,
    open_picture,
    oriented_mask,
    oriented_rgb,
    oriented_size,
    source_bytes,
    source_size,
)

__all__ = ["encode_payload"]


def encode_payload(job: Job, checked: PreparedJob | None = None) -> tuple[str, str]:
    """The base64 image and mask exactly as they are sent for `job`.

    Files that need nothing done are sent byte for byte; the others are oriented, converted and
    re-encoded (see the module docstring). Nothing is kept after returning, so calling this right
    before each submit keeps memory flat over a long batch. Raises like `prepare_job` when a file
    changed since it was checked; with `checked` (the job's check), `INPUT_CHANGED` when a
    file's bytes are not the ones checked.
    """
    if job.problem is not None:
        raise problem_error(job)
    if job.mask_path is None and job.mask_recipe is None:
        raise MaskError(f"{job.name}: no mask to send for {job.image_path}.", reason="MISSING_MASK")
    image_path = job.image_path
    image_content = checked_content(image_path, IMAGE, checked.image_sha256) if checked else None
    with open_picture(image_path, IMAGE, content=image_content) as raw_image:
        orientation = exif_orientation(raw_image)
        image_plan = plan_image(raw_image, orientation)
        image_size = oriented_size(raw_image.size, orientation)
        stored_size = raw_image.size
        image_bytes = image_plan.payload(image_path, raw_image, image_content)
    del image_content
    check_payload(image_path, IMAGE, len(image_bytes))
    image_b64 = base64.b64encode(image_bytes).decode("ascii")
    del image_bytes
    if job.mask_recipe is not None:
        mask, _ = drawn_mask(job, stored_size, image_size, orientation)
        buffer = io.BytesIO()
        _save_png(mask, buffer)
        check_payload(Path(job.name), MASK, buffer.tell())
        return image_b64, base64.b64encode(buffer.getvalue()).decode("ascii")
    assert job.mask_path is not None
    mask_path = job.mask_path
    mask_content = checked_content(mask_path, MASK, checked.mask_sha256) if checked else None
    with open_picture(mask_path, MASK, content=mask_content) as raw_mask:
        mask_plan = plan_mask(raw_mask, image_size, orientation)
        mask_size = oriented_size(raw_mask.size, mask_plan.turn)
        check_mask_size(job, mask_size, raw_mask.size, image_size, orientation)
        mask_bytes = mask_plan.payload(mask_path, raw_mask, mask_content)
    check_payload(mask_path, MASK, len(mask_bytes))
    return image_b64, base64.b64encode(mask_bytes).decode("ascii")


def check_payload(path: SourcePath, role: Role, size: int) -> None:
    """Raise `role.error` (`IMAGE_FILE_EXCEEDS_MAX_SIZE`) when `size` bytes are too many."""
    if size > MAX_IMAGE_BYTES:
        raise role.error(
            f"{role.noun.capitalize()} {path} would be sent as {size / 2**20:.1f} MB; the API"
            f" takes at most {MAX_IMAGE_BYTES / 2**20:.0f} MB ({MAX_IMAGE_BYTES} bytes)."
            " Save it as JPEG or downscale it.",
            reason="IMAGE_FILE_EXCEEDS_MAX_SIZE",
        )


def png_size(mask: Image.Image) -> int:
    """How many bytes `mask` is sent as (a drawn mask is sent as PNG), without keeping them."""
    counter = _ByteCounter()
    _save_png(mask, counter)  # type: ignore[arg-type]
    return counter.count


# ---------------------------------------------------------------------------------------------
# Plans


@dataclass(frozen=True)
class _Plan:
    """How one file becomes payload bytes: as it is, or rebuilt and re-encoded."""

    as_is: bool
    turn: int  # the EXIF orientation applied before sending (1 = none)
    build: Callable[[Image.Image], Image.Image]  # raw opened file -> picture that is sent
    save: Callable[[Image.Image, IO[bytes]], None]

    def payload(self, path: SourcePath, raw: Image.Image, content: bytes | None = None) -> bytes:
        """The bytes sent; `content`: the file's own, when already read."""
        if self.as_is:
            return source_bytes(path) if content is None else content
        buffer = io.BytesIO()
        self.save(self.build(raw), buffer)
        return buffer.getvalue()

    def payload_size(
        self, path: SourcePath, raw: Image.Image, built: Image.Image | None = None
    ) -> int:
        """The payload's length, without holding a copy of a re-encoded file."""
        if self.as_is:
            return source_size(path)
        counter = _ByteCounter()
        self.save(self.build(raw) if built is None else built, counter)  # type: ignore[arg-type]
        return counter.count


def plan_image(raw: Image.Image, orientation: int) -> _Plan:
    """How the opened image `raw` is sent, given its EXIF `orientation`."""
    as_is = raw.format in (*ACCEPTED_FORMATS, "MPO") and raw.mode == "RGB" and orientation == 1

    def build(img: Image.Image) -> Image.Image:
        return oriented_rgb(img, orientation)

    lossy_source = raw.format in ("JPEG", "MPO")
    save = _save_jpeg if lossy_source else _save_png
    return _Plan(as_is=as_is, turn=orientation, build=build, save=save)


def plan_mask(raw: Image.Image, image_size: tuple[int, int], image_orientation: int) -> _Plan:
    """How the opened mask `raw` is sent, given its image's oriented size and orientation."""
    turn = mask_turn(raw, image_size, image_orientation)
    plain_luminance = raw.mode in ("L", "RGB") and not raw.has_transparency_data
    as_is = raw.format in (*ACCEPTED_FORMATS, "MPO") and plain_luminance and turn == 1

    def build(img: Image.Image) -> Image.Image:
        return oriented_mask(img, turn)

    return _Plan(as_is=as_is, turn=turn, build=build, save=_save_png)


# ---------------------------------------------------------------------------------------------
# Encoders


class _ByteCounter:
    """A write-only file that only counts: measures an encoding without keeping it."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _save_png(img: Image.Image, fp: IO[bytes]) -> None:
    img.save(fp, format="PNG", compress_level=6)


def _save_jpeg(img: Image.Image, fp: IO[bytes]) -> None:
    img.save(fp, format="JPEG", quality=95, subsampling=0)
