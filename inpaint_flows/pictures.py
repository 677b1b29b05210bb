"""Reading a job's input pictures: open, check and orient the image and mask files.

(What is sent is `payload`; the whole check of a job, before paying, is `input_checks`;
checking a downloaded result is `result_images`.)

Every read of an input file goes through `_source_size` (its size, and whether it is there) and
`_read_source` (its bytes): nothing else in the package opens an input picture.

Decisions, in one place:

- Formats: PNG, JPEG (MPO is JPEG) and WEBP are what the API takes. BMP, TIFF and GIF are read
  too and converted; any other file is refused. The format is read from the file's content,
  never its extension. Images with several frames (animated GIF/PNG/WEBP, multi-page TIFF) are
  refused: which frame to inpaint is the user's choice. Pillow only tries these six decoders, so
  a file can never reach a risky one (EPS and Ghostscript, say).
- Size limits: the pixel count is checked from the header before anything is decoded, so a
  decompression bomb costs nothing. Pillow's own bomb guard (its warning or error) is reported
  the same way. No global Pillow setting is changed: pipeline threads share them.
- Modes: images become RGB (alpha dropped, palette expanded, CMYK converted, 16-bit scaled by
  1/257, not clipped); masks become "L" by the local server's rule: the alpha channel when some
  pixel is not opaque, else luminance.
- EXIF orientation is applied to the image and to the mask by their own tags. A mask without
  an orientation of its own whose size is the image's size *before* rotation but not after
  (a mask drawn on the stored pixels, e.g. by a script) is rotated like the image. When the size
  cannot tell (180-degree turns, mirrors, square images) the mask is taken as drawn on the image
  as displayed, which is what an editor shows.
- Drawn masks (a job with a `mask_recipe`: annotations, manifest shapes, a region, grow/shrink/
  feather, on top of its mask file if any) are made at the image's size after orientation. A
  job without a recipe is untouched by this.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from inpaint_flows.contract import MAX_PIXELS
from inpaint_flows.errors import ImageError, InputError, MaskError
from inpaint_flows.jobs import problem_error
from inpaint_flows.locations import info, is_remote, open_input
from inpaint_flows.masks import render_mask
from inpaint_flows.models import Job
from inpaint_flows.pixels import gray_u8, is_wide, mask_luminance

SourcePath = str | os.PathLike[str]  # a local path or an object-storage URL

__all__ = [
    "ACCEPTED_FORMATS",
    "CONVERTED_FORMATS",
    "final_mask",
    "load_image",
    "load_mask",
    "mask_coverage",
    "normalise_rgb",
    "orientation_of",
]

ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")  # sent as they are
CONVERTED_FORMATS: tuple[str, ...] = ("BMP", "TIFF", "GIF")  # read, then sent as PNG
_DECODERS = [*ACCEPTED_FORMATS, *CONVERTED_FORMATS]
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees
_FORMATS_TEXT = "PNG, JPEG or WEBP (BMP, TIFF and GIF are converted)"


@dataclass(frozen=True)
class Role:
    """Which file of a job is read: decides the error class and the wording."""

    noun: str  # "image" or "mask"
    error: type[InputError]


IMAGE = Role("image", ImageError)
MASK = Role("mask", MaskError)


# ---------------------------------------------------------------------------------------------
# Public functions


def load_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at `path`, EXIF orientation applied, as RGB.

    Raises `ImageError` (with a reason token) when the file is missing, empty, not an image,
    animated, larger than `max_pixels` or damaged.
    """
    with open_picture(path, IMAGE, max_pixels) as img:
        rgb = oriented_rgb(img, exif_orientation(img))
        return rgb.copy() if rgb is img else rgb


