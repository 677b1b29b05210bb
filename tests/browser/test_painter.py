"""The mask painter in headless Chromium, used with the mouse and keyboard as a person would.

Playwright drives Debian's Chromium against the painter on a real loopback socket. The picture
is 3000x2000 as the pipeline sees it (stored 2000x3000 with EXIF orientation 6), so the page
shows it scaled down and the mask must still be saved at full resolution, turned like the image.

Where the mask must be white or black is computed from the mouse positions and the page's
canvas transform (canvas = image * scale + offset, read from `window.painter.view`), with a
margin of a few image pixels for antialiased edges.

The screenshot goes to the test's temporary folder, or to $INPAINT_SCREENSHOTS_DIR (README's
is made with `INPAINT_SCREENSHOTS_DIR=docs pytest tests/browser/test_painter.py`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from inpaint_flows.input_checks import prepare_job
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.models import InpaintParams
from tests.inpaint_flows.painter_support import landscape, running_painter, save_rotated_jpeg

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian Chromium is not installed at /usr/bin/chromium (apt-get install chromium):"
        " the mask painter was not checked in a browser",
    ),
]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
WIDTH, HEIGHT = 3000, 2000
BRUSH = 60  # image pixels
EDGE = 3  # image pixels on either side of an edge left to antialiasing
SMALL_MASK = (slice(10, 30), slice(8, 40))  # rows, columns painted white in small.png's mask


@dataclass(frozen=True)
class Point:
    """A point in image pixels."""

    x: float
    y: float


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """images/big.jpg (3000x2000 after EXIF orientation, no mask) and sub/small.png (a mask)."""
    root = tmp_path / "shoot"
    save_rotated_jpeg(landscape(WIDTH, HEIGHT), root / "images" / "big.jpg")
    (root / "images" / "sub").mkdir()
    landscape(48, 36).save(root / "images" / "sub" / "small.png")
    values = np.zeros((36, 48), np.uint8)
    values[SMALL_MASK] = 255
    values[0, 0] = 128  # one soft pixel: loaded and saved back unchanged
    (root / "masks" / "sub").mkdir(parents=True)
    Image.fromarray(values).save(root / "masks" / "sub" / "small.png")
    return root


@pytest.fixture
def page(browser: Browser, folder: Path) -> Iterator[Page]:
    """The painter's page; afterwards, no script error and no request to another host."""
    with running_painter(folder) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        errors: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(url)
        yield page
        context.close()
    assert errors == []
    assert requests and all(r.startswith(url) for r in requests), requests


def open_image(page: Page, name: str) -> None:
    page.locator(f'#images li[data-name="{name}"] button').click()
    stage = page.locator("#stage")
    expect(stage).to_have_attribute("data-image", name)
    expect(stage).to_have_attribute("data-state", "ready")


def to_screen(page: Page, point: Point) -> tuple[int, int]:
    """Where to put the mouse (whole CSS pixels) to be over `point`."""
    view = page.evaluate("painter.view")
    box = page.locator("#view").bounding_box()
    assert box is not None
    x = box["x"] + view["x"] + point.x * view["scale"]
    y = box["y"] + view["y"] + point.y * view["scale"]
    return round(x), round(y)


def to_image(page: Page, screen: tuple[int, int]) -> Point:
    """The image point under the mouse at `screen`: the page's transform, inverted."""
    view = page.evaluate("painter.view")
    box = page.locator("#view").bounding_box()
    assert box is not None
    return Point(
        (screen[0] - box["x"] - view["x"]) / view["scale"],
        (screen[1] - box["y"] - view["y"]) / view["scale"],
    )


def drag(page: Page, start: tuple[int, int], end: tuple[int, int]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=12)
    page.mouse.up()


def stroke(page: Page, start: Point, end: Point) -> tuple[Point, Point]:
    """Drag the brush from `start` to `end`; returns the ends where the mouse really went."""
    a, b = to_screen(page, start), to_screen(page, end)
    drag(page, a, b)
    return to_image(page, a), to_image(page, b)


def pixel_centres(points: list[Point], margin: float) -> tuple[tuple[slice, slice], Any, Any]:
    """The image's rows and columns within `margin` of the points' bounding box, as centres.

    Shapes are measured there only; every pixel outside is farther than `margin` from them.
    """
    x0 = int(np.clip(np.floor(min(p.x for p in points) - margin), 0, WIDTH))
    x1 = int(np.clip(np.ceil(max(p.x for p in points) + margin), 0, WIDTH))
    y0 = int(np.clip(np.floor(min(p.y for p in points) - margin), 0, HEIGHT))
    y1 = int(np.clip(np.ceil(max(p.y for p in points) + margin), 0, HEIGHT))
    ys, xs = np.ogrid[y0:y1, x0:x1]
    return (slice(y0, y1), slice(x0, x1)), xs.astype(np.float32) + 0.5, ys.astype(np.float32) + 0.5


