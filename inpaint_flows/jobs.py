"""Finding the jobs of a batch: folder layouts and manifests become a list of `Job`.

Sources, by what `discover_jobs` is given:

- a folder holding `images/` (and usually `masks/`): masks are matched by relative path and stem,
  in any image format (`images/sub/a.jpg` + `masks/sub/a.png`);
- any other folder: `name.ext` + `name_mask.ext` pairs side by side, recursively;
- a `.csv` or `.jsonl` manifest with an `image` column, a `mask` column and any `InpaintParams`
  field as a per-row override of the batch defaults; paths are relative to the manifest's folder;
- with `mask=`, one mask serves every image that has no mask of its own;
- with `masks=` (`MaskSettings`): shapes from an annotation file, a fixed region, and grow/
  shrink/feather, recorded on each job as its `mask_recipe` (see `masks`). A manifest may give
  shapes in `mask_boxes` / `mask_polygons` columns instead of (or besides) a `mask` file.

Decisions:

- Files are picked by extension (case-insensitive): .png .jpg .jpeg .webp, and .bmp .tif .tiff
  .gif, which `images` converts. Other files are skipped with one log line; hidden files and
  folders (`.DS_Store`, `.git/`) are skipped silently. Symlinked folders are not followed.
- A file whose stem ends in `_mask` is a mask in the pair layout, never an image.
- Several masks for one image: the one with the image's extension wins; otherwise the job is
  reported as ambiguous rather than guessing.
- What is wrong with one input (no mask, a path to nowhere, a bad value, a duplicate row) is
  recorded on its job (`problem`, `problem_reason`), so it is reported and the batch goes on.
  With mask shapes in play (annotations, a region, manifest shape columns), an image with no
  mask from any source is `NO_MASK`; an annotation naming an image the source does not have
  becomes a job of its own, reported invalid (`ANNOTATED_IMAGE_NOT_FOUND`).
  Only a manifest that cannot be used as a whole raises `ManifestError`: unreadable, not
  UTF-8, unparseable (CSV syntax, a JSONL line that is not a JSON object), no `image` column, no
  `mask` column without `mask=`, or an unknown column (a typo such as `stpes` would otherwise be
  ignored silently and the batch run with the default).
- Manifest cells: empty (or JSON `null`) means the batch default. CSV cells of non-text fields
  are read as JSON (`25`, `7.5`, `[{"model_name": "x", "strength": 0.5}]`) and validated by
  pydantic; a bad value names its column, row and the allowed range. Row numbers are the ones a
  spreadsheet shows (header = row 1) for CSV, line numbers for JSONL.
- A duplicate manifest row (same image, mask and parameters as an earlier row) is invalid: it
  would pay for the same result twice.
- `Job.name` is the image path relative to the source (relative to `images/` in that layout,
  to the manifest's folder for manifests); when one image is on several manifest rows each gets
  ` (row N)`. Names are unique in a batch.
- `Job.output_stem` keeps subfolders, sanitises each component (no `..`, no absolute paths, no
  characters Windows refuses, no hidden names; Unicode and spaces kept, NFC) and is unique even on
  case-insensitive file systems: colliding stems get the extension (`a_png`, `a_jpg`), then a
  short hash of the input (and, for manifests, of its mask and parameters).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import logging
import os
import re
import types
import typing
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from inpaint_flows.annotations import Annotations, match_images, read_annotations
from inpaint_flows.errors import AnnotationError, ImageError, InputError, ManifestError, MaskError
from inpaint_flows.mask_geometry import as_dict
from inpaint_flows.masks import (
    MANIFEST_SHAPE_COLUMNS,
    WAYS_TO_GIVE_A_MASK,
    MaskRecipe,
    MaskSettings,
    ShapeGroup,
    manifest_group,
    parse_manifest_shapes,
)
from inpaint_flows.models import InpaintParams, Job

__all__ = [
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "MASK_SUFFIX",
    "assign_output_stems",
    "discover_jobs",
    "output_stem_for",
    "problem_error",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
MASK_SUFFIX = "_mask"
MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl")
PARAM_COLUMNS: tuple[str, ...] = tuple(InpaintParams.model_fields)
MANIFEST_COLUMNS: tuple[str, ...] = ("image", "mask", *MANIFEST_SHAPE_COLUMNS, *PARAM_COLUMNS)

# Which error class `prepare_job` raises for a problem found at discovery.
_PROBLEM_ERRORS: dict[str, type[InputError]] = {
    "MISSING_MASK": MaskError,
    "MASK_NOT_FOUND": MaskError,
    "AMBIGUOUS_MASK": MaskError,
    "IMAGE_NOT_FOUND": ImageError,
    "EMPTY_IMAGE_CELL": ManifestError,
    "INVALID_PARAMETER": ManifestError,
    "INVALID_ROW": ManifestError,
    "DUPLICATE_ROW": ManifestError,
    "INVALID_SHAPES": ManifestError,
    "NO_MASK": MaskError,
    "INVALID_ANNOTATION": AnnotationError,
    "INVALID_COORDINATES": AnnotationError,
    "ANNOTATION_WITHOUT_IMAGE": AnnotationError,
    "ANNOTATED_IMAGE_NOT_FOUND": AnnotationError,
    "AMBIGUOUS_ANNOTATION": AnnotationError,
}
# Appended to "no mask" messages when no mask shapes are in play, so a user with no mask
# files at all learns that masks can be drawn.
_DRAW_HINT = " Or draw masks: --annotations, --mask-region (preview with `inpaint-flows masks`)."

_JSON_EXAMPLES = {
    "loras": '[{"model_name": "name", "strength": 0.8}]',
    "embeddings": '[{"model_name": "name"}]',
}
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_MAX_COMPONENT_BYTES = 120


def problem_error(job: Job) -> InputError:
    """The error to raise for a job whose discovery recorded a problem."""
    reason = job.problem_reason or InputError.reason
    error = _PROBLEM_ERRORS.get(reason, InputError)
    return error(job.problem or f"{job.name}: unusable input.", reason=reason)


# ---------------------------------------------------------------------------------------------
# Entry point


def discover_jobs(
    source: str | Path,
    defaults: InpaintParams,
    mask: str | Path | None = None,
    *,
    exclude: Iterable[str | Path] = (),
    masks: MaskSettings | None = None,
) -> list[Job]:
    """Every input of a batch as a `Job`, problems recorded on the job rather than raised.

    Args:
        source: A folder (`images/` + `masks/`, or `name` + `name_mask` pairs) or a `.csv` /
            `.jsonl` manifest.
        defaults: The batch's request parameters; manifest cells override them per row.
        mask: One mask for every image that has no mask of its own.
        exclude: Folders not to search (e.g. an output folder inside the source).
        masks: Annotations, a region and mask operations (see `masks.MaskSettings`).

    Raises:
        InputError: the source does not exist or is a file that is not a manifest.
        MaskError: `mask` does not exist.
        ManifestError: the manifest cannot be used at all (see the module docstring).
        AnnotationError: the annotations cannot be read, or `--labels` names an unknown label.
    """
    src = Path(source)
    settings = masks or MaskSettings()
    single_mask = _single_mask(mask)
    # Read before the images are listed: an unreadable file or a mistyped label stops the
    # batch before anything else happens.
    annotations = (
        read_annotations(settings.annotations, settings.labels) if settings.annotations else None
    )
    if not src.exists():
        raise InputError(
            f"Source {src} does not exist. Give a folder of images and masks or a manifest"
            " (.csv or .jsonl).",
            reason="SOURCE_NOT_FOUND",
        )
    if src.is_file():
        if src.suffix.lower() not in MANIFEST_SUFFIXES:
            raise InputError(
                f"Source {src} is a file but not a manifest: use a .csv or .jsonl file, or a"
                " folder of images and masks.",
                reason="INVALID_SOURCE",
            )
        drafts = _manifest_drafts(src, defaults, single_mask, settings.generates)
        root = Path(os.path.normpath(src.parent.absolute()))
    else:
        skip = {Path(p).absolute() for p in exclude}
        if single_mask is not None:
            skip.add(Path(single_mask))
        if (src / "images").is_dir():
            drafts = _split_layout_drafts(src, defaults, single_mask, skip)
            root = src.absolute() / "images"
        else:
            drafts = _pair_layout_drafts(src, defaults, single_mask, skip)
            root = src.absolute()
    drawing = annotations is not None or settings.region is not None or _has_shapes(drafts)
    if drawing or settings.ops.any:
        drafts = _with_mask_recipes(drafts, settings, annotations, root, defaults)
    if not drawing:
        for draft in drafts:  # only mask files in play: point at the other ways
            draft.problems = [
                (r, m + _DRAW_HINT if r == "MISSING_MASK" else m) for r, m in draft.problems
            ]
    return _to_jobs(drafts)


def _single_mask(mask: str | Path | None) -> str | None:
    if mask is None:
        return None
    path = Path(mask)
    if not path.is_file():
        raise MaskError(
            f"The mask for all images, {path}, does not exist or is not a file.",
            reason="MASK_NOT_FOUND",
        )
    return os.path.normpath(path.absolute())


# ---------------------------------------------------------------------------------------------
# Output names


def output_stem_for(rel_path: str) -> str:
    """A safe relative output path (no extension) for an input at `rel_path`.

    Subfolders are kept; each component is made safe on Linux, macOS and Windows; the result is
    never absolute, never contains `..` and never starts with a dot. Not unique on its own: see
    `assign_output_stems`.
    """
    text = rel_path.replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("/", "")]
    if not parts:
        return "_"
    last = parts[-1]
    stem = last.rsplit(".", 1)[0] if "." in last.lstrip(".") else last
    parts[-1] = stem
    return "/".join(_safe_component(p) for p in parts)


def assign_output_stems(
    rel_paths: Sequence[str], discriminators: Sequence[str] | None = None
) -> list[str]:
    """Unique output stems for inputs at `rel_paths`, in the same order.

    Stems that would collide (compared case-insensitively, after Unicode NFC) first get the
    input's extension (`a.png`, `a.jpg` -> `a_png`, `a_jpg`), then an 8-hex hash of the path and
    its discriminator (for manifest rows: the mask and parameters), then a counter for inputs
    that are identical in every respect.
    """
    discs = list(discriminators) if discriminators is not None else [""] * len(rel_paths)
    if len(discs) != len(rel_paths):
        raise ValueError("rel_paths and discriminators must have the same length")
    stems = [output_stem_for(p) for p in rel_paths]

    crowded = Counter(_fold(s) for s in stems)
    for i, path in enumerate(rel_paths):
        if crowded[_fold(stems[i])] > 1:
            ext = _safe_component(PurePosixPath(path.replace("\\", "/")).suffix.lstrip(".").lower())
            if ext != "_":
                stems[i] = f"{stems[i]}_{ext}"

    crowded = Counter(_fold(s) for s in stems)
    for i, path in enumerate(rel_paths):
        if crowded[_fold(stems[i])] > 1:
            digest = hashlib.sha256(f"{path}\0{discs[i]}".encode()).hexdigest()[:8]
            stems[i] = f"{stems[i]}-{digest}"

    seen: set[str] = set()
    for i, stem in enumerate(stems):
        candidate, n = stem, 1
        while _fold(candidate) in seen:
            n += 1
            candidate = f"{stem}-{n}"
        stems[i] = candidate
        seen.add(_fold(candidate))
    return stems


def _fold(stem: str) -> str:
    return unicodedata.normalize("NFC", stem).casefold()


def _safe_component(part: str) -> str:
    text = unicodedata.normalize("NFC", part)
    if text == "..":
        return "__"
    text = _UNSAFE_CHARS.sub("_", text).strip()
    if text.endswith((".", " ")):  # Windows drops trailing dots and spaces
        text = text.rstrip(". ") + "_"
    if text.startswith("."):
        text = "_" + text[1:]
    if not text:
        return "_"
    if text.split(".", 1)[0].casefold() in _WINDOWS_RESERVED:
        text = "_" + text
    encoded = text.encode()
    if len(encoded) > _MAX_COMPONENT_BYTES:
        digest = hashlib.sha256(encoded).hexdigest()[:8]
        text = encoded[: _MAX_COMPONENT_BYTES - 9].decode(errors="ignore") + "-" + digest
    return text


# ---------------------------------------------------------------------------------------------
# Drafts: jobs before their names and stems are made unique


@dataclass
class _Draft:
    rel: str  # image path relative to the source (POSIX); names and stems derive from it
    image_path: str
    mask_path: str | None
    params: InpaintParams
    problems: list[tuple[str, str]] = field(default_factory=list)  # (reason, message)
    row: int | None = None  # manifest row, None for folders
    discriminator: str = ""
    groups: list[ShapeGroup] = field(default_factory=list)  # manifest shape cells
    recipe: MaskRecipe | None = None


def _to_jobs(drafts: list[_Draft]) -> list[Job]:
    per_rel = Counter(d.rel for d in drafts if d.row is not None)
    names: list[str] = []
    for d in drafts:
        if d.row is not None and (not d.rel or per_rel[d.rel] > 1):
            names.append(f"{d.rel} (row {d.row})" if d.rel else f"row {d.row}")
        else:
            names.append(d.rel)
    seen: Counter[str] = Counter()
    for i, name in enumerate(names):  # last resort: names must be unique in a batch
        seen[name] += 1
        if seen[name] > 1:
            names[i] = f"{name} #{seen[name]}"
    stems = assign_output_stems([d.rel for d in drafts], [d.discriminator for d in drafts])
    jobs = []
    for d, name, stem in zip(drafts, names, stems, strict=True):
        problem = reason = None
        if d.problems:
            reason = d.problems[0][0]
            problem = " ".join(message for _, message in d.problems)
        jobs.append(
            Job(
                name=name,
                image_path=d.image_path,
                mask_path=d.mask_path,
                params=d.params,
                output_stem=stem,
                problem=problem,
                problem_reason=reason,
                mask_recipe=d.recipe,
            )
        )
    return jobs


# ---------------------------------------------------------------------------------------------
# Mask recipes: annotations, manifest shapes, the region, operations


def _has_shapes(drafts: list[_Draft]) -> bool:
    return any(d.groups or any(r == "INVALID_SHAPES" for r, _ in d.problems) for d in drafts)


def _with_mask_recipes(
    drafts: list[_Draft],
    settings: MaskSettings,
    annotations: Annotations | None,
    root: Path,
    defaults: InpaintParams,
) -> list[_Draft]:
    """Drafts with their mask recipe; "no mask" problems resolved against every source."""
    unique: dict[str, int] = {}
    images: list[tuple[str, str]] = []
    for draft in drafts:
        if draft.image_path and draft.image_path not in unique:
            unique[draft.image_path] = len(images)
            images.append((draft.rel, draft.image_path))
    match = match_images(annotations, images) if annotations is not None else None
    drawing = annotations is not None or settings.region is not None or _has_shapes(drafts)

    out: list[_Draft] = []
    for draft in drafts:
        groups = list(draft.groups)
        notes: list[str] = []
        entries = []
        if match is not None and draft.image_path in unique:
            entries = match.per_image.get(unique[draft.image_path], [])
        for entry in entries:
            assert annotations is not None
            draft.problems.extend(entry.problems)
            source = f"{annotations.format} {entry.where}"
            if entry.shapes:
                groups.append(
                    ShapeGroup(
                        source=source,
                        shapes=entry.shapes,
                        frame=entry.frame,
                        warnings=entry.warnings,
                    )
                )
            else:
                notes.append(
                    f"{source} has no shape for it" + "".join(f" ({w})" for w in entry.warnings)
                )
        has_mask = draft.mask_path is not None or bool(groups) or settings.region is not None
        missing = [p for p in draft.problems if p[0] == "MISSING_MASK"]
        if missing and (has_mask or drawing):
            draft.problems = [p for p in draft.problems if p[0] != "MISSING_MASK"]
            if not has_mask:
                why = "; ".join(notes) or (
                    f"no annotation in {annotations.source} names it"
                    if annotations is not None
                    else "no mask file and no shapes"
                )
                draft.problems.append(  # after what is wrong with its annotations, if any
                    (
                        "NO_MASK",
                        f"{draft.rel or draft.image_path}: no mask from any source ({why})."
                        f" Give it {WAYS_TO_GIVE_A_MASK}.",
                    ),
                )
        if groups or settings.region or settings.ops.any:
            draft.recipe = MaskRecipe(
                groups=tuple(groups), region=settings.region, ops=settings.ops
            )
        out.append(draft)

    if match is not None:
        assert annotations is not None
        for entry, (reason, message) in match.unmatched:
            ref = entry.ref
            problems = [(reason, message), *entry.problems]
            if any(r == "ANNOTATION_WITHOUT_IMAGE" for r, _ in entry.problems):
                problems = list(entry.problems)  # it names no file at all: say just that
            out.append(
                _Draft(
                    rel=ref,
                    image_path=os.path.normpath(root / ref),
                    mask_path=None,
                    params=defaults,
                    problems=problems,
                    discriminator=f"annotation\0{entry.where}",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Folders


def _walk(root: Path, skip: set[Path]) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of the image files under `root`, sorted."""
    found: list[tuple[str, Path]] = []
    ignored: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).absolute() not in skip
        )
        for filename in filenames:
            path = here / filename
            if filename.startswith(".") or path.absolute() in skip:
                continue
            rel = path.relative_to(root).as_posix()
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                found.append((rel, path))
            else:
                ignored.append(rel)
    if ignored:
        logger.info(
            "Skipped %d file(s) in %s that are not images by their extension: %s",
            len(ignored),
            root,
            ", ".join(sorted(ignored)[:10]) + (" ..." if len(ignored) > 10 else ""),
        )
    found.sort(key=lambda item: item[0])
    return found


