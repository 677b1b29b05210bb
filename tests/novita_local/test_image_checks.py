"""The image and mask checks: decodable PNG/JPEG/WEBP, same resolution, <= 16 MP, <= 30 MB.

Each refusal carries its own contract reason, so a client can tell a user exactly what is wrong
with which file; a decompression bomb is refused from its header, without decoding it.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.novita_local.helpers import (
    SIZE,
    StartServer,
    assert_error,
    b64,
    encode,
    http,
    png_header_only,
    sample_image,
    sample_mask,
    submit,
    valid_body,
    wait_done,
)


def _rgba_mask() -> Image.Image:
    mask = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    mask.paste((0, 0, 0, 255), (16, 16, 48, 48))
    return mask


ACCEPTED_IMAGES: list[Any] = [
    pytest.param(encode(sample_image(), "PNG"), id="png"),
    pytest.param(encode(sample_image(), "JPEG"), id="jpeg"),
    pytest.param(encode(sample_image(), "WEBP"), id="webp"),
    pytest.param(encode(sample_image().convert("P"), "PNG"), id="palette-png"),
    pytest.param(encode(sample_image().convert("RGBA"), "PNG"), id="rgba-png"),
    pytest.param(encode(sample_image().convert("L"), "PNG"), id="grey-png"),
    pytest.param(encode(sample_image().convert("I;16"), "PNG"), id="16-bit-png"),
    pytest.param(encode(sample_image().convert("CMYK"), "JPEG"), id="cmyk-jpeg"),
]


@pytest.mark.parametrize("image", ACCEPTED_IMAGES)
def test_accepted_image_formats(client: httpx.Client, image: bytes) -> None:
    task_id = submit(client, valid_body(image_base64=b64(image)))
    assert wait_done(client, task_id)["task"]["status"] == "TASK_STATUS_SUCCEED"


@pytest.mark.parametrize(
    "mask",
    [
        pytest.param(encode(sample_mask(), "JPEG"), id="jpeg-mask"),
        pytest.param(encode(_rgba_mask(), "PNG"), id="alpha-mask"),
        pytest.param(encode(sample_mask().convert("1"), "PNG"), id="bilevel-mask"),
    ],
)
def test_accepted_mask_formats(client: httpx.Client, mask: bytes) -> None:
    task_id = submit(client, valid_body(mask_image_base64=b64(mask)))
    assert wait_done(client, task_id)["task"]["status"] == "TASK_STATUS_SUCCEED"


PNG = encode(sample_image())

REFUSED_IMAGES: list[Any] = [
    pytest.param(
        "image_base64", "not base64!", "INVALID_IMAGE_FORMAT", "not valid base64", id="bad-b64"
    ),
    pytest.param(
        "image_base64",
        "data:image/png;base64," + b64(PNG),
        "INVALID_IMAGE_FORMAT",
        "not valid base64",
        id="data-uri-prefix",
    ),
    pytest.param(
        "image_base64",
        b64(b"hello, world"),
        "INVALID_IMAGE_FORMAT",
        "unrecognised bytes",
        id="text",
    ),
    pytest.param(
        "image_base64",
        b64(encode(sample_image(), "GIF")),
        "INVALID_IMAGE_FORMAT",
        "got GIF",
        id="gif",
    ),
    pytest.param(
        "image_base64",
        b64(encode(sample_image(), "BMP")),
        "INVALID_IMAGE_FORMAT",
        "got BMP",
        id="bmp",
    ),
    pytest.param(
        "image_base64",
        b64(encode(sample_image(), "TIFF")),
        "INVALID_IMAGE_FORMAT",
        "TIFF",
        id="tiff",
    ),
    pytest.param(
        "image_base64",
        b64(PNG[: len(PNG) // 2]),
        "INVALID_IMAGE_FORMAT",
        "truncated",
        id="truncated-png",
    ),
    pytest.param(
        "mask_image_base64",
        b64(encode(sample_mask(), "JPEG")[:200]),
        "INVALID_IMAGE_FORMAT",
        "request.mask_image_base64",
        id="truncated-jpeg-mask",
    ),
    pytest.param(
        "mask_image_base64",
        b64(encode(sample_mask((SIZE, SIZE // 2)))),
        "INVALID_IMAGE_SIZE",
        "same resolution",
        id="mask-other-size",
    ),
    pytest.param(
        "image_base64",
        b64(png_header_only(4097, 4096)),
        "IMAGE_EXCEEDS_MAX_RESOLUTION",
        "16781312 pixels",
        id="over-16-megapixels",
    ),
    pytest.param(
        "image_base64",
        b64(png_header_only(10_000, 10_000)),
        "IMAGE_EXCEEDS_MAX_RESOLUTION",
        "request.image_base64",
        id="bomb-100-megapixels",
    ),
    pytest.param(
        "image_base64",
        b64(png_header_only(100_000, 100_000)),
        "IMAGE_EXCEEDS_MAX_RESOLUTION",
        "request.image_base64",
        id="bomb-10-gigapixels",
    ),
]


@pytest.mark.parametrize(("field", "value", "reason", "expected"), REFUSED_IMAGES)
def test_refused_images(
    client: httpx.Client, field: str, value: str, reason: str, expected: str
) -> None:
    body = valid_body(**{field: value})
    error = assert_error(client.post("/v3/async/inpainting", json=body), 400, reason)
    assert expected in error["message"]


def test_exactly_16_megapixels_passes_the_resolution_check(start_server: StartServer) -> None:
    """4096 x 4096 is allowed: the header-only file then fails later, as corrupt, not as too big.

    Only without a per-side cap (`max_side=0`): under `novita`'s 2048 px, 16 MP is unreachable.
    """
    body = valid_body(
        image_base64=b64(png_header_only(4096, 4096)),
        mask_image_base64=b64(png_header_only(4096, 4096)),
    )
    with http(start_server(max_side=0)) as client:
        response = client.post("/v3/async/inpainting", json=body)
    assert_error(response, 400, "INVALID_IMAGE_FORMAT")


def test_image_over_30_megabytes_is_refused_before_decoding(client: httpx.Client) -> None:
    too_big = base64.b64encode(b"\x00" * (30 * 1024 * 1024 + 3)).decode()
    error = assert_error(
        client.post("/v3/async/inpainting", json=valid_body(image_base64=too_big)),
        400,
        "IMAGE_FILE_EXCEEDS_MAX_SIZE",
    )
    assert "request.image_base64" in error["message"]
    assert "30 MB" in error["message"]
