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
  .gif, which `pictures` converts. Other files are skipped with one log line; hidden files and
  folders (`.DS_Store`, `.git/`) are skipped silently. Symlinked folders are not followed.
- A file whose stem ends in `_mask` is a mask in the pair layout, never an image.
- Several masks for one image: the one with the image's extension wins; otherwise the job is
  reported as ambiguous rather than guessing.
- What is wrong with one input (no mask, a path to nowhere, a bad value, a duplicate row) is
  recorded on its job (`problem`, `problem_reason`), so it is reported and the batch goes on.
  With mask shapes in play (annotations, a region, manifest shape columns), an image with no
  mask from any source is `NO_MASK`; an annotation naming an image the source does not have
  becomes a job of its own, reported invalid (`ANNOTATED_IMAGE_NOT_FOUND`). Only a manifest
  that cannot be used as a whole raises `ManifestError` (see `manifest` for its rules).
- `Job.name` is the image path relative to the source (relative to `images/` in that layout,
  to the manifest's folder for manifests); when one image is on several manifest rows each gets
  ` (row N)`. Names are unique in a batch.
- `Job.output_stem`: unique, safe relative output paths; see `output_names`.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from inpaint_flows.annotations import Annotations, match_images, read_annotations_at
from inpaint_flows.drafts import Draft, to_jobs
from inpaint_flows.errors import AnnotationError, ImageError, InputError, ManifestError, MaskError
from inpaint_flows.locations import files_under, is_remote, join, parent_of
from inpaint_flows.locations import is_file as remote_is_file
from inpaint_flows.manifest import MANIFEST_SUFFIXES, manifest_drafts
from inpaint_flows.masks import (
    WAYS_TO_GIVE_A_MASK,
    MaskRecipe,
    MaskSettings,
    ShapeGroup,
)
from inpaint_flows.models import InpaintParams, Job

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
MASK_SUFFIX = "_mask"
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
    settings = masks or MaskSettings()
    single_mask = _single_mask(mask)
    # Read before the images are listed: an unreadable file or a mistyped label stops the
    # batch before anything else happens.
    annotations = (
        read_annotations_at(os.fspath(settings.annotations), settings.labels)
        if settings.annotations
        else None
    )
    if is_remote(source):
        drafts, url_root = _remote_drafts(
            os.fspath(source), defaults, single_mask, exclude, settings.generates
        )
        return _checked_drafts(drafts, settings, annotations, url_root, defaults)
    src = Path(source)
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
        drafts = manifest_drafts(src, defaults, single_mask, settings.generates)
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
    return _checked_drafts(drafts, settings, annotations, root, defaults)


def _checked_drafts(
    drafts: list[Draft],
    settings: MaskSettings,
    annotations: Annotations | None,
    root: Path | str,
    defaults: InpaintParams,
) -> list[Job]:
    """The jobs of `drafts`, with their mask recipes and the hints of a missing mask."""
    drawing = annotations is not None or settings.region is not None or _has_shapes(drafts)
    if drawing or settings.ops.any:
        drafts = _with_mask_recipes(drafts, settings, annotations, root, defaults)
    if not drawing:
        for draft in drafts:  # only mask files in play: point at the other ways
            draft.problems = [
                (r, m + _DRAW_HINT if r == "MISSING_MASK" else m) for r, m in draft.problems
            ]
    return to_jobs(drafts)


def _under(root: Path | str, rel: str) -> str:
    """`rel` under the images' root: a bucket URL, or a local folder."""
    return join(root, rel) if isinstance(root, str) else os.path.normpath(root / rel)


def _remote_drafts(
    url: str,
    defaults: InpaintParams,
    single_mask: str | None,
    exclude: Iterable[str | Path],
    generates: bool,
) -> tuple[list[Draft], str]:
    """The drafts of a folder in a bucket (one listing, paired like a local folder), or of a
    manifest in a bucket (its paths are objects beside it); and the URL the images' relative
    paths start from."""
    if url.lower().endswith(tuple(MANIFEST_SUFFIXES)):
        return manifest_drafts(url, defaults, single_mask, generates), parent_of(url)
    skipped = tuple(f"{os.fspath(p).rstrip('/')}/" for p in exclude if is_remote(p))
    files = [
        (rel, loc)
        for rel, loc in files_under(url)
        if not any(part.startswith(".") for part in rel.split("/"))
        and not loc.startswith(skipped)
        and loc != single_mask
    ]
    if not files:
        raise InputError(
            f"Source {url} holds no files. Give a folder of images and masks in the bucket"
            " (images/ + masks/, or name + name_mask pairs).",
            reason="SOURCE_NOT_FOUND",
        )
    images = _image_files(files, url)
    if any(rel.startswith("images/") for rel, _ in images):
        split = [(rel[len("images/") :], loc) for rel, loc in images if rel.startswith("images/")]
        masks = [(rel[len("masks/") :], loc) for rel, loc in images if rel.startswith("masks/")]
        return _split_drafts(split, masks, defaults, single_mask), join(url, "images")
    return _pair_drafts(images, defaults, single_mask), url


def _single_mask(mask: str | Path | None) -> str | None:
    if mask is None:
        return None
    if is_remote(mask):
        if not remote_is_file(os.fspath(mask)):
            raise MaskError(
                f"The mask for all images, {mask}, does not exist in the bucket.",
                reason="MASK_NOT_FOUND",
            )
        return os.fspath(mask)
    path = Path(mask)
    if not path.is_file():
        raise MaskError(
            f"The mask for all images, {path}, does not exist or is not a file.",
            reason="MASK_NOT_FOUND",
        )
    return os.path.normpath(path.absolute())


# ---------------------------------------------------------------------------------------------
# Mask recipes: annotations, manifest shapes, the region, operations


def _has_shapes(drafts: list[Draft]) -> bool:
    return any(d.groups or any(r == "INVALID_SHAPES" for r, _ in d.problems) for d in drafts)


def _with_mask_recipes(
    drafts: list[Draft],
    settings: MaskSettings,
    annotations: Annotations | None,
    root: Path | str,
    defaults: InpaintParams,
) -> list[Draft]:
    """Drafts with their mask recipe; "no mask" problems resolved against every source.

    `root`: the folder (or bucket URL) the images' relative paths start from."""
    unique: dict[str, int] = {}
    images: list[tuple[str, str]] = []
    for draft in drafts:
        if draft.image_path and draft.image_path not in unique:
            unique[draft.image_path] = len(images)
            images.append((draft.rel, draft.image_path))
    match = match_images(annotations, images) if annotations is not None else None
    drawing = annotations is not None or settings.region is not None or _has_shapes(drafts)

    out: list[Draft] = []
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
                Draft(
                    rel=ref,
                    image_path=join(root, ref)
                    if isinstance(root, str)
                    else os.path.normpath(root / ref),
                    mask_path=None,
                    params=defaults,
                    problems=problems,
                    discriminator=f"annotation\0{entry.where}",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Folders


def _walk(root: Path, skip: set[Path]) -> list[tuple[str, str]]:
    """(relative POSIX path, absolute path) of the image files under `root`, sorted."""
    files: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).absolute() not in skip
        )
        for filename in filenames:
            path = here / filename
            if filename.startswith(".") or path.absolute() in skip:
                continue
            files.append((path.relative_to(root).as_posix(), str(path.absolute())))
    return _image_files(files, root)


