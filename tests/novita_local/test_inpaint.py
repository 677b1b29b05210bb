"""The local inpainting engine: A1111 mask semantics on real pixels, and the promise that pixels
outside the feathered mask come back untouched."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from novita_local.catalog import DEFAULT_REAL_MODEL, SECOND_REAL_MODEL, algorithm_for
from novita_local.inpaint import (
    LOCAL_MODEL_NS,
    LOCAL_MODEL_TELEA,
    InpaintSettings,
    mask_array,
    run_inpaint,
)

HEIGHT, WIDTH = 48, 64
BOX = (16, 32, 20, 44)  # y0, y1, x0, x1 of the usual hole

BoolArray = npt.NDArray[np.bool_]


def photo(height: int = HEIGHT, width: int = WIDTH) -> Image.Image:
    """A small image with gradients, texture and a solid shape, so every inpaint shows."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 255 * x / (width - 1)
    green = 255 * y / (height - 1)
    blue = 128 + 100 * np.sin(x / 3) * np.cos(y / 4)
    pixels = np.stack([red, green, blue], axis=-1)
    pixels[20:28, 28:36] = (20, 200, 40)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def box_mask(box: tuple[int, int, int, int] = BOX, value: int = 255) -> Image.Image:
    """An 'L' mask with `value` inside `box` (y0, y1, x0, x1) and 0 elsewhere."""
    y0, y1, x0, x1 = box
    pixels = np.zeros((HEIGHT, WIDTH), np.uint8)
    pixels[y0:y1, x0:x1] = value
    return Image.fromarray(pixels)


def inside(box: tuple[int, int, int, int]) -> BoolArray:
    y0, y1, x0, x1 = box
    region = np.zeros((HEIGHT, WIDTH), bool)
    region[y0:y1, x0:x1] = True
    return region


def changed(result: Image.Image, reference: Image.Image) -> BoolArray:
    """Pixels where any channel differs from the reference (converted to RGB)."""
    before = np.asarray(reference.convert("RGB"), dtype=np.int16)
    return np.any(np.asarray(result, dtype=np.int16) != before, axis=-1)


def reach(region: BoolArray, sigma: float) -> BoolArray:
    """Pixels a Gaussian feather of `sigma` can touch: OpenCV's kernel stops at 4 sigma."""
    if sigma <= 0:
        return region
    radius = math.ceil(4 * sigma)
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(region.astype(np.uint8), kernel).astype(bool)


def run_one(image: Image.Image, mask: Image.Image, **fields: Any) -> Image.Image:
    (result,) = run_inpaint(image, mask, InpaintSettings(**fields))
    return result


# --- mask reading ---


def test_luminance_mask_keeps_soft_values() -> None:
    mask = Image.fromarray(np.array([[0, 128, 255]], np.uint8))
    np.testing.assert_allclose(mask_array(mask), [[0.0, 128 / 255, 1.0]], rtol=1e-6)
    assert mask_array(mask).dtype == np.float32


def test_rgba_mask_with_transparency_is_read_from_alpha() -> None:
    # Black paint everywhere, the hole drawn only in alpha (a mask on a transparent layer).
    pixels = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    pixels[..., 3][inside(BOX)] = 255
    mask = Image.fromarray(pixels)
    assert mask.mode == "RGBA"
    np.testing.assert_array_equal(mask_array(mask) > 0.5, inside(BOX))
    result = run_one(photo(), mask, mask_blur=0)
    assert changed(result, photo())[inside(BOX)].mean() > 0.5
    assert not changed(result, photo())[~inside(BOX)].any()


def test_opaque_rgba_mask_is_read_from_luminance() -> None:
    pixels = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    pixels[..., 3] = 255
    pixels[..., :3][inside(BOX)] = 255
    mask = Image.fromarray(pixels)
    np.testing.assert_array_equal(mask_array(mask) > 0.5, inside(BOX))


def test_la_and_palette_masks_use_their_transparency() -> None:
    alpha = np.where(inside(BOX), 255, 0).astype(np.uint8)
    la = Image.merge("LA", (Image.new("L", (WIDTH, HEIGHT), 0), Image.fromarray(alpha)))
    np.testing.assert_array_equal(mask_array(la) > 0.5, inside(BOX))

    indices = np.where(inside(BOX), 1, 0).astype(np.uint8)
    palette = Image.frombytes("P", (WIDTH, HEIGHT), indices.tobytes())
    palette.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)  # both entries black...
    palette.info["transparency"] = 0  # ...and entry 0 transparent: the hole is in alpha only
    np.testing.assert_array_equal(mask_array(palette) > 0.5, inside(BOX))


