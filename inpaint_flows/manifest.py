"""Manifests: a `.csv` or `.jsonl` file listing the batch's inputs, one row per job.

Columns: `image`, `mask`, the mask shape columns (`mask_boxes`, `mask_polygons`) and any
`InpaintParams` field as a per-row override of the batch defaults; paths are relative to the
manifest's folder. Empty cells (or JSON `null`) mean the batch default; CSV cells of non-text
fields are read as JSON and validated by pydantic, a bad value naming its column, row and the
allowed range. Row numbers are the ones a spreadsheet shows (header = row 1) for CSV, line
numbers for JSONL. A manifest that cannot be used as a whole raises `ManifestError` (unreadable,
not UTF-8, unparseable, no `image` column, no `mask` column without one mask for all, an unknown
column); what is wrong with one row is recorded on its draft. A duplicate row (same image, mask
and parameters as an earlier row) is invalid: it would pay for the same result twice.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import posixpath
import types
import typing
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from inpaint_flows.drafts import Draft
from inpaint_flows.errors import ManifestError
from inpaint_flows.locations import files_under, info, is_remote, name_of, parent_of, read_bytes
from inpaint_flows.mask_geometry import as_dict
from inpaint_flows.masks import MANIFEST_SHAPE_COLUMNS, manifest_group, parse_manifest_shapes
from inpaint_flows.models import InpaintParams

MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl")
PARAM_COLUMNS: tuple[str, ...] = tuple(InpaintParams.model_fields)
MANIFEST_COLUMNS: tuple[str, ...] = ("image", "mask", *MANIFEST_SHAPE_COLUMNS, *PARAM_COLUMNS)

_JSON_EXAMPLES = {
    "loras": '[{"model_name": "name", "strength": 0.8}]',
    "embeddings": '[{"model_name": "name"}]',
}


def manifest_drafts(
    path: Path | str, defaults: InpaintParams, single_mask: str | None, generates: bool = False
) -> list[Draft]:
    """The drafts of a manifest file, which may be in a bucket (`s3://.../list.csv`): then its
    relative paths are objects beside it. A cell may be a bucket URL in any manifest."""
    if not is_remote(path):
        path = Path(path)
    if PurePosixPath(str(path)).suffix.lower() == ".csv":
        columns, rows = _read_csv(path)
    else:
        columns, rows = _read_jsonl(path)
    _check_columns(path, columns, single_mask, generates)
    base: Path | str = (
        parent_of(path) if isinstance(path, str) else Path(os.path.normpath(path.parent.absolute()))
    )
    exists = _Existence(base)
    drafts: list[Draft] = []
    first_seen: dict[tuple[str, str | None, str], int] = {}
    for row_number, row in rows:
        draft = _row_draft(path, base, row_number, row, defaults, single_mask, exists)
        if not draft.problems:
            key = (draft.image_path, draft.mask_path, draft.discriminator)
            if key in first_seen:
                draft.problems.append(
                    (
                        "DUPLICATE_ROW",
                        f"{_name(path)} row {row_number}: same image, mask and parameters as row"
                        f" {first_seen[key]}; it would pay for the same result twice. Delete"
                        " one of the rows.",
                    )
                )
            else:
                first_seen[key] = row_number
        drafts.append(draft)
    return drafts


def _row_draft(
    manifest: Path | str,
    base: Path | str,
    row_number: int,
    row: dict[str, Any],
    defaults: InpaintParams,
    single_mask: str | None,
    exists: _Existence,
) -> Draft:
    where = f"{_name(manifest)} row {row_number}"
    image_cell = row.get("image")
    draft = Draft(rel="", image_path="", mask_path=None, params=defaults, row=row_number)
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
        if not exists(image):
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
        if not exists(draft.mask_path):
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


def _resolve(base: Path | str, cell: str) -> str:
    if is_remote(cell):
        return cell
    if isinstance(base, str):  # a manifest in a bucket: a path is an object beside it
        scheme, rest = base.split("://", 1)
        joined = posixpath.normpath(f"/{rest}/{cell.replace(chr(92), '/')}").lstrip("/")
        return f"{scheme}://{joined}"
    return os.path.normpath(base / cell)  # an absolute cell stays absolute


def _relative(path: str, base: Path | str) -> str:
    if isinstance(base, str) or is_remote(path):
        prefix = f"{base}/" if isinstance(base, str) else ""
        return path[len(prefix) :] if prefix and path.startswith(prefix) else path
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
    path: Path | str, columns: list[str], single_mask: str | None, generates: bool = False
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


def _name(path: Path | str) -> str:
    return name_of(path) if isinstance(path, str) else path.name


class _Existence:
    """Whether an input file or object exists; a bucket's folder is listed once, not asked per
    row."""

    def __init__(self, base: Path | str) -> None:
        self.base = base
        self._listed: set[str] | None = None

    def __call__(self, location: str) -> bool:
        if not is_remote(location):
            return Path(location).is_file()
        if isinstance(self.base, str) and location.startswith(f"{self.base}/"):
            if self._listed is None:
                self._listed = {url for _, url in files_under(self.base)}
            return location in self._listed
        return info(location) is not None


def _read_text(path: Path | str) -> str:
    try:
        if isinstance(path, str):
            return read_bytes(path).decode("utf-8-sig")
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


def _read_csv(path: Path | str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
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


def _read_jsonl(path: Path | str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
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
