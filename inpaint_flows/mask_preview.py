"""Preview a batch's masks before paying: mask files and a contact sheet, no API call.

`write_mask_preview` finds the jobs exactly as a run would (same discovery, same mask
settings), makes each job's final mask with the same code that sends it (`pictures.final_mask`,
checked by `input_checks.prepare_job`), and writes:

- `OUT/masks/<name>.png`: the final masks, named by the job's output stem (its path relative to
  the source, without extension), so the folder can serve as the `masks/` of an `images/` +
  `masks/` layout. Reuse them without the grow/shrink/feather options: they are applied already.
- `OUT/masks.html`: a contact sheet, each image with its mask overlaid in translucent red, its
  mask source, operations, warnings and problems (images with problems first, then those with
  warnings); `OUT/_preview/` holds its thumbnails.
- `OUT/masks.json`: the same facts for scripts. It also lists the files written, so a later
  preview removes the masks it wrote before and no longer makes (a mask left behind would be
  picked up by a run that reuses the folder); no other file is ever removed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from inpaint_flows.errors import InputError
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams, Job
from inpaint_flows.pictures import final_mask, load_image
from inpaint_flows.storage import atomic_write_bytes, atomic_write_text

__all__ = ["MaskPreview", "PreviewItem", "write_mask_preview"]

MASKS_DIR = "masks"
PAGE_NAME = "masks.html"
INDEX_NAME = "masks.json"
THUMBS_DIR = "_preview"
THUMB_MAX_SIDE = 320
OVERLAY_RGB = (255, 0, 64)
OVERLAY_OPACITY = 0.55


@dataclass(frozen=True)
class PreviewItem:
    """One image of the preview: where its mask went, or why it has none."""

    name: str
    image_path: str
    mask_file: str | None  # relative to the output folder
    thumb: str | None  # relative to the output folder
    width: int | None
    height: int | None
    coverage_pct: float | None
    mask_source: str | None
    mask_ops: str | None
    warnings: tuple[str, ...]
    reason: str | None
    problem: str | None


@dataclass(frozen=True)
class MaskPreview:
    out: Path
    page: Path
    items: tuple[PreviewItem, ...]

    @property
    def problems(self) -> int:
        return sum(1 for item in self.items if item.problem)


def write_mask_preview(
    source: str | Path,
    out: str | Path,
    *,
    mask: str | Path | None = None,
    masks: MaskSettings | None = None,
    defaults: InpaintParams | None = None,
) -> MaskPreview:
    """Write the final masks and the contact sheet for `source` into `out` (see module doc).

    Raises what `discover_jobs` raises for a source or annotation file that cannot be used at
    all; a problem with one image is listed on the sheet instead.
    """
    root = Path(out)
    settings = masks or MaskSettings()
    jobs = discover_jobs(source, defaults or InpaintParams(), mask, exclude=[root], masks=settings)
    items = [_preview(job, root) for job in jobs]
    written = [item.mask_file for item in items if item.mask_file]
    _remove_stale(root, written)
    atomic_write_text(
        root / INDEX_NAME,
        json.dumps(
            {
                "source": str(source),
                "settings": settings.model_dump(mode="json"),
                "mask": str(mask) if mask else None,
                "written": written,
                "items": [asdict(item) for item in items],
            },
            indent=2,
            ensure_ascii=False,
        ),
    )
    page = atomic_write_text(root / PAGE_NAME, _render(items, source, mask, settings))
    return MaskPreview(out=root, page=page, items=tuple(items))


def _preview(job: Job, root: Path) -> PreviewItem:
    problem: InputError | None = None
    mask_file = thumb = None
    width = height = None
    coverage = None
    warnings: tuple[str, ...] = ()
    try:
        prepared = prepare_job(job)
        width, height, coverage = prepared.width, prepared.height, prepared.mask_coverage_pct
        warnings = prepared.mask_warnings
        mask, _ = final_mask(job)
        mask_file = f"{MASKS_DIR}/{job.output_stem}.png"
        buffer = _png(mask)
        atomic_write_bytes(root / mask_file, buffer, durable=False)
    except InputError as exc:
        problem, mask = exc, None
    thumb = _thumbnail(job, mask, root)
    return PreviewItem(
        name=job.name,
        image_path=job.image_path,
        mask_file=mask_file,
        thumb=thumb,
        width=width,
        height=height,
        coverage_pct=coverage,
        mask_source=job.mask_source,
        mask_ops=job.mask_ops,
        warnings=warnings,
        reason=problem.reason if problem else None,
        problem=problem.message if problem else None,
    )


def _thumbnail(job: Job, mask: Image.Image | None, root: Path) -> str | None:
    """The image (with `mask` overlaid) at most THUMB_MAX_SIDE a side; None if unreadable."""
    try:
        image = load_image(job.image_path)
    except InputError:
        return None
    scale = min(1.0, THUMB_MAX_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.Resampling.BILINEAR)
    if mask is not None and mask.size == image.size:
        alpha = np.asarray(mask.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
        alpha = alpha[:, :, None] / 255.0 * OVERLAY_OPACITY
        base = np.asarray(small, dtype=np.float32)
        tint = np.array(OVERLAY_RGB, dtype=np.float32)
        small = Image.fromarray(np.rint(base * (1 - alpha) + tint * alpha).astype(np.uint8))
    name = f"{THUMBS_DIR}/{job.output_stem}.png"
    atomic_write_bytes(root / name, _png(small), durable=False)
    return name


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _remove_stale(root: Path, written: Iterable[str]) -> None:
    """Remove mask files an earlier preview wrote (listed in its index) and this one did not."""
    index = root / INDEX_NAME
    try:
        before = json.loads(index.read_text(encoding="utf-8")).get("written", [])
    except (OSError, ValueError, AttributeError):
        return
    keep = set(written)
    masks_dir = (root / MASKS_DIR).resolve()
    for rel in before:
        if not isinstance(rel, str) or rel in keep:
            continue
        path = (root / rel).resolve()
        if path.is_relative_to(masks_dir) and path.suffix == ".png":
            path.unlink(missing_ok=True)


_ENV = Environment(
    loader=PackageLoader("inpaint_flows", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _render(
    items: list[PreviewItem], source: str | Path, mask: str | Path | None, settings: MaskSettings
) -> str:
    template = _ENV.get_template("mask_preview.html")
    # What needs a look comes first: problems, then warnings, then the rest, each in order.
    shown = sorted(items, key=lambda item: (item.problem is None, not item.warnings))
    return template.render(
        items=shown,
        source=str(source),
        mask=str(mask) if mask else None,
        settings=settings,
        ops=settings.ops.describe(),
        with_mask=sum(1 for item in items if item.mask_file),
        problems=sum(1 for item in items if item.problem),
        warned=sum(1 for item in items if item.warnings),
    )