def test_sixteen_bit_mask_is_scaled_not_clipped() -> None:
    mask = Image.fromarray(np.array([[0, 257 * 100, 65535]], np.uint16))
    assert mask.mode == "I;16"
    np.testing.assert_allclose(mask_array(mask), [[0.0, 100 / 255, 1.0]], rtol=1e-6)


def test_mask_of_another_size_is_resized_to_the_image() -> None:
    small = box_mask().resize((WIDTH // 2, HEIGHT // 2), Image.Resampling.NEAREST)
    result = run_one(photo(), small, mask_blur=0)
    assert result.size == (WIDTH, HEIGHT)
    assert not changed(result, photo())[~reach(inside(BOX), 1)].any()


# --- the untouched-outside promise ---


def test_without_blur_only_the_mask_changes() -> None:
    result = run_one(photo(), box_mask(), mask_blur=0)
    diff = changed(result, photo())
    assert not diff[~inside(BOX)].any()
    assert diff[inside(BOX)].mean() > 0.5


@pytest.mark.parametrize("blur", [1, 4, 8])
def test_with_blur_nothing_beyond_the_feather_changes(blur: int) -> None:
    result = run_one(photo(), box_mask(), mask_blur=blur)
    assert not changed(result, photo())[~reach(inside(BOX), blur)].any()


def test_larger_blur_widens_the_changed_region() -> None:
    narrow = changed(run_one(photo(), box_mask(), mask_blur=1), photo())
    wide = changed(run_one(photo(), box_mask(), mask_blur=6), photo())
    assert wide[~inside(BOX)].sum() > narrow[~inside(BOX)].sum()


def test_invert_repaints_the_outside_and_keeps_the_hole() -> None:
    result = run_one(photo(), box_mask(), mask_blur=0, invert=True)
    diff = changed(result, photo())
    assert not diff[inside(BOX)].any()
    assert diff[~inside(BOX)].mean() > 0.5


def test_empty_mask_returns_the_input() -> None:
    empty = Image.new("L", (WIDTH, HEIGHT), 0)
    results = run_inpaint(photo(), empty, InpaintSettings(image_num=2))
    for result in results:
        assert result.tobytes() == photo().tobytes()


# --- full_res ---


def test_full_res_with_enough_padding_matches_the_whole_image_path() -> None:
    whole = run_one(photo(), box_mask(), mask_blur=2, seed=5)
    cropped = run_one(photo(), box_mask(), mask_blur=2, seed=5, full_res=True, full_res_padding=16)
    assert cropped.tobytes() == whole.tobytes()


def test_full_res_inpaints_from_the_padded_crop_only() -> None:
    # Uniform grey with a red stripe two pixels left of the hole: the whole-image inpaint pulls
    # red into the hole, a crop padded by one pixel never sees it.
    pixels = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    y0, y1, x0, _ = BOX
    pixels[:, x0 - 2] = (255, 0, 0)
    image = Image.fromarray(pixels)
    fields: dict[str, Any] = {"mask_blur": 0, "seed": 1}
    whole = np.asarray(run_one(image, box_mask(), **fields), dtype=np.int16)
    crop = run_one(image, box_mask(), full_res=True, full_res_padding=1, **fields)
    redness = np.asarray(crop, dtype=np.int16)[..., 0] - np.asarray(crop, dtype=np.int16)[..., 1]
    assert (whole[y0:y1, x0, 0] - whole[y0:y1, x0, 1]).max() > 10
    assert np.all(redness[inside(BOX)] == 0)
    assert not changed(crop, image)[~inside(BOX)].any()


# --- fill, strength, seeds ---


def test_strength_zero_returns_the_input() -> None:
    for blur in (0, 4):
        result = run_one(photo(), box_mask(), mask_blur=blur, strength=0.0)
        assert result.tobytes() == photo().tobytes()


def test_fill_zero_starts_from_the_surrounding_colours() -> None:
    # A dark object on a blue background, masked with a margin: at strength 0 "fill" shows its
    # init image (the hole painted in the background colour), "original" shows the object.
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[...] = (30, 60, 200)
    pixels[20:28, 26:38] = (0, 0, 0)
    image = Image.fromarray(pixels)
    filled = np.asarray(run_one(image, box_mask(), mask_blur=0, fill=0, strength=0.0))
    kept = np.asarray(run_one(image, box_mask(), mask_blur=0, fill=1, strength=0.0))
    hole = inside(BOX)
    assert np.abs(filled[hole].astype(int) - (30, 60, 200)).max() <= 2
    assert kept.tobytes() == image.tobytes()


def test_fill_zero_changes_the_hole_only_when_strength_leaves_room() -> None:
    filled = run_one(photo(), box_mask(), fill=0, strength=0.5)
    kept = run_one(photo(), box_mask(), fill=1, strength=0.5)
    differ = changed(filled, kept)
    assert differ[inside(BOX)].any()
    assert not differ[~reach(inside(BOX), 4)].any()
    full_strength = [run_one(photo(), box_mask(), fill=fill, strength=1.0) for fill in (0, 1)]
    assert full_strength[0].tobytes() == full_strength[1].tobytes()


def test_same_seed_is_byte_identical_and_seeds_differ() -> None:
    first = run_one(photo(), box_mask(), seed=42)
    again = run_one(photo(), box_mask(), seed=42)
    other = run_one(photo(), box_mask(), seed=43)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


@pytest.mark.parametrize("count", [pytest.param(1, id="one"), pytest.param(3, id="three")])
def test_image_num_images_each_different(count: int) -> None:
    results = run_inpaint(photo(), box_mask(), InpaintSettings(image_num=count, seed=7))
    assert len(results) == count
    assert len({result.tobytes() for result in results}) == count
    # Image k of a request is image 0 of seed + k, so a single image can be re-made alone.
    assert results[-1].tobytes() == run_one(photo(), box_mask(), seed=7 + count - 1).tobytes()


def test_telea_and_ns_both_inpaint_and_differ() -> None:
    telea = run_one(photo(), box_mask(), algorithm="telea")
    ns = run_one(photo(), box_mask(), algorithm="ns")
    for result in (telea, ns):
        assert changed(result, photo())[inside(BOX)].mean() > 0.5
    assert telea.tobytes() != ns.tobytes()


# --- image modes ---


def sixteen_bit() -> Image.Image:
    gray = np.asarray(photo().convert("L"), dtype=np.uint16) * 257
    image = Image.fromarray(gray)
    assert image.mode == "I;16"
    return image


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: photo().convert("P"), id="P"),
        pytest.param(lambda: photo().convert("CMYK"), id="CMYK"),
        pytest.param(lambda: photo().convert("LA"), id="LA"),
        pytest.param(lambda: photo().convert("RGBA"), id="RGBA"),
        pytest.param(lambda: photo().convert("L"), id="L"),
        pytest.param(sixteen_bit, id="I;16"),
    ],
)
def test_any_image_mode_gives_rgb_with_the_outside_intact(make: Callable[[], Image.Image]) -> None:
    image = make()
    results = run_inpaint(image, box_mask(), InpaintSettings(mask_blur=0, image_num=2))
    # The reference for a 16-bit image is its 8-bit scaling, not Pillow's clipping convert.
    reference = photo().convert("L") if image.mode == "I;16" else image
    for result in results:
        assert result.mode == "RGB"
        assert result.size == image.size
        diff = changed(result, reference)
        assert not diff[~inside(BOX)].any()
        assert diff[inside(BOX)].any()


