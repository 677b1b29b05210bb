"""Photos without masks + a COCO file: preview the masks, run the batch, rerun, change a box.

A real Prefect API, the local server over HTTP, real files; what the API saw is read from the
server's own counters (`/_local/stats`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from inpaint_flows.mask_preview import write_mask_preview
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.helpers import call_batch_flow, job_counts

pytestmark = pytest.mark.usefixtures("prefect_harness")

# mask_blur 0: the server's feathered mask is then the mask itself, and a pixel whose mask is 0
# comes back unchanged (novita_local.inpaint's promise), whatever inpainting_full_res does.
PARAMS = InpaintParams(steps=1, mask_blur=0)
GROW = 3
BOXES = {  # COCO [x, y, width, height], pixels of 64x48 photos
    "beach.png": [8, 6, 12, 10],
    "forest.png": [40, 30, 30, 30],  # reaches past the bottom-right corner: clipped
    "street.png": [20, 16, 16, 12],
}


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as srv:
        yield srv


def write_photos(folder: Path) -> None:
    rng = np.random.default_rng(15)
    for index, name in enumerate(BOXES):
        gy, gx = np.mgrid[0:48, 0:64]
        base = np.stack([gx * 3 + index * 40, gy * 4, (gx + gy) * 2], axis=-1)
        noise = rng.integers(0, 40, size=(48, 64, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / name)


def write_coco(path: Path, boxes: dict[str, list[int]]) -> None:
    names = list(boxes)
    path.write_text(
        json.dumps(
            {
                "images": [
                    {"id": i, "file_name": n, "width": 64, "height": 48}
                    for i, n in enumerate(names)
                ],
                "annotations": [
                    {"id": 100 + i, "image_id": i, "category_id": 1, "bbox": boxes[n]}
                    for i, n in enumerate(names)
                ],
                "categories": [{"id": 1, "name": "watermark"}],
            }
        ),
        encoding="utf-8",
    )


def outside_grown_box(box: list[int], grow: int) -> np.ndarray:
    """Pixels farther than `grow` (on either axis) from the box: never part of its mask."""
    x, y, w, h = box
    keep = np.ones((48, 64), dtype=bool)
    keep[max(0, y - grow) : y + h + grow, max(0, x - grow) : x + w + grow] = False
    return keep


def box_pixels(box: list[int]) -> np.ndarray:
    x, y, w, h = box
    inside = np.zeros((48, 64), dtype=bool)
    inside[y : y + h, x : x + w] = True
    return inside


async def run(photos: Path, out: Path, server: LocalServer, settings: MaskSettings):
    return await call_batch_flow(
        source=str(photos),
        out=str(out),
        defaults=PARAMS,
        masks=settings,
        base_url=server.base_url,
        images_per_minute=None,
        max_in_flight=4,
        return_state=True,
    )


def report(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "report.csv").set_index("name")


async def test_masks_from_coco_preview_run_rerun_and_a_changed_box(
    tmp_path: Path, server: LocalServer
) -> None:
    photos = tmp_path / "photos"
    write_photos(photos)
    coco = tmp_path / "annotations.json"
    write_coco(coco, BOXES)
    settings = MaskSettings(annotations=str(coco), grow=GROW)

    # 1. Preview: masks and a contact sheet, no API call.
    preview = write_mask_preview(photos, tmp_path / "preview", masks=settings)
    assert preview.problems == 0
    assert (tmp_path / "preview" / "masks.html").is_file()
    masks = {}
    for name in BOXES:
        with Image.open(tmp_path / "preview" / "masks" / name) as img:
            masks[name] = np.asarray(img) > 0
        assert masks[name].shape == (48, 64)
        assert not (masks[name] & outside_grown_box(BOXES[name], GROW)).any()
    assert job_counts(server).total_submits == 0

    # 2. The batch with those annotations: every job succeeds, pixels outside the grown
    #    boxes come back unchanged, inside they were repainted.
    out = tmp_path / "out"
    state = await run(photos, out, server, settings)
    assert state.is_completed(), state.message
    first = report(out)
    assert set(first["status"]) == {"succeeded"}
    assert set(first["mask_source"]) == {"coco"} and set(first["mask_ops"]) == {f"grow {GROW}"}
    assert "clipped" in first.loc["forest.png", "mask_warnings"]
    for name, box in BOXES.items():
        (output,) = json.loads(first.loc[name, "outputs"])
        with Image.open(out / output) as result, Image.open(photos / name) as source:
            got = np.asarray(result.convert("RGB"))
            original = np.asarray(source.convert("RGB"))
        assert got.shape == original.shape
        unchanged = outside_grown_box(box, GROW)
        assert np.array_equal(got[unchanged], original[unchanged]), name
        assert np.array_equal(got[~masks[name]], original[~masks[name]]), name
        assert (got[masks[name]] != original[masks[name]]).any(), f"{name}: nothing repainted"
        ring = masks[name] & ~box_pixels(box)  # only there because of the grow
        assert (got[ring] != original[ring]).any(), f"{name}: the grown mask was not sent"
    paid = job_counts(server)
    assert paid.total_submits == 3 and paid.submits_per_job == [1, 1, 1]

    # 3. The same annotations again: nothing is paid, polled or downloaded.
    again = await run(photos, out, server, settings)
    assert again.is_completed(), again.message
    assert set(report(out)["status"]) == {"skipped-already-done"}
    after = job_counts(server)
    assert (after.total_submits, after.total_polls, after.total_downloads) == (
        paid.total_submits,
        paid.total_polls,
        paid.total_downloads,
    )

    # 4. One box moves: that image is paid for once more, the others not at all.
    write_coco(coco, {**BOXES, "street.png": [24, 16, 16, 12]})
    changed = await run(photos, out, server, settings)
    assert changed.is_completed(), changed.message
    final = report(out)
    assert final.loc["street.png", "status"] == "succeeded"
    assert final.loc["street.png", "job_key"] != first.loc["street.png", "job_key"]
    assert set(final.drop(index="street.png")["status"]) == {"skipped-already-done"}
    assert job_counts(server).total_submits == paid.total_submits + 1