def _image_files(files: list[tuple[str, str]], root: Path | str) -> list[tuple[str, str]]:
    """The image files of `files` (by extension), sorted; the others are logged as skipped."""
    found = [
        (rel, loc) for rel, loc in files if PurePosixPath(rel).suffix.lower() in IMAGE_EXTENSIONS
    ]
    ignored = [rel for rel, _ in files if PurePosixPath(rel).suffix.lower() not in IMAGE_EXTENSIONS]
    if ignored:
        logger.info(
            "Skipped %d file(s) in %s that are not images by their extension: %s",
            len(ignored),
            root,
            ", ".join(sorted(ignored)[:10]) + (" ..." if len(ignored) > 10 else ""),
        )
    found.sort(key=lambda item: item[0])
    return found


def _pick_mask(candidates: list[str], image: str) -> str | list[str] | None:
    """The one mask for `image`; a list when several fit equally; None when none does."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    suffix = PurePosixPath(image).suffix.lower()
    same_ext = [c for c in candidates if PurePosixPath(c).suffix.lower() == suffix]
    if len(same_ext) == 1:
        return same_ext[0]
    return sorted(candidates)


def _folder_draft(
    rel: str,
    image: str,
    picked: str | list[str] | None,
    single_mask: str | None,
    defaults: InpaintParams,
    expected: str,
) -> Draft:
    draft = Draft(rel=rel, image_path=image, mask_path=None, params=defaults)
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
        draft.mask_path = picked
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
) -> list[Draft]:
    images_dir, masks_dir = src / "images", src / "masks"
    masks = _walk(masks_dir, skip) if masks_dir.is_dir() else []
    return _split_drafts(_walk(images_dir, skip), masks, defaults, single_mask)


def _split_drafts(
    images: list[tuple[str, str]],
    mask_files: list[tuple[str, str]],
    defaults: InpaintParams,
    single_mask: str | None,
) -> list[Draft]:
    """images/ + masks/: (relative path, location) of each; a mask has its image's path."""
    masks: dict[tuple[str, str], list[str]] = defaultdict(list)
    for rel, loc in mask_files:
        masks[_mask_key(rel)].append(loc)
    drafts = []
    for rel, loc in images:
        picked = _pick_mask(masks.get(_mask_key(rel), []), loc)
        stem = PurePosixPath(rel).with_suffix("")
        expected = f"masks/{stem}.png (or .jpg, .webp, ...)"
        drafts.append(_folder_draft(rel, loc, picked, single_mask, defaults, expected))
    return drafts


def _mask_key(rel: str) -> tuple[str, str]:
    posix = PurePosixPath(rel)
    return str(posix.parent), posix.stem.casefold()


def _pair_layout_drafts(
    src: Path, defaults: InpaintParams, single_mask: str | None, skip: set[Path]
) -> list[Draft]:
    return _pair_drafts(_walk(src, skip), defaults, single_mask)


def _pair_drafts(
    files: list[tuple[str, str]], defaults: InpaintParams, single_mask: str | None
) -> list[Draft]:
    """name + name_mask pairs: (relative path, location) of every image file."""
    masks: dict[tuple[str, str], list[str]] = defaultdict(list)
    images: list[tuple[str, str]] = []
    for rel, loc in files:
        posix = PurePosixPath(rel)
        if posix.stem.casefold().endswith(MASK_SUFFIX):
            masks[(str(posix.parent), posix.stem[: -len(MASK_SUFFIX)].casefold())].append(loc)
        else:
            images.append((rel, loc))
    drafts = []
    for rel, loc in images:
        picked = _pick_mask(masks.get(_mask_key(rel), []), loc)
        expected = f"{PurePosixPath(rel).stem}{MASK_SUFFIX}.png (or .jpg, .webp, ...) beside it"
        drafts.append(_folder_draft(rel, loc, picked, single_mask, defaults, expected))
    return drafts
