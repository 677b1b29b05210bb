"""Reading annotation files into shapes, and matching them to a batch's images.

Formats, told apart by the path (file or folder, extension) and then by content:

- COCO: one `.json` with `images` and `annotations`. Shapes: `segmentation` polygons or RLE
  (plain or compressed counts), else `bbox` ([x, y, width, height]). Images by `file_name`.
- YOLO: a folder of `.txt` files (or a dataset folder holding `labels/`), or one `.txt`. Lines
  `class cx cy w h` (box) or `class x1 y1 x2 y2 x3 y3 ...` (segmentation), fractions 0..1; a
  trailing confidence (detector output) is ignored. Images by the same path and stem.
- LabelMe: one `.json` with `shapes`, or a folder of them. Rectangles, polygons, circles.
  Images by `imagePath`, relative to the `.json` file.
- Pascal VOC: one `.xml`, or a folder of them. `<bndbox>` (1-based, inclusive pixel indices).
  Images by `<filename>`.

Decisions:

- COCO, LabelMe and VOC coordinates are pixels of the image size they record (`width`/
  `height`, `imageWidth`/`imageHeight`, `<size>`); `masks.render_mask` turns them with an
  EXIF-rotated photo when they were recorded for its stored pixels, and refuses a size that
  fits neither. YOLO's fractions are of the picture as displayed.
- YOLO class names come from the first names file found in the labels folder, its parent or
  grandparent: `classes.txt` / `*.names` (one per line) or `data.yaml` / `dataset.yaml` /
  any `*.yaml` with `names` (a list or an id-to-name map). Without one, labels are the class
  ids (`--labels 0,2`).
- `--labels` keeps only those classes. A label that no annotation of the file uses (or, for
  COCO and YOLO with names, that the file does not declare) is refused for the whole batch,
  with the known labels and a close match: a typo would otherwise leave every image unmasked.
- What is wrong with one image's annotations (a malformed box, coordinates that are neither
  pixels nor fractions) is recorded on that image and reported per item; a shape that cannot be
  drawn (a degenerate polygon, a box outside the image) is found when the mask is drawn.
  Shapes without an area in LabelMe (points, lines) are skipped with a warning.
- XML is parsed with the standard library after refusing any DTD or entity declaration, so a
  hostile file cannot expand entities or reach the network.
- Matching to images: LabelMe's resolved `imagePath`, else the path the annotation records
  (`file_name` may include folders: `train/a.jpg`) compared with the image's path relative to
  the source, then as a path suffix either way, then the bare file name; YOLO compares without
  extensions. Several images fitting equally make the annotation ambiguous rather than a guess.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from inpaint_flows.errors import AnnotationError
from inpaint_flows.locations import download, files_under, is_remote, name_of
from inpaint_flows.locations import is_file as remote_is_file
from inpaint_flows.mask_geometry import Box, Circle, Polygon, RleMask, Shape, decode_rle_string

__all__ = [
    "AnnotatedImage",
    "Annotations",
    "Match",
    "match_images",
    "read_annotations",
]

Format = Literal["coco", "yolo", "labelme", "voc"]
Problem = tuple[str, str]  # (reason, message)

_YOLO_NAME_FILES = ("classes.txt", "obj.names", "data.yaml", "dataset.yaml")
# YOLO values must be fractions; a little beyond 0..1 is a box past the edge (clipped),
# far beyond is not a fraction at all (usually pixels written where fractions belong).
_YOLO_RANGE = (-1.0, 2.0)


@dataclass(frozen=True)
class AnnotatedImage:
    """What an annotation file says about one image."""

    ref: str  # the image as the file names it: file_name, imagePath, <filename>, label path
    where: str  # where in the annotations: "annotations.json image id 3", "labels/a.txt"
    shapes: tuple[Shape, ...] = ()
    frame: tuple[int, int] | None = None  # image size the coordinates belong to
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    path_hint: str | None = None  # the absolute image path, when the format resolves one
    by_stem: bool = False  # YOLO: matched without extensions


@dataclass(frozen=True)
class Annotations:
    """A whole annotation source: per-image entries and every label it knows."""

    format: Format
    path: str
    images: tuple[AnnotatedImage, ...]
    labels: frozenset[str]

    @property
    def source(self) -> str:
        """`coco annotations.json`: how report rows and messages name this source."""
        return f"{self.format} {Path(self.path).name}"


# ---------------------------------------------------------------------------------------------
# Entry point


def read_annotations(path: str | Path, labels: Sequence[str] | None = None) -> Annotations:
    """Read the annotations at `path` (format detected), keeping only `labels` when given.

    Raises `AnnotationError` when the path does not exist, its format cannot be told, a file
    cannot be parsed as its format, or a label in `labels` is unknown.
    """
    src = Path(path)
    if not src.exists():
        raise AnnotationError(
            f"Annotations {src} do not exist. Give a COCO .json file, a YOLO labels folder,"
            " LabelMe .json file(s) or Pascal VOC .xml file(s).",
            reason="ANNOTATIONS_NOT_FOUND",
        )
    fmt, files = _detect(src)
    reader = {"coco": _read_coco, "yolo": _read_yolo, "labelme": _read_labelme, "voc": _read_voc}
    found: Annotations = reader[fmt](src, files)
    if labels:
        found = _keep_labels(found, labels)
    return found


def read_annotations_at(location: str, labels: Sequence[str] | None = None) -> Annotations:
    """`read_annotations` for a path or a bucket URL (a file, or a folder of label files).

    A bucket's annotation files (small text) are copied to a temporary folder with their
    relative paths and read there; messages name the URL.
    """
    if not is_remote(location):
        return read_annotations(location, labels)
    with tempfile.TemporaryDirectory(prefix="inpaint-annotations-") as tmp:
        name = name_of(location)
        if remote_is_file(location):
            files = [(name, location)]
        else:
            files = [
                (f"{name}/{rel}", url)
                for rel, url in files_under(location)
                if not any(part.startswith(".") for part in rel.split("/"))
            ]
            if not files:
                raise AnnotationError(
                    f"Annotations {location} do not exist. Give a COCO .json file, a YOLO labels"
                    " folder, LabelMe .json file(s) or Pascal VOC .xml file(s).",
                    reason="ANNOTATIONS_NOT_FOUND",
                )
        for rel, url in files:
            target = Path(tmp, *rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            download(url, target)
        found = read_annotations(Path(tmp) / name, labels)
    return replace(found, path=location)


def _detect(src: Path) -> tuple[Format, list[Path]]:
    if src.is_file():
        suffix = src.suffix.lower()
        if suffix == ".xml":
            return "voc", [src]
        if suffix == ".txt":
            return "yolo", [src]
        if suffix == ".json":
            data = _load_json(src)
            if isinstance(data, dict) and "images" in data and "annotations" in data:
                return "coco", [src]
            if isinstance(data, dict) and "shapes" in data:
                return "labelme", [src]
            raise AnnotationError(
                f"Annotations {src} are JSON but neither COCO (needs 'images' and"
                " 'annotations') nor LabelMe (needs 'shapes' and 'imagePath').",
                reason="UNKNOWN_ANNOTATION_FORMAT",
            )
        raise AnnotationError(
            f"Annotations {src}: cannot tell the format from the extension {suffix or '(none)'};"
            " use .json (COCO, LabelMe), .txt (YOLO) or .xml (Pascal VOC).",
            reason="UNKNOWN_ANNOTATION_FORMAT",
        )
    root = src / "labels" if (src / "labels").is_dir() else src
    by_kind: dict[str, list[Path]] = defaultdict(list)
    for file in _files(root):
        by_kind[file.suffix.lower()].append(file)
    txt = [f for f in by_kind[".txt"] if f.name.lower() not in _YOLO_NAME_FILES]
    kinds = {
        kind: files
        for kind, files in (("yolo", txt), ("labelme", by_kind[".json"]), ("voc", by_kind[".xml"]))
        if files
    }
    if len(kinds) != 1:
        what = ", ".join(f"{len(f)} {k}" for k, f in kinds.items()) or "no .txt, .json or .xml"
        raise AnnotationError(
            f"Annotations folder {root} holds {what} files: give a folder of one format (YOLO"
            " .txt, LabelMe .json or Pascal VOC .xml), or the one COCO .json file.",
            reason="UNKNOWN_ANNOTATION_FORMAT",
        )
    ((kind, files),) = kinds.items()
    if kind == "labelme" and len(files) == 1:
        return _detect(files[0])  # a folder holding one COCO file is that file
    return kind, files  # type: ignore[return-value]


def _files(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return found


def _keep_labels(found: Annotations, labels: Sequence[str]) -> Annotations:
    wanted = list(dict.fromkeys(labels))
    unknown = [label for label in wanted if label not in found.labels]
    if unknown:
        hints = []
        for label in unknown:
            close = difflib.get_close_matches(label, sorted(found.labels), n=1)
            hints.append(f"{label!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        known = ", ".join(sorted(found.labels)[:30]) or "none"
        raise AnnotationError(
            f"--labels: {', '.join(hints)} not found in {found.source}; its labels are: {known}.",
            reason="UNKNOWN_LABEL",
        )
    keep = set(wanted)
    images = []
    for image in found.images:
        shapes = tuple(s for s in image.shapes if _class_of(s) in keep)
        warnings = image.warnings
        if image.shapes and not shapes:
            warnings = (*warnings, f"no shape labelled {', '.join(wanted)}")
        images.append(replace(image, shapes=shapes, warnings=warnings))
    return replace(found, images=tuple(images))


def _class_of(shape: Shape) -> str | None:
    """The class name of a shape whose label reads `name` or `name (where)`."""
    return shape.label.split(" (", 1)[0] if shape.label else None


def _tag(label: str, where: str) -> str:
    return f"{label} ({where})"


# ---------------------------------------------------------------------------------------------
# COCO


def _read_coco(src: Path, files: list[Path]) -> Annotations:
    data = _load_json(src)
    if not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise AnnotationError(
            f"COCO file {src}: 'images' and 'annotations' must be lists.",
            reason="INVALID_ANNOTATIONS",
        )
    categories: dict[Any, str] = {}
    for category in data.get("categories") or []:
        if isinstance(category, dict) and "id" in category:
            categories[category["id"]] = str(category.get("name", category["id"]))

    entries: dict[Any, dict[str, Any]] = {}
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str):
            raise AnnotationError(
                f"COCO file {src}: images[{index}] has no 'file_name'.",
                reason="INVALID_ANNOTATIONS",
            )
        frame = _frame(image.get("width"), image.get("height"))
        entries[image.get("id")] = {
            "ref": image["file_name"],
            "frame": frame,
            "shapes": [],
            "problems": [],
            "where": f"{src.name} image id {image.get('id')}",
        }
    orphans: dict[Any, dict[str, Any]] = {}
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise AnnotationError(
                f"COCO file {src}: annotations[{index}] is not an object.",
                reason="INVALID_ANNOTATIONS",
            )
        image_id = ann.get("image_id")
        where = f"annotation id {ann.get('id', index)}"
        entry = entries.get(image_id)
        if entry is None:
            entry = orphans.setdefault(
                image_id,
                {
                    "ref": f"image id {image_id}",
                    "frame": None,
                    "shapes": [],
                    "problems": [
                        (
                            "ANNOTATION_WITHOUT_IMAGE",
                            f"{src.name}: {where} names image id {image_id!r}, which the file's"
                            " 'images' list does not have. Fix the image_id or add the image.",
                        )
                    ],
                    "where": f"{src.name} {where}",
                },
            )
            continue
        label = categories.get(ann.get("category_id"), str(ann.get("category_id")))
        try:
            entry["shapes"].extend(_coco_shapes(ann, _tag(label, where), entry["frame"]))
        except ValueError as exc:
            entry["problems"].append(("INVALID_ANNOTATION", f"{src.name} {where}: {exc}"))

    images = [
        AnnotatedImage(
            ref=e["ref"],
            where=e["where"],
            shapes=tuple(e["shapes"]),
            frame=e["frame"],
            problems=tuple(e["problems"]),
        )
        for e in (*entries.values(), *orphans.values())
    ]
    used = {_class_of(s) for image in images for s in image.shapes}
    known = frozenset(categories.values()) | {u for u in used if u}
    return Annotations("coco", str(src), tuple(images), known)


def _coco_shapes(ann: dict[str, Any], label: str, frame: tuple[int, int] | None) -> list[Shape]:
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        polygons = segmentation if isinstance(segmentation[0], list) else [segmentation]
        shapes: list[Shape] = []
        for polygon in polygons:
            values = _finite(polygon, "segmentation polygon")
            if len(values) % 2:
                raise ValueError(f"a segmentation polygon has an odd number of values ({values})")
            points = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
            shapes.append(Polygon(points=points, label=label))
        return shapes
    if isinstance(segmentation, dict):
        return [_coco_rle(segmentation, label, frame)]
    bbox = ann.get("bbox")
    if bbox is None:
        raise ValueError("has neither a 'bbox' nor a 'segmentation'")
    x, y, w, h = _finite(bbox, "bbox", length=4)
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox {bbox} has no area: COCO boxes are [x, y, width, height]")
    return [Box(x0=x, y0=y, x1=x + w, y1=y + h, label=label)]


def _coco_rle(segmentation: dict[str, Any], label: str, frame: tuple[int, int] | None) -> Shape:
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise ValueError("an RLE segmentation needs 'size': [height, width]")
    height, width = size
    if frame is not None and frame != (width, height):
        raise ValueError(
            f"its RLE is {width}x{height} but the image entry says {frame[0]}x{frame[1]}"
        )
    if isinstance(counts, str):
        runs = decode_rle_string(counts)
    elif isinstance(counts, list) and all(isinstance(v, int) for v in counts):
        runs = counts
    else:
        raise ValueError("an RLE segmentation's 'counts' must be a list of integers or a string")
    if sum(runs) != width * height or any(r < 0 for r in runs):
        raise ValueError(f"its RLE runs do not add up to {width}x{height} pixels")
    return RleMask(width=width, height=height, counts=tuple(runs), label=label)


# ---------------------------------------------------------------------------------------------
# YOLO


def _read_yolo(src: Path, files: list[Path]) -> Annotations:
    root = src if src.is_dir() else src.parent
    if src.is_dir() and (root / "labels").is_dir():
        root = root / "labels"
    names = _yolo_names(root)
    images = []
    used: set[str] = set()
    for file in files:
        if file.name.lower() in _YOLO_NAME_FILES:
            continue
        rel = PurePosixPath(file.relative_to(root).as_posix()).with_suffix("")
        shapes, problems = _yolo_file(file, names, f"{root.name}/{rel}.txt")
        used.update(c for s in shapes if (c := _class_of(s)))
        images.append(
            AnnotatedImage(
                ref=str(rel),
                where=f"{root.name}/{rel}.txt",
                shapes=tuple(shapes),
                problems=tuple(problems),
                by_stem=True,
            )
        )
    known = frozenset(names.values()) if names else frozenset(used)
    return Annotations("yolo", str(src), tuple(images), known)


def _yolo_names(root: Path) -> dict[int, str]:
    for folder in (root, root.parent, root.parent.parent):
        candidates = [folder / name for name in _YOLO_NAME_FILES]
        candidates += sorted(folder.glob("*.names")) + sorted(folder.glob("*.yaml"))
        for path in candidates:
            if not path.is_file():
                continue
            if path.suffix.lower() in (".yaml", ".yml"):
                names = _yaml_names(path)
                if names is not None:
                    return names
            else:
                lines = _read_text(path).splitlines()
                return {i: line.strip() for i, line in enumerate(lines) if line.strip()}
    return {}


def _yaml_names(path: Path) -> dict[int, str] | None:
    try:
        data = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        raise AnnotationError(
            f"YOLO names file {path} is not valid YAML: {exc}.", reason="INVALID_ANNOTATIONS"
        ) from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            pass
    return None


def _yolo_file(file: Path, names: dict[int, str], where: str) -> tuple[list[Shape], list[Problem]]:
    shapes: list[Shape] = []
    problems: list[Problem] = []
    for number, line in enumerate(_read_text(file).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        at = f"{where} line {number}"
        try:
            shape = _yolo_line(tokens, names, at, f"line {number}")
        except ValueError as exc:
            reason = "INVALID_COORDINATES" if "fraction" in str(exc) else "INVALID_ANNOTATION"
            problems.append((reason, f"{at}: {exc}"))
            continue
        shapes.append(shape)
    return shapes, problems


def _yolo_line(tokens: list[str], names: dict[int, str], at: str, line: str) -> Shape:
    try:
        class_id = int(tokens[0])
    except ValueError:
        raise ValueError(f"the class {tokens[0]!r} is not a whole number") from None
    if names and class_id not in names:
        raise ValueError(f"class {class_id} is not in the names file ({len(names)} classes)")
    label = _tag(names.get(class_id, str(class_id)), line)
    values = _finite(tokens[1:], "coordinates")
    if len(values) in (4, 5):  # box, or box + confidence
        values = values[:4]
    elif len(values) >= 6:  # polygon, with a trailing confidence when the count is odd
        values = values[: len(values) - len(values) % 2]
    else:
        raise ValueError(
            f"has {len(values)} numbers after the class: a box needs 4 (cx cy w h), a polygon"
            " at least 6 (x1 y1 x2 y2 x3 y3)"
        )
    low, high = _YOLO_RANGE
    if any(v < low or v > high for v in values):
        raise ValueError(
            f"values {_short(values)} are neither pixels nor fractions: YOLO coordinates are"
            " fractions of the width and height (0..1); these look like pixels"
        )
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise ValueError(f"box width and height must be > 0 (got {w:g}, {h:g})")
        return Box(
            x0=cx - w / 2,
            y0=cy - h / 2,
            x1=cx + w / 2,
            y1=cy + h / 2,
            units="fraction",
            label=label,
        )
    points = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
    return Polygon(points=points, units="fraction", label=label)


# ---------------------------------------------------------------------------------------------
# LabelMe


def _read_labelme(src: Path, files: list[Path]) -> Annotations:
    images = []
    used: set[str] = set()
    for file in files:
        data = _load_json(file)
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            raise AnnotationError(
                f"{file} is not a LabelMe file: it has no 'shapes' list.",
                reason="INVALID_ANNOTATIONS",
            )
        image_path = data.get("imagePath")
        if not isinstance(image_path, str) or not image_path.strip():
            raise AnnotationError(
                f"LabelMe file {file} has no 'imagePath': it cannot be matched to an image.",
                reason="INVALID_ANNOTATIONS",
            )
        ref = image_path.replace("\\", "/")
        hint = os.path.normpath(file.parent.absolute() / ref)
        shapes: list[Shape] = []
        problems: list[Problem] = []
        warnings: list[str] = []
        for index, item in enumerate(data["shapes"], start=1):
            where = f"shape {index}"
            label = str(item.get("label", "")) if isinstance(item, dict) else ""
            try:
                shape = _labelme_shape(item, _tag(label, where))
            except ValueError as exc:
                problems.append(("INVALID_ANNOTATION", f"{file.name} {where}: {exc}"))
                continue
            if shape is None:
                kind = item.get("shape_type")
                warnings.append(f"{file.name} {where} ({label}): a {kind} has no area; skipped")
                continue
            used.add(label)
            shapes.append(shape)
        images.append(
            AnnotatedImage(
                ref=ref,
                where=_where(src, file),
                shapes=tuple(shapes),
                frame=_frame(data.get("imageWidth"), data.get("imageHeight")),
                problems=tuple(problems),
                warnings=tuple(warnings),
                path_hint=hint,
            )
        )
    return Annotations("labelme", str(src), tuple(images), frozenset(used))


def _labelme_shape(item: Any, label: str) -> Shape | None:
    if not isinstance(item, dict):
        raise ValueError("is not an object")
    kind = item.get("shape_type") or "polygon"
    raw = item.get("points")
    if not isinstance(raw, list) or not all(isinstance(p, list) and len(p) == 2 for p in raw):
        raise ValueError("'points' must be a list of [x, y] pairs")
    points = [tuple(_finite(p, "point")) for p in raw]
    if kind == "rectangle":
        if len(points) not in (2, 4):
            raise ValueError(f"a rectangle needs 2 corner points, not {len(points)}")
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return Box(x0=min(xs), y0=min(ys), x1=max(xs), y1=max(ys), label=label)
    if kind == "circle":
        if len(points) != 2:
            raise ValueError(f"a circle needs its centre and a point on it, not {len(points)}")
        (cx, cy), (px, py) = points
        return Circle(cx=cx, cy=cy, r=math.hypot(px - cx, py - cy), label=label)
    if kind == "polygon":
        return Polygon(points=tuple((p[0], p[1]) for p in points), label=label)
    return None  # point, line, linestrip, mask...: no area to draw


# ---------------------------------------------------------------------------------------------
# Pascal VOC

_UNSAFE_XML = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _read_voc(src: Path, files: list[Path]) -> Annotations:
    images = []
    used: set[str] = set()
    for file in files:
        root = _parse_xml(file)
        filename = (root.findtext("filename") or "").strip()
        if not filename:
            raise AnnotationError(
                f"Pascal VOC file {file} has no <filename>: it cannot be matched to an image.",
                reason="INVALID_ANNOTATIONS",
            )
        size = root.find("size")
        frame = None
        if size is not None:
            frame = _frame(_int(size.findtext("width")), _int(size.findtext("height")))
        shapes: list[Shape] = []
        problems: list[Problem] = []
        for index, obj in enumerate(root.iter("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            where = f"object {index}"
            try:
                shapes.append(_voc_box(obj, _tag(name, where)))
            except ValueError as exc:
                problems.append(("INVALID_ANNOTATION", f"{file.name} {where} ({name}): {exc}"))
                continue
            used.add(name)
        images.append(
            AnnotatedImage(
                ref=filename.replace("\\", "/"),
                where=_where(src, file),
                shapes=tuple(shapes),
                frame=frame,
                problems=tuple(problems),
            )
        )
    return Annotations("voc", str(src), tuple(images), frozenset(used))


def _parse_xml(file: Path) -> ET.Element:
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise AnnotationError(
            f"Annotations {file} cannot be read: {exc}.", reason="INVALID_ANNOTATIONS"
        ) from exc
    if _UNSAFE_XML.search(data):
        raise AnnotationError(
            f"Pascal VOC file {file} declares a DTD or entities, which are refused (they can"
            " expand without limit or fetch files). Remove the <!DOCTYPE ...> block.",
            reason="INVALID_ANNOTATIONS",
        )
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise AnnotationError(
            f"Pascal VOC file {file} is not valid XML: {exc}.", reason="INVALID_ANNOTATIONS"
        ) from exc
    if root.tag != "annotation":
        raise AnnotationError(
            f"{file} is not a Pascal VOC file: its root is <{root.tag}>, not <annotation>.",
            reason="INVALID_ANNOTATIONS",
        )
    return root


def _voc_box(obj: ET.Element, label: str) -> Box:
    box = obj.find("bndbox")
    if box is None:
        raise ValueError("has no <bndbox>")
    texts = [box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    values = _finite([t.strip() if t else t for t in texts], "bndbox")
    xmin, ymin, xmax, ymax = values
    if xmax < xmin or ymax < ymin:
        raise ValueError(f"xmax/ymax are below xmin/ymin ({_short(values)})")
    # VOC pixels are 1-based and inclusive: xmin=1, xmax=10 is the first ten columns.
    return Box(x0=xmin - 1, y0=ymin - 1, x1=xmax, y1=ymax, label=label)


# ---------------------------------------------------------------------------------------------
# Matching to the batch's images


@dataclass
class Match:
    """Annotation entries per image (by index into the batch's images), and the leftovers."""

    per_image: dict[int, list[AnnotatedImage]] = field(default_factory=dict)
    unmatched: list[tuple[AnnotatedImage, Problem]] = field(default_factory=list)


def match_images(found: Annotations, images: Sequence[tuple[str, str]]) -> Match:
    """Which of `images` ((path relative to the source, absolute path)) each entry names."""
    by_abs = {os.path.normcase(os.path.normpath(p)): i for i, (_, p) in enumerate(images)}
    rels = [PurePosixPath(rel) for rel, _ in images]
    match = Match()
    for entry in found.images:
        index: int | None = None
        if entry.path_hint is not None:
            index = by_abs.get(os.path.normcase(os.path.normpath(entry.path_hint)))
        candidates = [index] if index is not None else _candidates(entry, rels)
        if len(candidates) == 1:
            match.per_image.setdefault(candidates[0], []).append(entry)
            continue
        if candidates:
            listing = ", ".join(images[i][0] for i in candidates[:5])
            problem = (
                "AMBIGUOUS_ANNOTATION",
                f"{found.format} {entry.where} names {entry.ref!r}, which fits several images"
                f" ({listing}). Give the path relative to the source in the annotations.",
            )
        else:
            problem = (
                "ANNOTATED_IMAGE_NOT_FOUND",
                f"{found.format} {entry.where} names image {entry.ref!r}, which is not in the"
                " source. Add the image, or remove its annotations.",
            )
        match.unmatched.append((entry, problem))
    return match


def _candidates(entry: AnnotatedImage, rels: list[PurePosixPath]) -> list[int]:
    ref = PurePosixPath(re.sub(r"^(\./)+", "", entry.ref.replace("\\", "/")))

    def key(path: PurePosixPath) -> tuple[str, ...]:
        parts = path.with_suffix("").parts if entry.by_stem and path.suffix else path.parts
        return tuple(p.casefold() for p in parts)

    wanted = key(ref)
    keys = [key(rel) for rel in rels]
    exact = [i for i, k in enumerate(keys) if k == wanted]
    if exact:
        return exact
    suffix = [i for i, k in enumerate(keys) if _ends_with(k, wanted) or _ends_with(wanted, k)]
    if suffix:
        return suffix
    return [i for i, k in enumerate(keys) if k[-1:] == wanted[-1:]]


def _ends_with(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    return len(shorter) < len(longer) and longer[-len(shorter) :] == shorter


# ---------------------------------------------------------------------------------------------
# Small helpers


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"Annotations {path} are not valid JSON: {exc.msg} (line {exc.lineno}).",
            reason="INVALID_ANNOTATIONS",
        ) from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(
            f"Annotations {path} cannot be read as UTF-8 text: {exc}.",
            reason="INVALID_ANNOTATIONS",
        ) from exc


def _finite(values: Any, what: str, length: int | None = None) -> list[float]:
    """`values` as finite floats; ValueError naming `what` when one is not a number."""
    if not isinstance(values, list | tuple):
        raise ValueError(f"{what} must be a list of numbers, not {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{what} must have {length} numbers, not {len(values)}")
    numbers = []
    for value in values:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{what} holds {value!r}, which is neither pixels nor a fraction")
        numbers.append(number)
    return numbers


def _where(src: Path, file: Path) -> str:
    """`file` as messages name it: relative to the annotations folder, or its name."""
    return file.relative_to(src).as_posix() if src.is_dir() else file.name


def _frame(width: Any, height: Any) -> tuple[int, int] | None:
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return (width, height)
    return None


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def _short(values: Iterable[float]) -> str:
    items = list(values)
    return ", ".join(f"{v:g}" for v in items[:8]) + (", ..." if len(items) > 8 else "")