def load_mask(
    path: str | Path,
    image_size: tuple[int, int],
    *,
    image_orientation: int = 1,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """The mask at `path` as an "L" image oriented like the image it belongs to.

    Args:
        path: The mask file.
        image_size: The image's (width, height) after its EXIF orientation was applied.
        image_orientation: The image's EXIF orientation tag (1..8; 1 = none). A mask with no
            orientation of its own whose size is the image's size before rotation, and not
            after, is rotated the same way.
        max_pixels: Refuse to decode larger masks.

    Raises `MaskError` for the same file problems `load_image` reports. The size is not checked
    here: `input_checks.prepare_job` compares it with the image.
    """
    with open_picture(path, MASK, max_pixels) as img:
        mask = oriented_mask(img, mask_turn(img, image_size, image_orientation))
        return mask.copy() if mask is img else mask


def final_mask(job: Job) -> tuple[Image.Image, list[str]]:
    """The "L" mask `job` sends, at the image's size after orientation, and its warnings.

    A mask file without a recipe is returned oriented (as `load_mask` reads it); a recipe is
    drawn. `inpainting_mask_invert` is not applied: white means repaint unless it is set. Raises
    the `InputError` `prepare_job` would raise for an unreadable file or a shape that cannot
    be drawn (call `input_checks.prepare_job` for every other check).
    """
    if job.problem is not None:
        raise problem_error(job)
    with open_picture(job.image_path, IMAGE) as raw_image:
        orientation = exif_orientation(raw_image)
        stored_size = raw_image.size
    image_size = oriented_size(stored_size, orientation)
    if job.mask_recipe is not None:
        return drawn_mask(job, stored_size, image_size, orientation)
    if job.mask_path is None:
        raise MaskError(f"{job.name}: no mask for {job.image_path}.", reason="MISSING_MASK")
    return load_mask(job.mask_path, image_size, image_orientation=orientation), []


def mask_coverage(mask: Image.Image) -> float:
    """The share of the image the "L" `mask` repaints, in percent (soft values count partly)."""
    values = np.asarray(mask.convert("L") if mask.mode != "L" else mask, dtype=np.float64)
    if values.size == 0:
        return 0.0
    return float(values.mean() / 255.0 * 100.0)


def normalise_rgb(img: Image.Image) -> Image.Image:
    """`img` as 8-bit RGB: alpha dropped, palette expanded, CMYK converted, 16-bit scaled."""
    if img.mode == "RGB":
        return img
    if is_wide(img):
        return Image.fromarray(gray_u8(img), "L").convert("RGB")
    if img.has_transparency_data and img.mode not in ("RGBA", "LA"):
        img = img.convert("RGBA")  # palette/transparency keys: avoid Pillow's lossy shortcut
    return img.convert("RGB")


def orientation_of(path: str | Path) -> int:
    """The EXIF orientation tag (1..8) of the image file at `path`; 1 when it has none."""
    try:
        with _read_source(path) as source, Image.open(source) as img:
            return exif_orientation(img)
    except (OSError, UnidentifiedImageError):
        return 1


# ---------------------------------------------------------------------------------------------
# The input files themselves: the only two places that touch one


class _NotAFileError(OSError):
    """Something is at the path, but not a file (a folder, a device)."""


def _source_size(path: SourcePath) -> int:
    """The size in bytes of the input file at `path`.

    Raises `FileNotFoundError` when nothing is there, `_NotAFileError` when it is not a file,
    and `OSError` when it cannot be read.
    """
    if is_remote(path):  # an object in a bucket: one metadata request
        meta = info(os.fspath(path))
        if meta is None:
            raise FileNotFoundError(path)
        return int(meta.get("size") or 0)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    if not path.is_file():
        raise _NotAFileError(path)
    return path.stat().st_size


@contextmanager
def _read_source(path: SourcePath) -> Iterator[BinaryIO]:
    """The input file at `path` (or object, read whole), open for reading; closed when the
    block ends."""
    with open_input(path) as source:
        yield source


def source_size(path: SourcePath) -> int:
    """The size in bytes of an input file (one that `open_picture` accepted)."""
    return _source_size(path)


def source_bytes(path: SourcePath) -> bytes:
    """The whole content of an input file, as it is sent when nothing needs doing to it."""
    with _read_source(path) as source:
        return source.read()


def _content_sha256(blocks: Iterable[bytes]) -> str:
    """The hash that names an input's content in its job key, and proves it at the submit."""
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def source_sha256(path: SourcePath) -> str:
    """The SHA-256 of an input file's bytes (for the job key), read in blocks."""
    with _read_source(path) as source:
        return _content_sha256(iter(lambda: source.read(1 << 20), b""))


# ---------------------------------------------------------------------------------------------
# Opening files


class _Opened:
    """Context manager around `Image.open` that turns every failure into a specific error."""

    def __init__(
        self, path: SourcePath, role: Role, max_pixels: int, content: bytes | None = None
    ) -> None:
        self.path, self.role, self.max_pixels, self.content = path, role, max_pixels, content
        self._files = ExitStack()

    def __enter__(self) -> Image.Image:
        path, role = self.path, self.role
        noun = role.noun.capitalize()
        try:
            size = _source_size(path) if self.content is None else len(self.content)
        except FileNotFoundError:
            raise role.error(
                f"{noun} {path} does not exist. Check the path (a manifest's paths are relative"
                " to the manifest's folder).",
                reason=f"{role.noun.upper()}_NOT_FOUND",
            ) from None
        except _NotAFileError:
            raise role.error(
                f"{noun} {path} is not a file.", reason=f"{role.noun.upper()}_NOT_FOUND"
            ) from None
        except OSError as exc:
            raise role.error(f"{noun} {path} cannot be read: {exc}.", reason="UNREADABLE") from exc
        if size == 0:
            raise role.error(
                f"{noun} {path} is empty (0 bytes): the file was not written completely."
                " Export it again.",
                reason="EMPTY_FILE",
            )
        try:
            try:
                source = (
                    self._files.enter_context(_read_source(path))
                    if self.content is None
                    else io.BytesIO(self.content)
                )
                img = Image.open(source, formats=_DECODERS)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise role.error(
                    f"{noun} {path} is too large to decode safely (decompression bomb guard:"
                    f" {exc}). The limit is {MAX_PIXELS} pixels.",
                    reason="IMAGE_EXCEEDS_MAX_RESOLUTION",
                ) from exc
            except UnidentifiedImageError as exc:
                raise role.error(
                    f"{noun} {path} is not a {_FORMATS_TEXT} image, or is damaged beyond"
                    " reading. Save it again as PNG.",
                    reason="INVALID_IMAGE_FORMAT",
                ) from exc
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise role.error(
                    f"{noun} {path} is damaged or truncated ({exc}). Export it again.",
                    reason="CORRUPT_IMAGE",
                ) from exc
            self._files.callback(img.close)  # closed before its file
            self._check(img)
        except BaseException:
            self._files.close()
            raise
        return img

    def _check(self, img: Image.Image) -> None:
        path, role = self.path, self.role
        noun = role.noun.capitalize()
        width, height = img.size
        if width * height > self.max_pixels:
            raise role.error(
                f"{noun} {path} is {width}x{height} = {width * height / 1e6:.1f} megapixels;"
                f" the API takes at most {self.max_pixels / 2**20:.0f} megapixels"
                f" ({self.max_pixels} pixels). Downscale it.",
                reason="IMAGE_EXCEEDS_MAX_RESOLUTION",
            )
        if width == 0 or height == 0:
            raise role.error(
                f"{noun} {path} has no pixels ({width}x{height}).", reason="CORRUPT_IMAGE"
            )
        try:
            # MPO is a JPEG with a preview appended; its first frame is the photo
            frames = 1 if img.format == "MPO" else getattr(img, "n_frames", 1)
            if frames > 1:
                raise role.error(
                    f"{noun} {path} has {frames} frames ({img.format}). Export the one frame to"
                    " inpaint as a single PNG or JPEG.",
                    reason="INVALID_IMAGE_FORMAT",
                )
            if self.content is None:  # else decoded when it was checked, and when it is used
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise role.error(
                f"{noun} {path} is too large to decode safely ({exc}).",
                reason="IMAGE_EXCEEDS_MAX_RESOLUTION",
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise role.error(
                f"{noun} {path} is damaged or truncated ({exc}). Export it again.",
                reason="CORRUPT_IMAGE",
            ) from exc

    def __exit__(self, *exc_info: object) -> None:
        self._files.close()


def open_picture(
    path: SourcePath, role: Role, max_pixels: int = MAX_PIXELS, *, content: bytes | None = None
) -> _Opened:
    """The picture at `path`, checked and decoded, open for the `with` block.

    Raises `role.error` (with a reason token) when the file is missing, empty, not a picture in
    an accepted format, animated, larger than `max_pixels` or damaged.

    `content`: the file's bytes, already read and found to be the very ones that were checked
    (`checked_content`): opened from them, header only (their pixels decoded when checked; they
    are decoded again only if used).
    """
    return _Opened(path, role, max_pixels, content)


def checked_content(path: SourcePath, role: Role, sha256: str) -> bytes:
    """The bytes of the input file at `path`, which must be the ones that were checked (by
    their SHA-256): what is sent is what was checked and paid for under its job key."""
    try:
        content = source_bytes(path)
    except OSError:
        with open_picture(path, role):  # raises what is wrong with it: missing, not a file...
            pass
        raise
    if _content_sha256([content]) != sha256:
        raise role.error(
            f"{role.noun.capitalize()} {path} changed after it was checked: it was not sent. Run"
            " the batch again to check and send the file as it is now.",
            reason="INPUT_CHANGED",
        )
    return content


# ---------------------------------------------------------------------------------------------
# Orientation and modes


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1..8); 1 when absent, unreadable or out of range."""
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block must not make a readable picture unusable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """A picture's (width, height) once EXIF `orientation` is applied."""
    return (size[1], size[0]) if orientation in _SWAPS_AXES else size


def transpose(img: Image.Image, orientation: int) -> Image.Image:
    """`img` turned as EXIF `orientation` says (the same table as `ImageOps.exif_transpose`)."""
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return img if method is None else img.transpose(method)


def mask_turn(mask: Image.Image, image_size: tuple[int, int], image_orientation: int) -> int:
    """The EXIF orientation to apply to `mask`: its own, else the image's when the mask fits
    only the unrotated image (see the module docstring), else none (1)."""
    own = exif_orientation(mask)
    if own != 1:
        return own
    if image_orientation not in _SWAPS_AXES:
        return 1
    stored_image_size = (image_size[1], image_size[0])
    if mask.size == stored_image_size and mask.size != image_size:
        return image_orientation
    return 1


def oriented_rgb(raw: Image.Image, orientation: int) -> Image.Image:
    """The opened image as it is inpainted: turned by `orientation`, as RGB."""
    return normalise_rgb(transpose(raw, orientation))


def oriented_mask(raw: Image.Image, turn: int) -> Image.Image:
    """The opened mask as it is applied: turned by `turn` (see `mask_turn`), as "L"."""
    return mask_luminance(transpose(raw, turn))


# ---------------------------------------------------------------------------------------------
# Masks against their image


def check_mask_size(
    job: Job,
    mask_size: tuple[int, int],
    stored_mask_size: tuple[int, int],
    image_size: tuple[int, int],
    orientation: int,
) -> None:
    """Raise `MaskError` (`MASK_SIZE_MISMATCH`) unless the oriented mask fits the image."""
    if mask_size == image_size:
        return
    mw, mh = mask_size
    iw, ih = image_size
    turned = ""
    if orientation != 1:
        sw, sh = oriented_size(image_size, orientation)
        turned = f" after its EXIF orientation (stored as {sw}x{sh})"
    stored = f" (stored as {stored_mask_size[0]}x{stored_mask_size[1]})"
    raise MaskError(
        f"{job.name}: mask {job.mask_path} is {mw}x{mh}"
        f"{stored if stored_mask_size != mask_size else ''} but the image is {iw}x{ih}{turned}."
        f" Resize the mask to {iw}x{ih}.",
        reason="MASK_SIZE_MISMATCH",
    )


def drawn_mask(
    job: Job, stored_size: tuple[int, int], image_size: tuple[int, int], orientation: int
) -> tuple[Image.Image, list[str]]:
    """The job's recipe drawn over its mask file (if any), operations applied, and warnings."""
    assert job.mask_recipe is not None
    file_mask = None
    if job.mask_path is not None:
        with open_picture(job.mask_path, MASK) as raw_mask:
            built = oriented_mask(raw_mask, mask_turn(raw_mask, image_size, orientation))
            check_mask_size(job, built.size, raw_mask.size, image_size, orientation)
            file_mask = built.copy() if built is raw_mask else built  # outlives the file
    try:
        return render_mask(
            job.mask_recipe,
            file_mask,
            image_size,
            stored_size=stored_size,
            turn=lambda img: transpose(img, orientation),
        )
    except MaskError as exc:
        raise MaskError(f"{job.name}: {exc}", reason=exc.reason) from exc