def distance_to_segment(a: Point, b: Point, reach: float) -> np.ndarray:
    """Each pixel centre's distance to the segment a-b; infinite beyond `reach`."""
    where, xs, ys = pixel_centres([a, b], reach + 2)
    dx, dy = b.x - a.x, b.y - a.y
    t = np.clip(((xs - a.x) * dx + (ys - a.y) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    out = np.full((HEIGHT, WIDTH), np.inf, np.float32)
    out[where] = np.hypot(xs - (a.x + t * dx), ys - (a.y + t * dy))
    return out


def inside_by(corners: list[Point]) -> np.ndarray:
    """Signed distance into a convex polygon (positive inside) by its nearest edge line.

    Pixels more than a few pixels outside the corners' bounding box get minus infinity.
    """
    where, xs, ys = pixel_centres(corners, EDGE + 2)
    edges = list(zip(corners, corners[1:] + corners[:1], strict=True))
    area = sum(p.x * q.y - q.x * p.y for p, q in edges)
    sign = 1.0 if area > 0 else -1.0
    depth = np.full((where[0].stop - where[0].start, where[1].stop - where[1].start), np.inf)
    for p, q in edges:
        length = float(np.hypot(q.x - p.x, q.y - p.y))
        edge = sign * ((q.x - p.x) * (ys - p.y) - (q.y - p.y) * (xs - p.x)) / length
        depth = np.minimum(depth, edge)
    out = np.full((HEIGHT, WIDTH), -np.inf, np.float32)
    out[where] = depth
    return out


def shots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("INPAINT_SCREENSHOTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def screenshot(page: Page, path: Path) -> None:
    """A screenshot kept small (256 colours) since README's is committed."""
    page.screenshot(path=str(path))
    with Image.open(path) as img:
        img.convert("RGB").quantize(colors=256).save(path, optimize=True)


def zoom_keeps_the_point_under_the_mouse(page: Page) -> None:
    """The wheel zooms about the mouse; Fit (the 0 key) goes back."""
    fitted = page.evaluate("painter.view")
    mouse = to_screen(page, Point(0.3 * WIDTH, 0.6 * HEIGHT))
    page.mouse.move(*mouse)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"painter.view.scale > {fitted['scale']} * 1.5")
    under = to_image(page, mouse)
    assert abs(under.x - 0.3 * WIDTH) < 4 and abs(under.y - 0.6 * HEIGHT) < 4, under
    page.keyboard.press("0")
    assert page.evaluate("painter.view") == fitted
    page.mouse.down(button="middle")  # the middle button pans
    page.mouse.move(mouse[0] + 40, mouse[1] - 25, steps=4)
    page.mouse.up(button="middle")
    panned = page.evaluate("painter.view")
    assert (panned["x"] - fitted["x"], panned["y"] - fitted["y"]) == (40, -25)
    page.get_by_role("button", name="Fit").click()
    assert page.evaluate("painter.view") == fitted


def accept_dialogs(page: Page) -> list[str]:
    seen: list[str] = []

    def answer(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.accept()

    page.on("dialog", answer)
    return seen


def test_strokes_rectangle_and_polygon_are_saved_where_drawn(
    page: Page, folder: Path, tmp_path: Path
) -> None:
    open_image(page, "big.jpg")
    assert page.evaluate("painter.imageSize") == [WIDTH, HEIGHT]
    assert page.evaluate("painter.view")["scale"] < 0.5, "the picture should be shown scaled"
    page.locator("#size").evaluate(
        f"(el) => {{ el.value = '{BRUSH}'; el.dispatchEvent(new Event('input')); }}"
    )
    assert page.evaluate("painter.brushSize") == BRUSH
    zoom_keeps_the_point_under_the_mouse(page)

    # Brush along the cable; a second stroke, undone, redone and undone again.
    cable = stroke(page, Point(0.05 * WIDTH, 0.3 * HEIGHT), Point(0.7 * WIDTH, 0.3 * HEIGHT))
    undone = stroke(page, Point(0.9 * WIDTH, 0.4 * HEIGHT), Point(0.9 * WIDTH, 0.55 * HEIGHT))
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+Shift+z")
    page.keyboard.press("Control+z")
    expect(page.locator("#redo")).to_be_enabled()

    # A rectangle over the sign (R), a triangle around the ball (the toolbar's Polygon).
    page.keyboard.press("r")
    rect_from = to_screen(page, Point(0.07 * WIDTH, 0.67 * HEIGHT))
    rect_to = to_screen(page, Point(0.27 * WIDTH, 0.89 * HEIGHT))
    drag(page, rect_from, rect_to)
    page.get_by_role("button", name="Eraser").click()  # cuts the rectangle in two
    erased = stroke(page, Point(0.17 * WIDTH, 0.6 * HEIGHT), Point(0.17 * WIDTH, 0.95 * HEIGHT))
    page.get_by_role("button", name="Polygon").click()
    corners_at = [
        to_screen(page, Point(0.55 * WIDTH, 0.66 * HEIGHT)),
        to_screen(page, Point(0.63 * WIDTH, 0.88 * HEIGHT)),
        to_screen(page, Point(0.47 * WIDTH, 0.88 * HEIGHT)),
    ]
    for x, y in corners_at:
        page.mouse.click(x, y)
    page.mouse.move(*to_screen(page, Point(0.52 * WIDTH, 0.75 * HEIGHT)))  # closing it
    screenshot(page, shots_dir(tmp_path) / "painter.png")
    page.mouse.click(*corners_at[0])  # clicking the first point again closes the polygon

    page.get_by_role("button", name="Save").click()
    expect(page.locator("#stage")).to_have_attribute("data-state", "saved")
    expect(page.locator('#images li[data-name="big.jpg"] .badge')).to_have_text("mask")
    expect(page.locator("#status")).to_contain_text("Saved masks/big.png")

    saved = folder / "masks" / "big.png"
    with Image.open(saved) as img:
        assert img.size == (WIDTH, HEIGHT)
        mask = np.asarray(img.convert("L"))
    radius = BRUSH / 2
    near_cable = distance_to_segment(*cable, reach=radius + EDGE)
    near_undone = distance_to_segment(*undone, reach=radius + EDGE)
    a, b = to_image(page, rect_from), to_image(page, rect_to)
    in_rect = inside_by([Point(a.x, a.y), Point(b.x, a.y), Point(b.x, b.y), Point(a.x, b.y)])
    in_triangle = inside_by([to_image(page, c) for c in corners_at])

    near_erased = distance_to_segment(*erased, reach=radius + EDGE)

    painted = (near_cable <= radius - EDGE) | (in_rect >= EDGE) | (in_triangle >= EDGE)
    white = painted & (near_erased >= radius + EDGE)
    far = (near_cable >= radius + EDGE) & (in_rect <= -EDGE) & (in_triangle <= -EDGE)
    black = far | (near_erased <= radius - EDGE)
    assert (in_rect >= EDGE)[near_erased <= radius - EDGE].sum() > 10_000, "erased nothing"
    assert white.sum() > 100_000 and black.sum() > 0.8 * mask.size
    assert (mask[white] == 255).all(), f"{(mask[white] != 255).sum()} pixels not painted"
    assert (mask[black] == 0).all(), f"{(mask[black] != 0).sum()} pixels painted by mistake"
    assert (near_undone <= radius).sum() > 10_000
    assert (mask[near_undone <= radius] == 0).all(), "the undone stroke was saved"
    assert ((mask > 0) & (mask < 255)).sum() < 0.02 * mask.size, "a blurred mask"

    # The pipeline takes it: right size after the photo's EXIF orientation, not empty.
    (job,) = [j for j in discover_jobs(folder, InpaintParams()) if j.name == "big.jpg"]
    assert prepare_job(job).width == WIDTH

    # Saving again asks first, and keeps the first version.
    first = saved.read_bytes()
    questions = accept_dialogs(page)
    page.keyboard.press("b")
    stroke(page, Point(0.3 * WIDTH, 0.1 * HEIGHT), Point(0.4 * WIDTH, 0.1 * HEIGHT))
    expect(page.locator("#stage")).to_have_attribute("data-state", "ready")
    page.keyboard.press("Control+s")
    expect(page.locator("#status")).to_contain_text("(previous: masks/.history/big.")
    assert len(questions) == 1 and "masks/big.png already exists" in questions[0]
    (kept,) = (folder / "masks" / ".history").glob("big.*.png")
    assert kept.read_bytes() == first
    assert np.asarray(Image.open(saved))[int(0.1 * HEIGHT), int(0.35 * WIDTH)] == 255


def test_existing_mask_is_loaded_for_editing_and_alt_rectangle_erases(
    page: Page, folder: Path
) -> None:
    mask_file = folder / "masks" / "sub" / "small.png"
    original = np.asarray(Image.open(mask_file))
    questions = accept_dialogs(page)
    expect(page.locator('#images li[data-name="sub/small.png"] .badge')).to_have_text("mask")

    open_image(page, "sub/small.png")
    expect(page.locator("#status")).to_contain_text("Editing masks/sub/small.png")
    page.get_by_role("button", name="Save").click()

    expect(page.locator("#status")).to_contain_text("(previous: masks/.history/sub/small.")
    assert len(questions) == 1 and "masks/sub/small.png already exists" in questions[0]
    assert np.array_equal(np.asarray(Image.open(mask_file)), original), "changed on the way"

    # Alt+drag with the rectangle erases: columns 20..30 of the painted band become black.
    page.keyboard.press("r")
    page.keyboard.down("Alt")
    drag(page, to_screen(page, Point(20, 5)), to_screen(page, Point(30, 33)))
    page.keyboard.up("Alt")
    page.keyboard.press("Control+s")

    expect(page.locator("#stage")).to_have_attribute("data-state", "saved")
    assert len(questions) == 2
    expected = original.copy()
    expected[5:33, 20:30] = 0
    assert np.array_equal(np.asarray(Image.open(mask_file)), expected)
    assert len(list((folder / "masks" / ".history" / "sub").glob("small.*.png"))) == 2
