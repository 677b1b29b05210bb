"""Inpainting with AUTOMATIC1111 semantics on OpenCV, standing in for Stable Diffusion locally.

The local server answers Novita's inpainting contract without a GPU, so the pixels it returns come
from `cv2.inpaint` (Telea or Navier-Stokes) instead of a diffusion model. Everything around that
call follows the A1111 img2img-inpaint pipeline whose parameters Novita exposes:

    mask -> invert -> Gaussian feather (mask_blur) -> optional crop (full_res) -> init image (fill)
    -> cv2.inpaint on the hard mask -> per-seed grain -> strength blend -> feathered composite

The promise the rest of the project relies on: a pixel whose feathered mask is exactly 0 comes back
byte-identical to the input (after conversion to RGB), whatever the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from inpaint_flows.pixels import gray_u8, is_wide, mask_luminance

Algorithm = Literal["telea", "ns"]

LOCAL_MODEL_TELEA = "local-telea-inpainting"
LOCAL_MODEL_NS = "local-ns-inpainting"

_INPAINT_RADIUS = 3
# Telea and NS read only known pixels within about one radius of the hole, so inpainting a crop
# this much larger than the mask gives the same pixels as inpainting the whole image, far faster.
_CONTEXT_MARGIN = 2 * _INPAINT_RADIUS + 2
# A pixel whose weight is below this cannot change: |w * (new - old)| <= 255/512 < 0.5, which rounds
# back to the old value. It plays the part of A1111's 8-bit mask, where such values are already 0.
_NEGLIGIBLE = 1 / 512
# Where the feathered mask counts as "repaint" for cv2.inpaint and the hole pre-fill.
_HARD_THRESHOLD = 0.5
# Amplitude, in 8-bit levels, of the grain that makes each seed's image different.
_GRAIN_LEVELS = 3.0


U8Array = npt.NDArray[np.uint8]
F32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class InpaintSettings:
    """The request fields that change pixels, already validated by the server."""

    algorithm: Algorithm = "telea"
    mask_blur: int = 4
    invert: bool = False
    full_res: bool = False
    full_res_padding: int = 8
    fill: int | None = None  # legacy `inpainting_fill` (0 fill, 1 original, 2/3 latent)
    strength: float = 1.0
    seed: int = 0  # already resolved: never -1 here
    image_num: int = 1


def mask_array(mask: Image.Image) -> F32Array:
    """The mask as float32 HxW in 0..1, where 1 (white) means repaint and 0 (black) means keep.

    A mask with transparency that is actually used (some alpha below 255) is read from its alpha,
    as A1111 does for a mask painted on a transparent layer; any other mask is read from its
    luminance. Soft values are kept, and 16-bit masks are scaled rather than clipped.
    """
    return np.asarray(mask_luminance(mask)).astype(np.float32) / np.float32(255)


def run_inpaint(
    image: Image.Image, mask: Image.Image, settings: InpaintSettings
) -> list[Image.Image]:
    """Inpaint `image` where `mask` says; returns `settings.image_num` RGB images.

    Deterministic: the same inputs and seed give byte-identical images; image k of a request
    carries grain drawn from `seed + k`, so images differ between seeds and within a request.
    Pixels whose feathered mask is 0 are returned unchanged.

    Where this differs from A1111, because there is no diffusion model:

    - `full_res`: the work is done on the mask's bounding box plus `full_res_padding` pixels, but
      at the crop's native resolution; A1111 also upscales the crop to the processing resolution.
      Since `cv2.inpaint` only looks a few pixels beyond the hole, a padding of 8 or more gives the
      same pixels as `full_res=False`; a smaller padding limits the context at the crop's edge
      (a padding of 0 is treated as 1, the least context `cv2.inpaint` can work from).
    - `fill`: the init image that `strength` blends away from. 1 or None keeps the original pixels;
      0 fills the hole with a smooth blend of the surrounding colours; 2 and 3 (latent noise and
      latent nothing, which only exist in latent space) are treated like 0. `cv2.inpaint` itself
      never reads hole pixels, so the fill is visible only when `strength` < 1.
    - `strength`: inside the mask, `strength * inpainted + (1 - strength) * init`; with the
      original as init, 0 returns the input unchanged.

    Args:
        image: Any Pillow mode; converted to RGB (16-bit greyscale is scaled to 8 bits).
        mask: White repaints, black keeps; alpha is used instead when not fully opaque. Resized
            to the image if the sizes differ.
        settings: The validated request fields that change pixels.
    """
    original = _rgb_u8(image)
    height, width = original.shape[:2]
    weights = mask_array(mask)
    if weights.shape != (height, width):
        resized = cv2.resize(weights, (width, height), interpolation=cv2.INTER_LINEAR)
        weights = np.asarray(resized, dtype=np.float32)
    if settings.invert:
        weights = np.float32(1) - weights
    if settings.mask_blur > 0:
        blurred = cv2.GaussianBlur(weights, (0, 0), sigmaX=float(settings.mask_blur))
        weights = np.asarray(blurred, dtype=np.float32)

    support = _bounding_box(weights > _NEGLIGIBLE)
    if support is None:
        return [Image.fromarray(original) for _ in range(settings.image_num)]

    # The work region: with full_res the request's padding decides how much context the
    # inpainting sees (at least a one-pixel ring: with no known pixel cv2.inpaint returns the hole
    # untouched); without it, a margin that gives the same result as the whole image.
    padding = max(1, settings.full_res_padding) if settings.full_res else _CONTEXT_MARGIN
    y0, y1, x0, x1 = _expand(support, padding, height, width)
    crop = np.ascontiguousarray(original[y0:y1, x0:x1])
    hole = weights[y0:y1, x0:x1] > _HARD_THRESHOLD
    if hole.any():
        flag = cv2.INPAINT_NS if settings.algorithm == "ns" else cv2.INPAINT_TELEA
        inpainted = cv2.inpaint(crop, hole.astype(np.uint8) * 255, _INPAINT_RADIUS, flag)
    else:
        inpainted = crop
    init = _prefill(crop, hole) if settings.fill not in (None, 1) else crop.astype(np.float32)

    # Per-image work only on the support: everything outside it is the original by construction.
    sy0, sy1, sx0, sx1 = support
    inner = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
    base = original[sy0:sy1, sx0:sx1].astype(np.float32)
    generated = inpainted[inner].astype(np.float32)
    strength = np.float32(settings.strength)
    init_part = (np.float32(1) - strength) * init[inner] - base
    feather = weights[sy0:sy1, sx0:sx1, np.newaxis]

    results = []
    for k in range(settings.image_num):
        rng = np.random.default_rng(settings.seed + k)
        # One grain value per pixel for all three channels: luminance grain, like film.
        grain = rng.random((sy1 - sy0, sx1 - sx0, 1), dtype=np.float32)
        grain = (grain * np.float32(2) - np.float32(1)) * np.float32(_GRAIN_LEVELS)
        varied = np.clip(generated + grain, 0, 255)
        # out = m * (s * varied + (1 - s) * init) + (1 - m) * original, written so that m == 0
        # adds exactly 0 to the original value.
        blended = base + feather * (strength * varied + init_part)
        out = original.copy()
        out[sy0:sy1, sx0:sx1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        results.append(Image.fromarray(out))
    return results


def _rgb_u8(image: Image.Image) -> U8Array:
    """The image as an HxWx3 uint8 RGB array (alpha dropped, 16-bit greyscale scaled)."""
    if is_wide(image):
        return np.repeat(gray_u8(image)[:, :, np.newaxis], 3, axis=2)
    return np.array(image.convert("RGB"))


def _bounding_box(region: npt.NDArray[np.bool_]) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end-exclusive, of the True pixels; None when there are none."""
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _expand(
    box: tuple[int, int, int, int], padding: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """`box` grown by `padding` pixels on each side, clamped to the image."""
    y0, y1, x0, x1 = box
    return (
        max(0, y0 - padding),
        min(height, y1 + padding),
        max(0, x0 - padding),
        min(width, x1 + padding),
    )


def _prefill(crop: U8Array, hole: npt.NDArray[np.bool_]) -> F32Array:
    """The crop with its hole filled by a smooth blend of the colours around it (A1111 `fill`).

    Normalized convolution: blur the known pixels and their weights alike and divide, so the hole
    receives a distance-weighted average of its surroundings. The blur is wide enough to reach the
    hole's centre and runs on a downscaled copy, because the result is smooth by design and a
    sigma of hundreds of pixels at full size would dominate the run time.
    """
    filled = crop.astype(np.float32)
    box = _bounding_box(hole)
    if box is None:
        return filled
    known = ~hole
    if not known.any():
        filled[:] = filled.reshape(-1, 3).mean(axis=0)
        return filled
    height, width = hole.shape
    extent = max(box[1] - box[0], box[3] - box[2])
    sigma = max(4.0, extent / 4)
    factor = max(1, int(sigma // 4))
    small = (max(1, round(width / factor)), max(1, round(height / factor)))
    weight = known.astype(np.float32)
    numerator = cv2.resize(filled * weight[:, :, np.newaxis], small, interpolation=cv2.INTER_AREA)
    denominator = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    numerator = cv2.GaussianBlur(numerator, (0, 0), sigmaX=sigma / factor)
    denominator = cv2.GaussianBlur(denominator, (0, 0), sigmaX=sigma / factor)
    # Far from every known pixel the weights vanish; the epsilon fades those to the mean colour.
    epsilon = np.float32(1e-3)
    mean = filled[known].mean(axis=0).astype(np.float32)
    smooth = (numerator + epsilon * mean) / (denominator[:, :, np.newaxis] + epsilon)
    smooth = cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR)
    filled[hole] = smooth[hole]
    return filled