def _pick_mask(candidates: list[Path], image: Path) -> Path | list[Path] | None:
    """The one mask for `image`; a list when several fit equally; None when none does."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    same_ext = [c for c in candidates if c.suffix.lower() == image.suffix.lower()]
    if len(same_ext) == 1:
        return same_ext[0]
    return sorted(candidates)


def _folder_draft(
    rel: str,
    image: Path,
    picked: Path | list[Path] | None,
    single_mask: str | None,
    defaults: InpaintParams,
    expected: str,
) -> _Draft:
    draft = _Draft(rel=rel, image_path=str(image.absolute()), mask_path=None, params=defaults)
    if isinstance(picked, list):
        listing = ", ".join(str(p) for p in picked)
        draft.problems.append(
            (
                "AMBIGUOUS_MASK",
                f"{rel}: several masks fit this image ({listing}). Keep one, or give them the"
                " image's extension.",
            )
        )
    elif picked is not None:
        draft.mask_path = str(picked.absolute())
    elif single_mask is not None:
        draft.mask_path = single_mask
    else:
        draft.problems.append(
            (
                "MISSING_MASK",
                f"{rel}: no mask found for {image}; expected {expected}. Add the mask, or pass"
                " one mask for all images.",
            )
        )
    return draft


def _split_layout_drafts(
    src: Path, defaults: InpaintParams, single_mask: str | None, skip: set[Path]
) -> list[_Draft]:
    images_dir, masks_dir = src / "images", src / "masks"
    masks: dict[tuple[str, str], list[Path]] = defaultdict(list)
    if masks_dir.is_dir():
        for rel, path in _walk(masks_dir, skip):
            masks[_mask_key(rel)].append(path)
    drafts = []
    for rel, path in _walk(images_dir, skip):
        picked = _pick_mask(masks.get(_mask_key(rel), []), path)
        stem = PurePosixPath(rel).with_suffix("")
        expected = f"masks/{stem}.png (or .jpg, .webp, ...)"
        drafts.append(_folder_draft(rel, path, picked, single_mask, defaults, expected))
    return drafts


def _mask_key(rel: str) -> tuple[str, str]:
    posix = PurePosixPath(rel)
    return str(posix.parent), posix.stem.casefold()


def _pair_layout_drafts(
    src: Path, defaults: InpaintParams, single_mask: str | None, skip: set[Path]
) -> list[_Draft]:
    masks: dict[tuple[str, str], list[Path]] = defaultdict(list)
    images: list[tuple[str, Path]] = []
    for rel, path in _walk(src, skip):
        posix = PurePosixPath(rel)
        if posix.stem.casefold().endswith(MASK_SUFFIX):
            masks[(str(posix.parent), posix.stem[: -len(MASK_SUFFIX)].casefold())].append(path)
        else:
            images.append((rel, path))
    drafts = []
    for rel, path in images:
        picked = _pick_mask(masks.get(_mask_key(rel), []), path)
        expected = f"{path.stem}{MASK_SUFFIX}.png (or .jpg, .webp, ...) beside it"
        drafts.append(_folder_draft(rel, path, picked, single_mask, defaults, expected))
    return drafts


# ---------------------------------------------------------------------------------------------
# Manifests


def _manifest_drafts(
    path: Path, defaults: InpaintParams, single_mask: str | None, generates: bool = False
) -> list[_Draft]:
    if path.suffix.lower() == ".csv":
        columns, rows = _read_csv(path)
    else:
        columns, rows = _read_jsonl(path)
    _check_columns(path, columns, single_mask, generates)
    base = Path(os.path.normpath(path.parent.absolute()))
    drafts: list[_Draft] = []
    first_seen: dict[tuple[str, str | None, str], int] = {}
    for row_number, row in rows:
        draft = _row_draft(path, base, row_number, row, defaults, single_mask)
        if not draft.problems:
            key = (draft.image_path, draft.mask_path, draft.discriminator)
            if key in first_seen:
                draft.problems.append(
                    (
                        "DUPLICATE_ROW",
                        f"{path.name} row {row_number}: same image, mask and parameters as row"
                        f" {first_seen[key]}; it would pay for the same result twice. Delete"
                        " one of the rows.",
                    )
                )
            else:
                first_seen[key] = row_number
        drafts.append(draft)
    return drafts


def _row_draft(
    manifest: Path,
    base: Path,
    row_number: int,
    row: dict[str, Any],
    defaults: InpaintParams,
    single_mask: str | None,
) -> _Draft:
    where = f"{manifest.name} row {row_number}"
    image_cell = row.get("image")
    draft = _Draft(rel="", image_path="", mask_path=None, params=defaults, row=row_number)
    if "__extra__" in row:
        draft.problems.append(
            (
                "INVALID_ROW",
                f"{where}: has {row['__extra__']} more cell(s) than the header has columns;"
                " a comma in a value must be inside double quotes.",
            )
        )
    if image_cell is None:
        draft.problems.append(
            ("EMPTY_IMAGE_CELL", f"{where}: the image cell is empty. Fill it in or delete the row.")
        )
    elif not isinstance(image_cell, str):
        draft.problems.append(
            ("INVALID_ROW", f"{where}: image must be a path (text), not {image_cell!r}.")
        )
    else:
        image = _resolve(base, image_cell)
        draft.image_path, draft.rel = image, _relative(image, base)
        if not Path(image).is_file():
            draft.problems.append(
                (
                    "IMAGE_NOT_FOUND",
                    f"{where}: image {image_cell!r} does not exist (looked for {image}). Paths are"
                    f" relative to the manifest's folder {base}.",
                )
            )

    mask_cell = row.get("mask")
    if isinstance(mask_cell, str):
        draft.mask_path = _resolve(base, mask_cell)
        if not Path(draft.mask_path).is_file():
            draft.problems.append(
                (
                    "MASK_NOT_FOUND",
                    f"{where}: mask {mask_cell!r} does not exist (looked for {draft.mask_path})."
                    f" Paths are relative to the manifest's folder {base}.",
                )
            )
    elif mask_cell is not None:
        draft.problems.append(("INVALID_ROW", f"{where}: mask must be a path, not {mask_cell!r}."))
    elif single_mask is not None:
        draft.mask_path = single_mask
    else:
        draft.problems.append(
            (
                "MISSING_MASK",
                f"{where}: no mask: the mask cell is empty. Fill it in, or pass one mask for"
                " all images.",
            )
        )
    for column in MANIFEST_SHAPE_COLUMNS:
        if row.get(column) is None:
            continue
        try:
            draft.groups.append(manifest_group(column, parse_manifest_shapes(column, row[column])))
        except ValueError as exc:
            draft.problems.append(("INVALID_SHAPES", f"{where}: column {column!r} {exc}."))

    overrides, errors = _overrides(row)
    if not errors:
        try:
            draft.params = defaults.with_overrides(overrides)
        except ValidationError as exc:
            errors = [_describe(err, row) for err in exc.errors()]
    if errors:
        fix = "Fix the value or empty the cell to use the batch default."
        draft.problems.append(("INVALID_PARAMETER", f"{where}: {'; '.join(errors)}. {fix}"))
    draft.discriminator = f"{draft.mask_path}\0{draft.params.model_dump_json()}"
    if draft.groups:  # rows without shapes keep the discriminator (and output names) they had
        shapes = [[as_dict(s) for s in g.shapes] for g in draft.groups]
        draft.discriminator += "\0" + json.dumps(shapes, sort_keys=True)
    return draft


def _resolve(base: Path, cell: str) -> str:
    return os.path.normpath(base / cell)  # an absolute cell stays absolute


def _relative(path: str, base: Path) -> str:
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).name


def _overrides(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    overrides: dict[str, Any] = {}
    errors: list[str] = []
    for column in PARAM_COLUMNS:
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, str) and column not in _TEXT_FIELDS:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                if column in _JSON_EXAMPLES:
                    errors.append(
                        f"column {column!r} = {row[column]!r} is not JSON; write it like"
                        f" {_JSON_EXAMPLES[column]}"
                    )
                    continue
                # otherwise left as text: pydantic's error names the expected type
        overrides[column] = value
    return overrides, errors


def _describe(err: Any, row: dict[str, Any]) -> str:
    loc = err.get("loc", ())
    column = str(loc[0]) if loc else "?"
    inner = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    allowed = _ALLOWED.get(column) if not inner else None
    return (
        f"column {column!r} = {row.get(column)!r}: {inner + ' ' if inner else ''}{err['msg']}"
        + (f" (allowed: {allowed})" if allowed else "")
    )


def _allowed(info: Any) -> str | None:
    """A field's allowed values as a person writes them: `1..100`, `>= -1`, `0 or 1`."""
    if typing.get_origin(info.annotation) is typing.Literal:
        return " or ".join(str(c) for c in typing.get_args(info.annotation))
    keys = ("ge", "le", "min_length", "max_length")
    bounds = {key: getattr(m, key) for m in info.metadata for key in keys if hasattr(m, key)}
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']}..{bounds['le']}"
    if "ge" in bounds:
        return f">= {bounds['ge']}"
    if "max_length" in bounds:
        unit = "characters" if _is_text_annotation(info.annotation) else "items"
        if "min_length" in bounds:
            return f"{bounds['min_length']}..{bounds['max_length']} {unit}"
        return f"at most {bounds['max_length']} {unit}"
    return None


