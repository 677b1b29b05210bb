"""Mask geometry: shapes, the `--mask-region` grammar, rasterising, grow/shrink/feather.

Pure functions over Pillow "L" images and numpy arrays; no file is read here and OpenCV is not
used (it is an optional extra of the project).

Decisions, in one place:

- Coordinates are pixel edges with the origin at the image's top-left corner: pixel (i, j)
  spans [i, i+1) x [j, j+1), so a box from (2, 2) to (12, 12) is 10 x 10 pixels. This is the
  convention of COCO, LabelMe and YOLO (after scaling).
- A pixel belongs to a shape when its centre (i + 0.5, j + 0.5) lies inside it: boxes and the
  even-odd interior of polygons are half-open ([x0, x1)), circles closed. One rule for every
  shape, so a polygon that traces a box covers exactly the box's pixels.
- Fractions (`units="fraction"`) are resolved against the image's width (x) and height (y)
  after its EXIF orientation, i.e. the picture as a viewer shows it.
- A shape that reaches beyond the image is clipped, with a warning that says by how much. A
  shape with nothing left inside the image is refused (`SHAPE_OUTSIDE_IMAGE`), and so is a
  shape that has no area (`DEGENERATE_SHAPE`: a polygon with fewer than 3 distinct points or
  zero area, a box with x1 <= x0, a circle with radius <= 0, a shape covering no pixel centre):
  either means the coordinates are not what the user thinks, and a mask made from them would
  pay for the wrong picture.
- Grow and shrink are exact morphological dilation and erosion with a disc of the given radius
  (pixel centres at Euclidean distance <= radius), on soft masks too (max / min over the
  disc). The image's border is not an edge of the mask: shrinking does not eat a mask that
  touches the border. Grow runs before shrink (both together close small gaps), then feather.
- Feather is a Gaussian blur with sigma = feather / 3, so the soft edge reaches about
  `feather` pixels to each side of the hard edge, and nowhere else.

The `--mask-region` grammar (case-insensitive, spaces ignored):

    SPEC   := AREA ("+" AREA)*
    AREA   := CORNER ":" LEN "x" LEN      bottom-right:20%x10%   a corner box, width x height
            | SIDE ":" LEN                bottom:12%             a band along one side
            | "center:" LEN "x" LEN       center:30%x20%         a box in the middle
            | LEN "," LEN "," LEN "," LEN 10,10,200,80           x, y, width, height
    CORNER := top-left | top-right | bottom-left | bottom-right   (either word order)
    SIDE   := top | bottom | left | right
    LEN    := NUMBER "%" | NUMBER ["px"]  percent of the width (x, width) or height (y, height)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field

from inpaint_flows.errors import MaskError

__all__ = [
    "MAX_OP_PX",
    "Box",
    "Circle",
    "MaskOps",
    "Polygon",
    "Region",
    "RleMask",
    "Shape",
    "apply_ops",
    "parse_region",
    "rasterise",
]

Units = Literal["px", "fraction"]
U8 = npt.NDArray[np.uint8]
MAX_OP_PX = 512  # grow/shrink cost one pass per row of the disc: keep it bounded


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Box(_Frozen):
    """An axis-aligned box from (x0, y0) to (x1, y1), edges in pixels or fractions."""

    kind: Literal["box"] = "box"
    x0: float
    y0: float
    x1: float
    y1: float
    units: Units = "px"
    label: str | None = None

    def describe(self) -> str:
        return (
            _label(self.label)
            + f"box {_nums((self.x0, self.y0, self.x1, self.y1))}"
            + _u(self.units)
        )


class Polygon(_Frozen):
    """A closed polygon through `points` (x, y), in pixels or fractions."""

    kind: Literal["polygon"] = "polygon"
    points: tuple[tuple[float, float], ...]
    units: Units = "px"
    label: str | None = None

    def describe(self) -> str:
        head = ", ".join(_nums(p) for p in self.points[:3])
        more = ", ..." if len(self.points) > 3 else ""
        return (
            _label(self.label)
            + f"polygon of {len(self.points)} points [{head}{more}]"
            + _u(self.units)
        )


class Circle(_Frozen):
    """A circle around (cx, cy) with radius r, in pixels (LabelMe's circles)."""

    kind: Literal["circle"] = "circle"
    cx: float
    cy: float
    r: float
    label: str | None = None

    def describe(self) -> str:
        return _label(self.label) + f"circle at {_nums((self.cx, self.cy))} radius {self.r:g}"


class RleMask(_Frozen):
    """A COCO run-length-encoded mask: alternating runs of 0 and 1, column by column."""

    kind: Literal["rle"] = "rle"
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    counts: tuple[int, ...]
    label: str | None = None

    def describe(self) -> str:
        return _label(self.label) + f"RLE mask {self.width}x{self.height}"


Shape = Annotated[Box | Polygon | Circle | RleMask, Field(discriminator="kind")]


def _label(label: str | None) -> str:
    return f"{label!r} " if label else ""


def _u(units: Units) -> str:
    return " (fractions)" if units == "fraction" else ""


def _nums(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


# ---------------------------------------------------------------------------------------------
# Rasterising


def rasterise(shapes: Sequence[Shape], size: tuple[int, int]) -> tuple[Image.Image, list[str]]:
    """The union of `shapes` as an "L" mask of `size` (255 inside), and the clipping warnings.

    Raises `MaskError` (`SHAPE_OUTSIDE_IMAGE`, `DEGENERATE_SHAPE`) naming the shape.
    """
    width, height = size
    canvas: U8 = np.zeros((height, width), dtype=np.uint8)
    warnings: list[str] = []
    for shape in shapes:
        warning = _draw(canvas, shape, width, height)
        if warning:
            warnings.append(warning)
    return Image.fromarray(canvas, "L"), warnings


def _draw(canvas: U8, shape: Shape, width: int, height: int) -> str | None:
    if isinstance(shape, RleMask):
        _draw_rle(canvas, shape, width, height)
        return None
    if isinstance(shape, Box):
        sx, sy = (width, height) if shape.units == "fraction" else (1, 1)
        x0, y0, x1, y1 = shape.x0 * sx, shape.y0 * sy, shape.x1 * sx, shape.y1 * sy
        if x1 <= x0 or y1 <= y0:
            raise _degenerate(shape, "it has no area (x1 must be > x0 and y1 > y0)")
        bounds = (x0, y0, x1, y1)
    elif isinstance(shape, Polygon):
        sx, sy = (width, height) if shape.units == "fraction" else (1, 1)
        points = np.array([(x * sx, y * sy) for x, y in shape.points], dtype=np.float64)
        distinct = {tuple(p) for p in points.tolist()}
        if len(distinct) < 3 or _area(points) == 0:
            raise _degenerate(shape, "it needs at least 3 points that enclose an area")
        bounds = (points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max())
    else:
        if shape.r <= 0:
            raise _degenerate(shape, "its radius must be > 0")
        bounds = (shape.cx - shape.r, shape.cy - shape.r, shape.cx + shape.r, shape.cy + shape.r)

    bx0, by0, bx1, by1 = bounds
    if bx1 <= 0 or by1 <= 0 or bx0 >= width or by0 >= height:
        raise MaskError(
            f"{shape.describe()} lies entirely outside the {width}x{height} image: nothing is"
            " left to repaint. Check that the coordinates belong to this image (pixels of the"
            " picture as displayed, or fractions of its width and height).",
            reason="SHAPE_OUTSIDE_IMAGE",
        )
    layer = np.zeros_like(canvas)
    if isinstance(shape, Box):
        cols = _centre_span(bx0, bx1, width)
        rows = _centre_span(by0, by1, height)
        layer[rows, cols] = 255
    elif isinstance(shape, Polygon):
        _fill_polygon(layer, points)
    else:
        _fill_circle(layer, shape)
    if not layer.any():
        raise _degenerate(shape, "it is too thin to cover the centre of any pixel")
    np.maximum(canvas, layer, out=canvas)
    if bx0 < 0 or by0 < 0 or bx1 > width or by1 > height:
        return (
            f"{shape.describe()} reaches beyond the {width}x{height} image; clipped to"
            f" {_nums((max(bx0, 0), max(by0, 0), min(bx1, width), min(by1, height)))}."
        )
    return None


def _degenerate(shape: Shape, why: str) -> MaskError:
    return MaskError(f"{shape.describe()} cannot be drawn: {why}.", reason="DEGENERATE_SHAPE")


def _centre_span(lo: float, hi: float, limit: int) -> slice:
    """Pixels whose centre c + 0.5 lies in [lo, hi), clipped to [0, limit)."""
    start = max(0, math.ceil(lo - 0.5))
    stop = min(limit, math.ceil(hi - 0.5))
    return slice(start, max(start, stop))


def _area(points: npt.NDArray[np.float64]) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _fill_polygon(layer: U8, points: npt.NDArray[np.float64]) -> None:
    """Even-odd fill of the pixels whose centre is inside the polygon (scanline per row)."""
    height, width = layer.shape
    x, y = points[:, 0], points[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    first = max(0, math.ceil(float(y.min()) - 0.5))
    last = min(height - 1, math.floor(float(y.max()) - 0.5))
    for row in range(first, last + 1):
        yc = row + 0.5
        crossing = (y <= yc) != (y2 <= yc)  # half-open: horizontal edges never cross
        if not crossing.any():
            continue
        xa, ya, xb, yb = x[crossing], y[crossing], x2[crossing], y2[crossing]
        xs = np.sort(xa + (yc - ya) * (xb - xa) / (yb - ya))
        for left, right in zip(xs[0::2], xs[1::2], strict=True):
            layer[row, _centre_span(float(left), float(right), width)] = 255


def _fill_circle(layer: U8, circle: Circle) -> None:
    height, width = layer.shape
    r0 = max(0, math.floor(circle.cy - circle.r))
    r1 = min(height, math.ceil(circle.cy + circle.r) + 1)
    c0 = max(0, math.floor(circle.cx - circle.r))
    c1 = min(width, math.ceil(circle.cx + circle.r) + 1)
    rows = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5 - circle.cy
    cols = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5 - circle.cx
    inside = rows * rows + cols * cols <= circle.r * circle.r
    layer[r0:r1, c0:c1][inside] = 255


def _draw_rle(canvas: U8, rle: RleMask, width: int, height: int) -> None:
    if (rle.width, rle.height) != (width, height):
        raise MaskError(
            f"{rle.describe()} does not fit the {width}x{height} image: an RLE mask must have"
            " the image's size. Export the annotations for this version of the image.",
            reason="SHAPE_OUTSIDE_IMAGE",
        )
    flat = rle_to_array(rle.counts, width * height, rle.describe())
    if not flat.any():
        raise _degenerate(rle, "it has no foreground pixel")
    layer = flat.reshape((height, width), order="F")
    np.maximum(canvas, layer * np.uint8(255), out=canvas)


def rle_to_array(counts: Sequence[int], total: int, what: str = "RLE mask") -> U8:
    """Uncompressed COCO RLE counts as a flat 0/1 array of `total` values (column-major order)."""
    runs = np.asarray(counts, dtype=np.int64)
    if runs.size and (runs < 0).any():
        raise MaskError(f"{what}: run lengths cannot be negative.", reason="INVALID_COORDINATES")
    if int(runs.sum()) != total:
        raise MaskError(
            f"{what}: its runs add up to {int(runs.sum())} pixels, not {total}: the counts"
            " belong to another image size.",
            reason="INVALID_COORDINATES",
        )
    values = np.zeros(runs.size, dtype=np.uint8)
    values[1::2] = 1
    return np.repeat(values, runs)


def decode_rle_string(text: str) -> list[int]:
    """COCO's compressed RLE (`counts` as a string) as run lengths (pycocotools' rleFrString).

    Each count is a little-endian sequence of 5-bit groups in characters 48..111, bit 0x20
    meaning "more follows" and bit 0x10 of the last group the sign; counts after the third are
    stored as the difference from the count two places before.
    """
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value = 0
        shift = 0
        more = True
        while more:
            if pos >= len(text):
                raise ValueError("compressed RLE string ends in the middle of a count")
            char = ord(text[pos]) - 48
            if not 0 <= char < 64:
                raise ValueError(f"character {text[pos]!r} cannot appear in a compressed RLE")
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            pos += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


# ---------------------------------------------------------------------------------------------
# Regions


class Region(_Frozen):
    """A parsed `--mask-region` spec; `boxes(width, height)` gives its pixel boxes."""

    spec: str
    areas: tuple[tuple[str, tuple[tuple[float, bool], ...]], ...]  # (kind, (value, is_percent))

    def boxes(self, width: int, height: int) -> list[Box]:
        return [_area_box(kind, lengths, width, height, self.spec) for kind, lengths in self.areas]


_CORNERS = {
    frozenset({"top", "left"}): "top-left",
    frozenset({"top", "right"}): "top-right",
    frozenset({"bottom", "left"}): "bottom-left",
    frozenset({"bottom", "right"}): "bottom-right",
}
_SIDES = ("top", "bottom", "left", "right")
_LEN = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)(%|px)?$")
_SIZE = re.compile(r"^([^x]+(?:px)?)x([^x]+(?:px)?)$")
REGION_HELP = (
    "a corner (bottom-right:20%x10%), a band (bottom:12%), the centre (center:30%x20%) or"
    " x,y,width,height (10,10,200,80 or 5%,90%,30%,8%), in pixels or percent; join several"
    " with '+'"
)


def parse_region(spec: str) -> Region:
    """Parse a `--mask-region` spec (grammar in the module docstring); ValueError if wrong."""
    text = re.sub(r"\s+", "", spec).lower()
    if not text:
        raise ValueError(f"empty mask region; give {REGION_HELP}")
    areas = []
    for part in text.split("+"):
        try:
            areas.append(_parse_area(part))
        except ValueError as exc:
            raise ValueError(f"mask region {spec!r}: {part!r} {exc}. Give {REGION_HELP}.") from exc
    return Region(spec=spec, areas=tuple(areas))


def _parse_area(part: str) -> tuple[str, tuple[tuple[float, bool], ...]]:
    if not part:
        raise ValueError("is empty (a '+' with no area on one side)")
    if ":" in part:
        where, _, size = part.partition(":")
        words = frozenset(where.split("-"))
        if where in ("center", "centre"):
            kind = "center"
        elif where in _SIDES:
            return where, (_length(size, "size"),)
        elif words in _CORNERS and len(where.split("-")) == 2:
            kind = _CORNERS[words]
        else:
            raise ValueError(
                "names no corner or side (top-left, top-right, bottom-left, bottom-right, top,"
                " bottom, left, right, center)"
            )
        pair = _SIZE.match(size)
        if not pair:
            raise ValueError("needs a size WIDTHxHEIGHT after the colon, e.g. 20%x10%")
        return kind, (_length(pair.group(1), "width"), _length(pair.group(2), "height"))
    values = part.split(",")
    if len(values) != 4:
        raise ValueError("is neither a corner, a side, the centre nor x,y,width,height")
    names = ("x", "y", "width", "height")
    return "rect", tuple(_length(v, n) for v, n in zip(values, names, strict=True))


def _length(text: str, name: str) -> tuple[float, bool]:
    match = _LEN.match(text)
    if not match:
        raise ValueError(f"has a {name} {text!r} that is not a number of pixels or a percentage")
    value, percent = float(match.group(1)), match.group(2) == "%"
    if percent and value > 100:
        raise ValueError(f"has a {name} of {value:g}%, more than 100%")
    if name in ("width", "height", "size") and value == 0:
        raise ValueError(f"has a {name} of 0: the area would be empty")
    return value, percent


def _area_box(
    kind: str, lengths: tuple[tuple[float, bool], ...], width: int, height: int, spec: str
) -> Box:
    def px(length: tuple[float, bool], axis: int) -> float:
        value, percent = length
        return value / 100 * axis if percent else value

    label = f"region {spec}"
    if kind in _SIDES:
        along_x = kind in ("left", "right")
        size = px(lengths[0], width if along_x else height)
        box = {
            "top": (0, 0, width, size),
            "bottom": (0, height - size, width, height),
            "left": (0, 0, size, height),
            "right": (width - size, 0, width, height),
        }[kind]
        return Box(x0=box[0], y0=box[1], x1=box[2], y1=box[3], label=label)
    if kind == "rect":
        x, y = px(lengths[0], width), px(lengths[1], height)
        return Box(
            x0=x, y0=y, x1=x + px(lengths[2], width), y1=y + px(lengths[3], height), label=label
        )
    w, h = px(lengths[0], width), px(lengths[1], height)
    if kind == "center":
        x0, y0 = (width - w) / 2, (height - h) / 2
    else:
        x0 = 0.0 if kind.endswith("left") else width - w
        y0 = 0.0 if kind.startswith("top") else height - h
    return Box(x0=x0, y0=y0, x1=x0 + w, y1=y0 + h, label=label)


# ---------------------------------------------------------------------------------------------
# Operations


class MaskOps(_Frozen):
    """What is done to a mask, whatever its source, before it is checked and sent."""

    grow: int = Field(default=0, ge=0, le=MAX_OP_PX)
    shrink: int = Field(default=0, ge=0, le=MAX_OP_PX)
    feather: int = Field(default=0, ge=0, le=MAX_OP_PX)

    @property
    def any(self) -> bool:
        return bool(self.grow or self.shrink or self.feather)

    def describe(self) -> str:
        """`grow 4, feather 2` (empty when nothing is done): the report's `mask_ops` cell."""
        steps = (("grow", self.grow), ("shrink", self.shrink), ("feather", self.feather))
        return ", ".join(f"{name} {px}" for name, px in steps if px)


def apply_ops(mask: Image.Image, ops: MaskOps) -> Image.Image:
    """`mask` ("L") grown, then shrunk, then feathered as `ops` says; the same size."""
    if not ops.any:
        return mask
    values: U8 = np.asarray(mask.convert("L"), dtype=np.uint8)
    if ops.grow:
        values = _dilate(values, ops.grow)
    if ops.shrink:  # erosion = dilation of the complement; outside the image counts as inside
        values = np.uint8(255) - _dilate(np.uint8(255) - values, ops.shrink)
    result = Image.fromarray(np.ascontiguousarray(values), "L")
    if ops.feather:
        result = result.filter(ImageFilter.GaussianBlur(radius=ops.feather / 3))
    return result


def _dilate(values: U8, radius: int) -> U8:
    """Grey-level dilation with a disc: each pixel becomes the max within `radius` (0 beyond)."""
    height = values.shape[0]
    out = values.copy()
    row_max: dict[int, U8] = {}
    for dy in range(-radius, radius + 1):
        half = math.isqrt(radius * radius - dy * dy)
        if half not in row_max:
            row_max[half] = _sliding_max(values, half)
        shifted = row_max[half]
        if dy > 0:  # out[r] takes row r - dy
            np.maximum(out[dy:], shifted[: height - dy], out=out[dy:])
        elif dy < 0:
            np.maximum(out[: height + dy], shifted[-dy:], out=out[: height + dy])
        else:
            np.maximum(out, shifted, out=out)
    return out


def _sliding_max(values: U8, half: int) -> U8:
    """Max over columns [x - half, x + half] per row (0 beyond the edges), by doubling windows."""
    if half == 0:
        return values
    height, width = values.shape
    window = 2 * half + 1
    padded = np.zeros((height, width + 2 * half), dtype=np.uint8)
    padded[:, half : half + width] = values
    span, acc = 1, padded
    while span * 2 <= window:
        acc = np.maximum(acc[:, :-span], acc[:, span:])  # acc[x] = max of [x, x + 2*span)
        span *= 2
    return np.maximum(acc[:, :width], acc[:, window - span : window - span + width])


def union(masks: Iterable[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The pixel-wise max of "L" masks of `size`."""
    out = np.zeros((size[1], size[0]), dtype=np.uint8)
    for mask in masks:
        np.maximum(out, np.asarray(mask.convert("L"), dtype=np.uint8), out=out)
    return Image.fromarray(out, "L")


def as_dict(shape: Shape) -> dict[str, Any]:
    return shape.model_dump(mode="json", exclude_none=True)
