"""Turning the request's base64 strings into images, and result images into file bytes.

Decoding is bomb-safe: the decoded byte size is computed from the base64 length before decoding,
and the pixel count is read from the file header before any pixel is decompressed, so a tiny file
that claims 100 000 x 100 000 pixels is refused without allocating them.
"""

from __future__ import annotations

import binascii
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from inpaint_flows.contract import IMAGE_FORMATS, MAX_IMAGE_BYTES, MAX_PIXELS
from novita_local.errors import ApiError

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)


@dataclass(frozen=True)
class DecodedPair:
    """The request's image and mask, fully decoded and checked."""

    image: Image.Image
    mask: Image.Image


def decoded_size(data: str) -> int:
    """Bytes that base64 `data` decodes to, without decoding it."""
    stripped = data.rstrip("=")
    return (len(stripped) * 3) // 4


def _sniff(raw: bytes) -> str:
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if raw.startswith(magic):
            return name
    return "unrecognised bytes"


def _b64decode(field: str, data: str) -> bytes:
    try:
        return binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ApiError(
            "INVALID_IMAGE_FORMAT",
            f"{field} is not valid base64 ({exc}); send the file bytes base64-encoded, "
            "without a data: prefix or line breaks",
        ) from None


def _open_header(field: str, raw: bytes) -> Image.Image:
    """Open `raw` reading only its header; format and pixel count are checked here."""
    try:
        image = Image.open(io.BytesIO(raw), formats=list(IMAGE_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(
            "IMAGE_EXCEEDS_MAX_RESOLUTION",
            f"{field} declares far more pixels than the limit of {MAX_PIXELS} (16 megapixels)",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(
            "INVALID_IMAGE_FORMAT",
            f"{field} must be a PNG, JPEG or WEBP image; got {_sniff(raw)}",
        ) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ApiError(
            "IMAGE_EXCEEDS_MAX_RESOLUTION",
            f"{field} is {width}x{height} = {width * height} pixels; at most {MAX_PIXELS} "
            "(16 megapixels) are accepted",
        )
    return image


def _load(field: str, image: Image.Image) -> Image.Image:
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(
            "INVALID_IMAGE_FORMAT",
            f"{field} is a truncated or corrupt {image.format} file ({exc})",
        ) from None
    return image


def decode_pair(image_b64: str, mask_b64: str, *, max_side: int | None = None) -> DecodedPair:
    """Decode and check the request's image and mask, in the contract's order of errors.

    `max_side` caps width and height (None: no cap); it is checked from the headers, after the
    pixel count and the mask's size, before any pixel is decoded.

    Raises ApiError with IMAGE_FILE_EXCEEDS_MAX_SIZE, INVALID_IMAGE_FORMAT,
    IMAGE_EXCEEDS_MAX_RESOLUTION or INVALID_IMAGE_SIZE.
    """
    fields = (("request.image_base64", image_b64), ("request.mask_image_base64", mask_b64))
    for field, data in fields:
        size = decoded_size(data)
        if size > MAX_IMAGE_BYTES:
            raise ApiError(
                "IMAGE_FILE_EXCEEDS_MAX_SIZE",
                f"{field} decodes to {size} bytes; at most {MAX_IMAGE_BYTES} (30 MB) are accepted",
            )
    raws = [_b64decode(field, data) for field, data in fields]
    headers = [_open_header(field, raw) for (field, _), raw in zip(fields, raws, strict=True)]
    image, mask = headers
    if image.size != mask.size:
        raise ApiError(
            "INVALID_IMAGE_SIZE",
            f"request.mask_image_base64 is {mask.size[0]}x{mask.size[1]} but "
            f"request.image_base64 is {image.size[0]}x{image.size[1]}; "
            "the mask must have the same resolution as the image",
        )
    if max_side is not None and max(image.size) > max_side:
        raise ApiError(
            "INVALID_IMAGE_SIZE",
            f"request.image_base64 is {image.size[0]}x{image.size[1]}; width and height must "
            f"each be at most {max_side} pixels on this server; scale the image (and its mask) "
            "down or split it",
        )
    return DecodedPair(_load(fields[0][0], image), _load(fields[1][0], mask))


def encode(image: Image.Image, image_type: str) -> bytes:
    """`image` as file bytes of `image_type` (png, webp or jpeg); deterministic."""
    buffer = io.BytesIO()
    if image_type == "png":
        image.save(buffer, format="PNG")
    elif image_type == "webp":
        image.save(buffer, format="WEBP", quality=90, method=4)
    elif image_type == "jpeg":
        rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
        rgb.save(buffer, format="JPEG", quality=95)
    else:
        raise ValueError(f"unknown image type {image_type!r}")
    return buffer.getvalue()


def media_type(image_type: str) -> str:
    return {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}[image_type]


def corrupt(data: bytes) -> bytes:
    """A truncated copy of `data`: a download that looks complete but cannot be decoded."""
    return data[: max(1, len(data) // 2)]