# --- model names ---


@pytest.mark.parametrize(
    ("model_name", "algorithm"),
    [
        pytest.param(LOCAL_MODEL_TELEA, "telea", id="local-telea"),
        pytest.param(LOCAL_MODEL_NS, "ns", id="local-ns"),
        pytest.param(DEFAULT_REAL_MODEL, "telea", id="novita-realistic-vision"),
        pytest.param(SECOND_REAL_MODEL, "ns", id="novita-second-checkpoint"),
        pytest.param("any-other-name.safetensors", "telea", id="unknown-helpful-only"),
    ],
)
def test_model_name_selects_the_algorithm(model_name: str, algorithm: str) -> None:
    assert algorithm_for(model_name) == algorithm


# --- property ---


@settings(max_examples=60, deadline=None)
@given(
    patch=arrays(
        np.uint8,
        st.tuples(st.integers(1, 10), st.integers(1, 10)),
        elements=st.sampled_from([0, 0, 40, 128, 255]),
    ),
    top=st.integers(0, HEIGHT - 10),
    left=st.integers(0, WIDTH - 10),
    blur=st.integers(0, 4),
    full_res=st.booleans(),
    padding=st.integers(0, 12),
    fill=st.sampled_from([None, 0, 1, 2, 3]),
    strength=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_pixels_beyond_the_feathered_mask_never_change(
    patch: npt.NDArray[np.uint8],
    top: int,
    left: int,
    blur: int,
    full_res: bool,
    padding: int,
    fill: int | None,
    strength: float,
    seed: int,
) -> None:
    pixels = np.zeros((HEIGHT, WIDTH), np.uint8)
    pixels[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    result = run_one(
        photo(),
        Image.fromarray(pixels),
        mask_blur=blur,
        full_res=full_res,
        full_res_padding=padding,
        fill=fill,
        strength=strength,
        seed=seed,
    )
    assert not changed(result, photo())[~reach(pixels > 0, blur)].any()
