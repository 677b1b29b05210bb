"""Mask settings, manifest shape cells, and drawn masks through discovery, checks, keys, payload."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from inpaint_flows.errors import MaskError
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.mask_geometry import Box, Polygon
from inpaint_flows.masks import MaskSettings, parse_manifest_shapes
from inpaint_flows.models import InpaintParams, Job
from inpaint_flows.payload import encode_payload
from inpaint_flows.pictures import final_mask

DEFAULTS = InpaintParams()


def photo(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.add.outer(np.arange(size[1]) * 3, np.arange(size[0]) * 5).astype(np.uint8)
    Image.fromarray(np.stack([values, values[::-1], values], axis=-1)).save(path)
    return path


def mask_file(path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    values = np.zeros((size[1], size[0]), dtype=np.uint8)
    values[box[1] : box[3], box[0] : box[2]] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)
    return path


def by_name(jobs: list[Job]) -> dict[str, Job]:
    return {job.name: job for job in jobs}


def sent_mask(job: Job) -> np.ndarray:
    _, mask_b64 = encode_payload(job)
    with Image.open(io.BytesIO(base64.b64decode(mask_b64))) as img:
        return np.asarray(img.convert("L"))


# ---------------------------------------------------------------------------------------------
# MaskSettings


def test_mask_settings_defaults_change_nothing() -> None:
    settings = MaskSettings()
    assert not settings.generates and not settings.ops.any


def test_mask_settings_split_labels_and_check_the_region_up_front() -> None:
    settings = MaskSettings(annotations="a.json", labels="person, car,", region=" bottom:12% ")
    assert settings.labels == ("person", "car") and settings.region == "bottom:12%"
    with pytest.raises(ValidationError, match="names no corner or side"):
        MaskSettings(region="middle:10%")
    with pytest.raises(ValidationError, match="give annotations too"):
        MaskSettings(labels="person")
    with pytest.raises(ValidationError):
        MaskSettings(grow=-1)


def test_mask_settings_round_trip_as_json_like_a_flow_parameter() -> None:
    settings = MaskSettings(annotations="a.json", labels=["cat"], grow=3, feather=2)
    assert MaskSettings.model_validate_json(settings.model_dump_json()) == settings


# ---------------------------------------------------------------------------------------------
# Manifest cells


@pytest.mark.parametrize(
    ("column", "cell", "expected"),
    [
        pytest.param("mask_boxes", "[10, 20, 30, 40]", [Box(x0=10, y0=20, x1=30, y1=40)],
                     id="one box"),
        pytest.param("mask_boxes", [[1, 2, 3, 4], [5, 6, 7, 8]],
                     [Box(x0=1, y0=2, x1=3, y1=4), Box(x0=5, y0=6, x1=7, y1=8)], id="boxes"),
        pytest.param("mask_boxes", "[[0.1, 0.2, 0.5, 1]]",
                     [Box(x0=0.1, y0=0.2, x1=0.5, y1=1, units="fraction")], id="fractions"),
        pytest.param("mask_polygons", "[[0, 0], [10, 0], [5, 8]]",
                     [Polygon(points=((0, 0), (10, 0), (5, 8)))], id="one polygon"),
        pytest.param("mask_polygons", [[0, 0, 0.5, 0, 0.5, 0.5]],
                     [Polygon(points=((0, 0), (0.5, 0), (0.5, 0.5)), units="fraction")],
                     id="flat, fractions"),
    ],
)  # fmt: skip
def test_manifest_shape_cells(column: str, cell: object, expected: list[object]) -> None:
    assert list(parse_manifest_shapes(column, cell)) == expected


@pytest.mark.parametrize(
    ("column", "cell", "message"),
    [
        pytest.param("mask_boxes", "[1, 2", "is not JSON", id="not json"),
        pytest.param("mask_boxes", "[]", "non-empty JSON list", id="empty"),
        pytest.param("mask_boxes", "[[1, 2, 3]]", "must be 4 numbers", id="three numbers"),
        pytest.param("mask_boxes", "[[30, 2, 10, 8]]", "has no area", id="swapped corners"),
        pytest.param("mask_boxes", '[[1, 2, "a", 4]]', "neither pixels nor a fraction", id="text"),
        pytest.param("mask_boxes", "[[1, 2, NaN, 4]]", "neither pixels nor a fraction", id="NaN"),
        pytest.param("mask_polygons", "[[[0, 0], [1, 1]]]", "fewer than 3", id="two points"),
        pytest.param("mask_polygons", "[[0, 0, 1]]", r"list of \[x, y\] points", id="odd flat"),
    ],
)
def test_bad_manifest_shape_cell_says_what_is_wrong(column: str, cell: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_manifest_shapes(column, cell)


def test_manifest_with_shape_columns_needs_no_mask_column(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png", "d.png"):
        photo(tmp_path / name)
    manifest = tmp_path / "batch.csv"
    manifest.write_text(
        "image,mask_boxes,mask_polygons\n"
        'a.png,"[[2, 3, 12, 8]]",\n'
        'b.png,"[[0.5, 0, 1, 0.5]]","[[0, 20], [10, 20], [10, 30], [0, 30]]"\n'
        'c.png,"[[1, 2, 3]]",\n'
        "d.png,,\n",
        encoding="utf-8",
    )
    jobs = by_name(discover_jobs(manifest, DEFAULTS))
    expected = np.zeros((30, 40), dtype=np.uint8)
    expected[3:8, 2:12] = 255
    assert np.array_equal(np.asarray(final_mask(jobs["a.png"])[0]), expected)
    both = np.zeros((30, 40), dtype=np.uint8)
    both[0:15, 20:40] = 255
    both[20:30, 0:10] = 255
    assert np.array_equal(np.asarray(final_mask(jobs["b.png"])[0]), both)
    assert jobs["b.png"].mask_source == "manifest"
    assert jobs["c.png"].problem_reason == "INVALID_SHAPES"
    assert "batch.csv row 4: column 'mask_boxes' box 1 must be 4 numbers" in (
        jobs["c.png"].problem or ""
    )
    assert jobs["d.png"].problem_reason == "NO_MASK"
    assert "mask_boxes" in (jobs["d.png"].problem or "")


def test_manifest_row_may_combine_a_mask_file_and_boxes(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    mask_file(tmp_path / "a_mask.png", (0, 0, 5, 5))
    manifest = tmp_path / "batch.jsonl"
    manifest.write_text(
        json.dumps({"image": "a.png", "mask": "a_mask.png", "mask_boxes": [[30, 20, 40, 30]]})
        + "\n",
        encoding="utf-8",
    )
    (job,) = discover_jobs(manifest, DEFAULTS)
    got = np.asarray(final_mask(job)[0])
    assert got[0:5, 0:5].all() and got[20:30, 30:40].all()
    assert int((got > 0).sum()) == 25 + 100
    assert job.mask_source == "file+manifest"


# ---------------------------------------------------------------------------------------------
# Folders with a region, operations on mask files


def test_a_region_gives_every_image_a_mask(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    photo(tmp_path / "b.png", (80, 60))
    jobs = by_name(discover_jobs(tmp_path, DEFAULTS, masks=MaskSettings(region="bottom:10%")))
    assert all(job.problem is None for job in jobs.values())
    a = np.asarray(final_mask(jobs["a.png"])[0]) > 0
    b = np.asarray(final_mask(jobs["b.png"])[0]) > 0
    assert a[27:].all() and not a[:27].any()
    assert b[54:].all() and not b[:54].any()
    assert prepare_job(jobs["a.png"]).mask_coverage_pct == pytest.approx(10.0)
    assert jobs["a.png"].mask_source == "region"


def test_without_any_mask_source_the_legacy_reason_stays_and_points_at_drawing(
    tmp_path: Path,
) -> None:
    photo(tmp_path / "a.png")
    (job,) = discover_jobs(tmp_path, DEFAULTS)
    assert job.problem_reason == "MISSING_MASK"
    assert "--annotations, --mask-region" in (job.problem or "")
    assert job.mask_recipe is None


def test_grow_applies_to_mask_files_and_changes_the_key(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    mask_file(tmp_path / "a_mask.png", (10, 10, 20, 20))
    (plain,) = discover_jobs(tmp_path, DEFAULTS)
    (grown,) = discover_jobs(tmp_path, DEFAULTS, masks=MaskSettings(grow=2))
    assert plain.mask_recipe is None  # a mask file alone is sent as it is
    assert grown.mask_source == "file" and grown.mask_recipe is not None
    assert prepare_job(plain).job_key != prepare_job(grown).job_key
    sent = sent_mask(grown)
    assert sent.shape == (30, 40)
    assert np.flatnonzero(sent[15]).tolist() == list(range(8, 22))
    assert np.array_equal(sent, np.asarray(final_mask(grown)[0]))


def test_file_mask_without_operations_keeps_its_bytes_and_key(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    path = mask_file(tmp_path / "a_mask.png", (10, 10, 20, 20))
    (job,) = discover_jobs(tmp_path, DEFAULTS, masks=MaskSettings())
    _, mask_b64 = encode_payload(job)
    assert base64.b64decode(mask_b64) == path.read_bytes()


# ---------------------------------------------------------------------------------------------
# The job key follows the final mask's content


def _manifest_job(tmp_path: Path, boxes: str) -> Job:
    manifest = tmp_path / "batch.csv"
    manifest.write_text(f'image,mask_boxes\na.png,"{boxes}"\n', encoding="utf-8")
    (job,) = discover_jobs(manifest, DEFAULTS)
    return job


def test_same_box_same_key_changed_box_new_key(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    first = prepare_job(_manifest_job(tmp_path, "[[2, 3, 12, 8]]")).job_key
    again = prepare_job(_manifest_job(tmp_path, "[[2, 3, 12, 8]]")).job_key
    same_pixels = prepare_job(_manifest_job(tmp_path, "[[2.2, 3.1, 12.4, 8.3]]")).job_key
    moved = prepare_job(_manifest_job(tmp_path, "[[2, 3, 13, 8]]")).job_key
    assert first == again == same_pixels
    assert moved != first


def test_drawn_mask_is_sent_as_png_of_the_image_size(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    job = _manifest_job(tmp_path, "[[2, 3, 12, 8]]")
    prepared = prepare_job(job)
    _, mask_b64 = encode_payload(job)
    data = base64.b64decode(mask_b64)
    assert data.startswith(b"\x89PNG") and len(data) == prepared.mask_bytes
    assert np.array_equal(sent_mask(job), np.asarray(final_mask(job)[0]))
    assert prepared.mask_coverage_pct == pytest.approx(50 / 1200 * 100, abs=1e-3)


def test_mask_shrunk_to_nothing_is_invalid_with_a_hint(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    mask_file(tmp_path / "a_mask.png", (10, 10, 13, 13))
    (job,) = discover_jobs(tmp_path, DEFAULTS, masks=MaskSettings(shrink=2))
    with pytest.raises(MaskError) as info:
        prepare_job(job)
    assert info.value.reason == "EMPTY_MASK"
    assert "shrink 2" in str(info.value) and "--mask-shrink" in str(info.value)


def test_wrong_size_mask_file_is_still_refused_when_drawn_on(tmp_path: Path) -> None:
    photo(tmp_path / "a.png")
    mask_file(tmp_path / "a_mask.png", (0, 0, 5, 5), size=(20, 20))
    (job,) = discover_jobs(tmp_path, DEFAULTS, masks=MaskSettings(region="top:2"))
    with pytest.raises(MaskError) as info:
        prepare_job(job)
    assert info.value.reason == "MASK_SIZE_MISMATCH"
