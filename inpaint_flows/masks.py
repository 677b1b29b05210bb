"""Where a job's mask comes from when it is not (only) a file, and how it is made.

`MaskSettings` is the one definition of the mask options of a batch (flow parameter, CLI
options, saved batch spec). Discovery turns them, with the manifest's `mask_boxes` and
`mask_polygons` cells, into a `MaskRecipe` per job; `render_mask` turns a recipe into the final
mask, the one that is checked, hashed into the job key and sent.

Sources of a job's mask, all drawn into one mask (their union):

- a mask file: the image's own (folder layouts, the manifest's `mask` column) or the single
  `--mask` for images without one;
- shapes from an annotation file (`--annotations`, see `annotations`), filtered by `--labels`;
- shapes from the manifest's `mask_boxes` / `mask_polygons` cells;
- the fixed `--mask-region`, for every image.

Then the operations (`--mask-grow`, `--mask-shrink`, `--mask-feather`) apply to the union,
files included. A job whose mask is a file and nothing else, with no operation, has no recipe:
its file is sent byte for byte as before, and its job key is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inpaint_flows.errors import MaskError
from inpaint_flows.mask_geometry import (
    MAX_OP_PX,
    Box,
    MaskOps,
    Polygon,
    Shape,
    Units,
    apply_ops,
    parse_region,
    rasterise,
    union,
)

__all__ = [
    "MANIFEST_SHAPE_COLUMNS",
    "MaskRecipe",
    "MaskSettings",
    "ShapeGroup",
    "parse_manifest_shapes",
    "render_mask",
]

MANIFEST_SHAPE_COLUMNS: tuple[str, ...] = ("mask_boxes", "mask_polygons")

# How a person can give an image a mask: quoted by every "no mask" message.
WAYS_TO_GIVE_A_MASK = (
    "a mask file (masks/<name>.png, or <name>_mask.png beside the image), one mask for all"
    " images (--mask), an annotation file (--annotations: COCO, YOLO, LabelMe or Pascal VOC),"
    " the manifest's mask_boxes or mask_polygons columns, or a fixed region (--mask-region)"
)


class MaskSettings(BaseModel):
    """How masks are made for a batch beyond mask files: annotations, a region, operations.

    Every field is optional; the defaults change nothing, so a batch of mask files runs as it
    always did.

    Args:
        annotations: a COCO JSON file, a YOLO labels folder, LabelMe JSON file(s) or Pascal VOC
            XML file(s); images are matched by the file name the format records.
        labels: keep only the shapes of these classes (names, or class ids for YOLO without a
            names file); a label no annotation uses is refused as a typo.
        region: a fixed area masked on every image, e.g. `bottom-right:20%x10%` or
            `bottom:12%` (grammar in `mask_geometry`).
        grow: pixels to grow every mask by (a disc), files included.
        shrink: pixels to shrink every mask by.
        feather: width in pixels of a soft edge (Gaussian), inside and outside the edge.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    annotations: str | None = Field(
        default=None,
        description="COCO .json, YOLO labels folder, LabelMe .json file(s) or Pascal VOC .xml "
        "file(s).",
    )
    labels: tuple[str, ...] | None = Field(
        default=None, description="Only these classes, e.g. person,car."
    )
    region: str | None = Field(
        default=None,
        description="A region masked on every image: bottom-right:20%x10%, bottom:12%, "
        "center:30%x20%, or x,y,w,h (px or %); join several with +.",
    )
    grow: int = Field(default=0, ge=0, le=MAX_OP_PX, description="Grow every mask by PX pixels.")
    shrink: int = Field(
        default=0, ge=0, le=MAX_OP_PX, description="Shrink every mask by PX pixels."
    )
    feather: int = Field(
        default=0, ge=0, le=MAX_OP_PX, description="Soft mask edge PX pixels wide."
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _split_labels(cls, value: Any) -> Any:
        if isinstance(value, str):  # "cat,dog" from a CLI or a deployment's parameters
            value = value.split(",")
        if value is None:
            return None
        labels = tuple(str(v).strip() for v in value if str(v).strip())
        return labels or None

    @field_validator("region")
    @classmethod
    def _parse_region(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_region(value)  # refuse a bad spec before any file is read
            return value.strip()
        return None

    @model_validator(mode="after")
    def _labels_need_annotations(self) -> MaskSettings:
        if self.labels and not self.annotations:
            raise ValueError("labels filter annotations: give annotations too (--annotations)")
        return self

    @property
    def ops(self) -> MaskOps:
        return MaskOps(grow=self.grow, shrink=self.shrink, feather=self.feather)

    @property
    def generates(self) -> bool:
        """Whether masks may come from something other than files."""
        return bool(self.annotations or self.region)


class ShapeGroup(BaseModel):
    """Shapes from one source, in one coordinate frame.

    `frame` is the image size the source says its coordinates belong to (COCO, LabelMe and VOC
    record it), or None for the picture as displayed. Coordinates recorded for the stored,
    unrotated pixels of an EXIF-rotated photo are turned with it (see `render_mask`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str  # e.g. "coco annotations.json", "manifest mask_boxes"
    shapes: tuple[Shape, ...]
    frame: tuple[int, int] | None = None
    warnings: tuple[str, ...] = ()  # found while reading, e.g. a LabelMe line without area


class MaskRecipe(BaseModel):
    """How one job's mask is made: shape groups, a region, operations, on top of its file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    groups: tuple[ShapeGroup, ...] = ()
    region: str | None = None
    ops: MaskOps = MaskOps()

    def sources(self, has_file: bool) -> str:
        """The report's `mask_source` cell: `file`, `coco`, `manifest`, `region`, joined by +."""
        kinds = ["file"] if has_file else []
        kinds += [group.source.split(" ", 1)[0] for group in self.groups]
        if self.region:
            kinds.append("region")
        return "+".join(dict.fromkeys(kinds))


def render_mask(
    recipe: MaskRecipe,
    file_mask: Image.Image | None,
    size: tuple[int, int],
    *,
    stored_size: tuple[int, int] | None = None,
    turn: Callable[[Image.Image], Image.Image] | None = None,
) -> tuple[Image.Image, list[str]]:
    """The final "L" mask of `size` (the image as displayed) and warnings for the report.

    Args:
        recipe: what to draw and do.
        file_mask: the job's mask file, already oriented and of `size`, or None.
        size: the image's (width, height) after its EXIF orientation.
        stored_size: the image's size before orientation; a shape group whose frame is this
            size (and not `size`) is drawn there and turned with `turn`.
        turn: a function that applies the image's EXIF orientation to a picture.

    Raises `MaskError` for a shape that cannot be drawn, or annotations recorded for another
    image size.
    """
    layers: list[Image.Image] = [file_mask] if file_mask is not None else []
    warnings: list[str] = []
    for group in recipe.groups:
        warnings.extend(group.warnings)
        frame = size
        rotate: Callable[[Image.Image], Image.Image] | None = None
        if group.frame is not None and group.frame != size:
            if stored_size is not None and group.frame == stored_size and turn is not None:
                frame, rotate = stored_size, turn
            else:
                fw, fh = group.frame
                raise MaskError(
                    f"{group.source} records this image as {fw}x{fh}, but it is"
                    f" {size[0]}x{size[1]}: its coordinates belong to another version of the"
                    " image. Export the annotations again for these files.",
                    reason="ANNOTATION_SIZE_MISMATCH",
                )
        try:
            layer, drawn = rasterise(group.shapes, frame)
        except MaskError as exc:
            raise MaskError(f"{group.source}: {exc}", reason=exc.reason) from exc
        warnings.extend(f"{group.source}: {w}" for w in drawn)
        layers.append(rotate(layer) if rotate is not None else layer)
    if recipe.region:
        region = parse_region(recipe.region)
        try:
            layer, drawn = rasterise(region.boxes(*size), size)
        except MaskError as exc:
            raise MaskError(f"--mask-region: {exc}", reason=exc.reason) from exc
        warnings.extend(drawn)
        layers.append(layer)
    mask = union(layers, size)
    return apply_ops(mask, recipe.ops), warnings


# ---------------------------------------------------------------------------------------------
# Manifest cells


def parse_manifest_shapes(column: str, value: Any) -> tuple[Shape, ...]:
    """The shapes of one `mask_boxes` or `mask_polygons` cell; ValueError says what is wrong.

    `mask_boxes`: `[[x0, y0, x1, y1], ...]` (corners: left, top, right, bottom) or one box
    `[x0, y0, x1, y1]`. `mask_polygons`: `[[[x, y], [x, y], ...], ...]` or one polygon
    `[[x, y], ...]`; a polygon may also be flat, `[x1, y1, x2, y2, ...]` (COCO style). Values
    are pixels, or fractions of the width and height when every value of the cell is <= 1.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not JSON ({exc.msg}); write it like {_EXAMPLES[column]}") from exc
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a non-empty JSON list like {_EXAMPLES[column]}")
    numbers = _numbers(value)
    units: Units = "fraction" if all(n <= 1 for n in numbers) else "px"
    if column == "mask_boxes":
        boxes = [value] if all(_is_number(v) for v in value) else value
        shapes: list[Shape] = []
        for i, box in enumerate(boxes):
            if not isinstance(box, list) or len(box) != 4 or not all(map(_is_number, box)):
                raise ValueError(f"box {i + 1} must be 4 numbers [x0, y0, x1, y1], not {box!r}")
            x0, y0, x1, y1 = (float(v) for v in box)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(
                    f"box {i + 1} {box!r} has no area: give corners [left, top, right, bottom]"
                    " with right > left and bottom > top"
                )
            shapes.append(Box(x0=x0, y0=y0, x1=x1, y1=y1, units=units))
        return tuple(shapes)
    polygons = [value] if _is_polygon(value) else value
    result: list[Shape] = []
    for i, polygon in enumerate(polygons):
        if not _is_polygon(polygon):
            raise ValueError(
                f"polygon {i + 1} must be a list of [x, y] points or a flat list of x, y values"
            )
        points = _points(polygon)
        if len(set(points)) < 3:
            raise ValueError(f"polygon {i + 1} has fewer than 3 distinct points")
        result.append(Polygon(points=points, units=units))
    return tuple(result)


_EXAMPLES = {
    "mask_boxes": "[[10, 20, 110, 80]] or [[0.1, 0.2, 0.5, 0.6]]",
    "mask_polygons": "[[[10, 10], [120, 15], [60, 90]]]",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any) -> list[float]:
    if _is_number(value):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"holds {value!r}, which is neither pixels nor a fraction")
        return [number]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    raise ValueError(f"holds {value!r}, which is neither pixels nor a fraction (not a number)")


def _is_polygon(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    if all(_is_number(v) for v in value):
        return len(value) % 2 == 0
    return all(isinstance(p, list) and len(p) == 2 and all(_is_number(c) for c in p) for p in value)


def _points(polygon: list[Any]) -> tuple[tuple[float, float], ...]:
    if all(_is_number(v) for v in polygon):
        return tuple((float(polygon[i]), float(polygon[i + 1])) for i in range(0, len(polygon), 2))
    return tuple((float(x), float(y)) for x, y in polygon)


def manifest_group(column: str, shapes: Sequence[Shape]) -> ShapeGroup:
    return ShapeGroup(source=f"manifest {column}", shapes=tuple(shapes))
