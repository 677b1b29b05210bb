"""Pixel-format rules shared by the client's input checks and the local server.

Both sides must read a mask the same way, or a mask the client judged "not empty" could mean
nothing to the server. The rules live here once: wide (16-bit, "I", "F") greyscale is scaled by
1/257 rather than clipped as Pillow's `convert("L")` would, and a mask with any non-opaque alpha
means its alpha (the A1111 rule the contract infers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

U8Array = np.ndarray[Any, np.dtype[np.uint8]]


def is_wide(img: Image.Image) -> bool:
    """Whether `img` holds more than 8 bits per pixel of greyscale (scaled, not clipped)."""
    return img.mode in SIXTEEN_BIT_MODES or img.mode in ("I", "F")


def gray_u8(img: Image.Image) -> U8Array:
    """8-bit luminance of any mode; wide modes are scaled, since Pillow's convert clips them."""
    if is_wide(img):
        values = np.asarray(img, dtype=np.float64)
        # "I" and "F" carry no range: values above 8 bits mean a 16-bit source (a 16-bit PNG).
        wide = img.mode in SIXTEEN_BIT_MODES or (values.size > 0 and values.max() > 255)
        scaled = values / 257.0 if wide else values
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.asarray(img.convert("L"))


def mask_luminance(img: Image.Image) -> Image.Image:
    """`img` as an "L" mask: its alpha when some pixel is not opaque, else its luminance."""
    if img.has_transparency_data:
        alpha = img.convert("RGBA").getchannel("A")
        low, _ = alpha.getextrema()
        if isinstance(low, int | float) and low < 255:
            return alpha
    if img.mode == "L":
        return img
    return Image.fromarray(gray_u8(img), "L")
