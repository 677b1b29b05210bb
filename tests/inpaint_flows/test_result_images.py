"""A downloaded result is checked whole before it is written: decodable, complete, in size."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from inpaint_flows.errors import ImageError
from inpaint_flows.result_images import checked_result_preview, validate_result_image


def _encoded(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_validate_result_image_accepts_whole_images(fmt: str, name: str) -> None:
    data = _encoded(Image.new("RGB", (30, 20), "red"), fmt)
    assert validate_result_image(data) == (name, 30, 20)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>Access denied</html>", id="html-error-page"),
        pytest.param(
            _encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")[:400],
            id="truncated-png",
        ),
        pytest.param(
            _encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:400],
            id="truncated-jpeg",
        ),
        pytest.param(_encoded(Image.new("RGB", (30, 20)), "PNG")[:-12], id="png-without-iend"),
        pytest.param(_encoded(Image.new("RGB", (30, 20)), "JPEG")[:-2], id="jpeg-without-eoi"),
        pytest.param(_encoded(Image.new("RGB", (30, 20)), "WEBP")[:-4], id="webp-cut-short"),
        pytest.param(_encoded(Image.new("RGB", (30, 20)), "BMP"), id="bmp-is-not-a-result-format"),
    ],
)
def test_validate_result_image_refuses_broken_data(data: bytes) -> None:
    with pytest.raises(ImageError) as info:
        validate_result_image(data)
    assert info.value.reason == "INVALID_RESULT_IMAGE"


def test_validate_result_image_refuses_oversized_results() -> None:
    data = _encoded(Image.new("L", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="more than"):
        validate_result_image(data, max_pixels=9_999)


class _Sizes:
    """Previews that record what they were given (a `ResultPreviews`)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.kept: dict[str, tuple[int, int]] = {}

    def make(self, image: Image.Image) -> tuple[int, int]:
        if self.fail:
            raise OSError("disk full")
        assert image.getpixel((0, 0)) == (255, 0, 0)  # decoded pixels, not just a header
        return image.size

    def keep(self, rel: str, preview: tuple[int, int]) -> None:
        self.kept[rel] = preview


def test_a_preview_is_made_from_the_pixels_the_check_decoded() -> None:
    data = _encoded(Image.new("RGB", (30, 20), "red"), "PNG")
    assert checked_result_preview(data, _Sizes()) == ("png", (30, 20))


def test_without_previews_the_result_is_only_checked() -> None:
    data = _encoded(Image.new("RGB", (30, 20), "red"), "PNG")
    assert checked_result_preview(data, None) == ("png", None)


def test_a_preview_that_fails_is_only_missing_the_result_still_counts_as_whole() -> None:
    data = _encoded(Image.new("RGB", (30, 20), "red"), "PNG")
    assert checked_result_preview(data, _Sizes(fail=True)) == ("png", None)


def test_a_damaged_result_gets_no_preview_and_its_error() -> None:
    data = _encoded(Image.new("RGB", (30, 20)), "PNG")[:-12]
    previews = _Sizes()
    with pytest.raises(ImageError, match="end marker") as caught:
        checked_result_preview(data, previews)
    assert caught.value.reason == "INVALID_RESULT_IMAGE"
