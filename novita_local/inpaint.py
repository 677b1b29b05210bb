"""Inpainting with AUTOMATIC1111 semantics on OpenCV (interface stub; implementation pending)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from PIL import Image

Algorithm = Literal["telea", "ns"]


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


def run_inpaint(image: Image.Image, mask: Image.Image, settings: InpaintSettings) -> list[Image.Image]:
    """Inpaint `image` where `mask` says; returns `settings.image_num` RGB images."""
    raise NotImplementedError
