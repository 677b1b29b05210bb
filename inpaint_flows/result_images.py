"""Checking a downloaded result image before it is written: whole, decodable, not oversized."""

from __future__ import annotations

import io
import logging
from typing import Protocol, TypeVar

from PIL import Image, UnidentifiedImageError

from inpaint_flows.contract import MAX_PIXELS
from inpaint_flows.errors import ImageError
from inpaint_flows.pictures import ACCEPTED_FORMATS

logger = logging.getLogger(__name__)
P = TypeVar("P")


class ResultPreviews(Protocol[P]):
    """Previews made from a downloaded result's pixels while they are decoded for its check, so
    they need no decode of their own (the gallery's thumbnails: `inpaint_flows.finishing`)."""

    def make(self, image: Image.Image) -> P:
        """A preview of the decoded, checked `image` (it may be changed: it is not used again).
        Runs in a worker thread."""
        ...

    def keep(self, rel: str, preview: P) -> None:
        """The preview of the result just written as `rel` (output-folder relative)."""
        ...


def validate_result_image(data: bytes, *, max_pixels: int = 4 * MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) of a downloaded result, fully decoded to prove it is whole.

    The format is "png", "jpeg" or "webp". Raises `ImageError` (reason `INVALID_RESULT_IMAGE`)
    for empty, undecodable, truncated or oversized data. Stricter than for inputs: a result that
    decodes but lacks its end marker (PNG IEND, JPEG EOI, WEBP's declared length) counts as cut
    short, since a download that stopped early must be fetched again.
    """
    fmt, img = _decoded(data, max_pixels)
    with img:
        return fmt, *img.size


def checked_result_preview(
    data: bytes, previews: ResultPreviews[P] | None, *, max_pixels: int = 4 * MAX_PIXELS
) -> tuple[str, P | None]:
    """`validate_result_image`, and a preview made from the pixels it decoded: (format, preview).

    The preview is None without `previews`, or when making it failed: it is only a cache, and
    the result is whole.
    """
    fmt, img = _decoded(data, max_pixels)
    with img:
        if previews is None:
            return fmt, None
        try:
            return fmt, previews.make(img)
        except Exception:  # remade from the file when the gallery needs it
            logger.debug("no preview of a %s result (%d bytes)", fmt, len(data), exc_info=True)
            return fmt, None


def _decoded(data: bytes, max_pixels: int) -> tuple[str, Image.Image]:
    """(format, the result's image, loaded; the caller closes it), or the `ImageError`."""
    reason = "INVALID_RESULT_IMAGE"
    if not data:
        raise ImageError("The result image is empty (0 bytes).", reason=reason)
    try:
        img = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
        try:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(
                    f"The result image is {width}x{height}, more than {max_pixels} pixels.",
                    reason=reason,
                )
            img.load()
            fmt = "jpeg" if img.format in ("JPEG", "MPO") else str(img.format).lower()
            if not _ends_whole(fmt, data):
                raise ImageError(
                    f"The result image ({fmt}, {len(data)} bytes) lacks its end marker: the"
                    " download was cut short.",
                    reason=reason,
                )
        except BaseException:
            img.close()
            raise
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"The result image is too large to decode ({exc}).", reason=reason
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"The result ({len(data)} bytes) is not a PNG, JPEG or WEBP image.", reason=reason
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"The result image ({len(data)} bytes) is damaged or truncated: {exc}.", reason=reason
        ) from exc
    return fmt, img


def _ends_whole(fmt: str, data: bytes) -> bool:
    """Whether `data` ends as a complete file of `fmt` does (decoders forgive a missing end)."""
    if fmt == "png":
        return b"IEND\xaeB`\x82" in data[-64:]
    if fmt == "jpeg":
        return data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if fmt == "webp":
        return len(data) >= 8 + int.from_bytes(data[4:8], "little")
    return True