def _is_text_annotation(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is str:
        return True
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return any(
            _is_text_annotation(a) for a in typing.get_args(annotation) if a is not type(None)
        )
    return False


_TEXT_FIELDS = frozenset(
    name
    for name, info in InpaintParams.model_fields.items()
    if _is_text_annotation(info.annotation)
)
_ALLOWED = {
    name: text for name, info in InpaintParams.model_fields.items() if (text := _allowed(info))
}


def _check_columns(
    path: Path, columns: list[str], single_mask: str | None, generates: bool = False
) -> None:
    duplicates = sorted(c for c, n in Counter(columns).items() if n > 1)
    if duplicates:
        raise ManifestError(f"Manifest {path}: column(s) {', '.join(duplicates)} appear twice.")
    if len(columns) == 1 and any(sep in columns[0] for sep in ";\t"):
        raise ManifestError(
            f"Manifest {path}: the header {columns[0]!r} looks separated by ';' or tabs:"
            " use commas.",
            reason="MISSING_COLUMN",
        )
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    if unknown:
        hints = []
        for column in unknown:
            close = difflib.get_close_matches(column, MANIFEST_COLUMNS, n=1)
            hints.append(f"{column!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ManifestError(
            f"Manifest {path}: unknown column(s) {', '.join(hints)}; a misspelt column would be"
            f" ignored. Allowed: {', '.join(MANIFEST_COLUMNS)}.",
            reason="UNKNOWN_COLUMN",
        )
    if "image" not in columns:
        raise ManifestError(
            f"Manifest {path} has no 'image' column (found: {', '.join(columns) or 'none'}).",
            reason="MISSING_COLUMN",
        )
    shape_columns = any(c in columns for c in MANIFEST_SHAPE_COLUMNS)
    if "mask" not in columns and single_mask is None and not shape_columns and not generates:
        raise ManifestError(
            f"Manifest {path} has no 'mask' column. Add one (or 'mask_boxes' /"
            " 'mask_polygons'), pass one mask for all images, annotations or a mask region.",
            reason="MISSING_COLUMN",
        )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"Manifest {path} is not UTF-8 text (byte {exc.start}). Save it as UTF-8 (in Excel:"
            " 'CSV UTF-8').",
            reason="UNREADABLE_MANIFEST",
        ) from exc
    except OSError as exc:
        raise ManifestError(
            f"Manifest {path} cannot be read: {exc}.", reason="UNREADABLE_MANIFEST"
        ) from exc


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    text = _read_text(path)
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise ManifestError(f"Manifest {path} is not valid CSV: {exc}.") from exc
    if not records or not any(cell.strip() for cell in records[0]):
        raise ManifestError(
            f"Manifest {path} is empty: its first line must be a header such as image,mask.",
            reason="MISSING_COLUMN",
        )
    header = [cell.strip() for cell in records[0]]
    rows: list[tuple[int, dict[str, Any]]] = []
    named = [i for i, c in enumerate(header) if c]
    for index, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue  # blank lines and rows of empty cells (spreadsheet exports)
        row: dict[str, Any] = {}
        for i in named:
            cell = record[i].strip() if i < len(record) else ""
            if cell:
                row[header[i]] = cell
        unnamed = [record[i] for i in range(len(record)) if i >= len(header) or not header[i]]
        if any(cell.strip() for cell in unnamed):
            row["__extra__"] = len(unnamed)
        rows.append((index, row))
    return [c for c in header if c], rows


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    text = _read_text(path)
    columns: dict[str, None] = {}
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(
                f"Manifest {path} line {number} is not valid JSON: {exc.msg} (column {exc.colno})."
            ) from exc
        if not isinstance(record, dict):
            raise ManifestError(
                f'Manifest {path} line {number} is not a JSON object ({{"image": ..., ...}}).'
            )
        row: dict[str, Any] = {}
        for key, value in record.items():
            columns.setdefault(key, None)
            if isinstance(value, str):
                value = value.strip()
            if value is not None and value != "":
                row[key] = value
        rows.append((number, row))
    return list(columns), rows
