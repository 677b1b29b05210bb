"""The mask preview: final masks as files a run can reuse, and the contact sheet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.mask_preview import write_mask_preview
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams
from inpaint_flows.pictures import final_mask


def photo(path: Path, size: tuple[int, int] = (60, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.add.outer(np.arange(size[1]) * 2, np.arange(size[0]) * 3).astype(np.uint8)
    Image.fromarray(np.stack([values] * 3, axis=-1)).save(path)
    return path


def coco_file(path: Path, boxes: dict[str, list[float]]) -> Path:
    images = [{"id": i, "file_name": name} for i, name in enumerate(boxes, start=1)]
    annotations = [
        {"id": i, "image_id": i, "category_id": 1, "bbox": box}
        for i, box in enumerate(boxes.values(), start=1)
    ]
    categories = [{"id": 1, "name": "sign"}]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    src = tmp_path / "photos"
    photo(src / "a.png")
    photo(src / "sub" / "b <i>.png")  # a name that needs escaping in HTML and URLs
    photo(src / "c.png")
    return src


def test_preview_writes_the_masks_a_run_would_send(photos: Path, tmp_path: Path) -> None:
    ann = coco_file(
        tmp_path / "ann.json",
        {"a.png": [5, 5, 10, 10], "sub/b <i>.png": [50, 30, 20, 20], "gone.png": [1, 1, 2, 2]},
    )
    settings = MaskSettings(annotations=str(ann), grow=1)
    out = tmp_path / "preview"

    preview = write_mask_preview(photos, out, masks=settings)

    items = {item.name: item for item in preview.items}
    assert set(items) == {"a.png", "sub/b <i>.png", "c.png", "gone.png"}
    assert items["a.png"].mask_file == "masks/a.png"
    assert items["sub/b <i>.png"].mask_file == "masks/sub/b _i_.png"
    jobs = {job.name: job for job in discover_jobs(photos, InpaintParams(), masks=settings)}
    for name in ("a.png", "sub/b <i>.png"):
        with Image.open(out / str(items[name].mask_file)) as written:
            assert written.mode == "L" and written.size == (60, 40)
            assert np.array_equal(np.asarray(written), np.asarray(final_mask(jobs[name])[0]))
    assert items["sub/b <i>.png"].warnings and "clipped" in items["sub/b <i>.png"].warnings[0]
    assert items["c.png"].reason == "NO_MASK" and items["c.png"].mask_file is None
    assert items["gone.png"].reason == "ANNOTATED_IMAGE_NOT_FOUND"
    assert preview.problems == 2
    assert not (out / "masks" / "c.png").exists()


def test_contact_sheet_lists_images_overlays_and_problems_escaped(
    photos: Path, tmp_path: Path
) -> None:
    ann = coco_file(tmp_path / "ann.json", {"a.png": [5, 5, 10, 10], "sub/b <i>.png": [1, 1, 4, 4]})
    out = tmp_path / "preview"
    preview = write_mask_preview(photos, out, masks=MaskSettings(annotations=str(ann)))

    page = preview.page.read_text(encoding="utf-8")
    assert preview.page == out / "masks.html"
    assert "b &lt;i&gt;.png" in page and "<i>.png" not in page
    assert 'href="masks/sub/b%20_i_.png"' in page
    assert "NO_MASK" in page and "c.png: no mask from any source" in page
    assert "--annotations" in page
    # the thumbnail of a.png is the photo with its mask tinted, the rest of it untouched
    thumb = next(i.thumb for i in preview.items if i.name == "a.png")
    assert thumb is not None and thumb in page
    with Image.open(out / thumb) as img, Image.open(photos / "a.png") as original:
        shown, source = np.asarray(img.convert("RGB")), np.asarray(original.convert("RGB"))
    assert shown.shape == source.shape
    assert shown[10, 10, 0] > source[10, 10, 0] and shown[10, 10, 1] < source[10, 10, 1]
    assert np.array_equal(shown[30:, 30:], source[30:, 30:])


def test_preview_masks_are_a_reusable_masks_folder(photos: Path, tmp_path: Path) -> None:
    ann = coco_file(tmp_path / "ann.json", {"a.png": [5, 5, 10, 10], "sub/b <i>.png": [1, 1, 4, 4]})
    out = tmp_path / "preview"
    write_mask_preview(photos, out, masks=MaskSettings(annotations=str(ann)))

    layout = tmp_path / "layout"
    shutil.copytree(photos, layout / "images")
    shutil.copytree(out / "masks", layout / "masks")
    jobs = {job.name: job for job in discover_jobs(layout, InpaintParams())}
    assert jobs["a.png"].mask_path == str((layout / "masks" / "a.png").absolute())
    assert jobs["a.png"].problem is None and jobs["a.png"].mask_recipe is None
    assert jobs["c.png"].problem_reason == "MISSING_MASK"


def test_a_new_preview_removes_only_the_masks_it_no_longer_makes(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preview"
    ann = coco_file(tmp_path / "ann.json", {"a.png": [5, 5, 10, 10], "c.png": [1, 1, 4, 4]})
    write_mask_preview(photos, out, masks=MaskSettings(annotations=str(ann)))
    mine = out / "masks" / "keep-me.png"
    mine.write_bytes(b"a user's file")
    assert (out / "masks" / "c.png").is_file()

    coco_file(ann, {"a.png": [5, 5, 10, 10]})
    write_mask_preview(photos, out, masks=MaskSettings(annotations=str(ann)))

    assert not (out / "masks" / "c.png").exists()
    assert (out / "masks" / "a.png").is_file() and mine.read_bytes() == b"a user's file"


def test_masks_command_writes_the_preview_and_exits_1_on_problems(
    photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preview"
    runner = CliRunner()
    ok = runner.invoke(
        app, ["masks", str(photos), "--mask-region", "bottom-right:20%x10%", "--out", str(out)]
    )
    assert ok.exit_code == 0, ok.output
    assert "3 of 3 mask(s) written" in ok.output
    with Image.open(out / "masks" / "c.png") as img:
        got = np.asarray(img) > 0
    assert got[36:, 48:].all() and int(got.sum()) == 12 * 4

    ann = coco_file(tmp_path / "ann.json", {"a.png": [5, 5, 10, 10]})
    partly = runner.invoke(app, ["masks", str(photos), "--annotations", str(ann), "-o", str(out)])
    assert partly.exit_code == 1
    assert "NO_MASK" in partly.output

    bad = runner.invoke(app, ["masks", str(photos), "--mask-region", "middle:5%", "-o", str(out)])
    assert bad.exit_code == 2 and "names no corner or side" in bad.output
