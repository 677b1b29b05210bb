"""Reading, checking and encoding the pictures of a job: pure functions, no network.

(Checking a downloaded result is `result_images`.)

Every check the API would make is made here first, so an input the API would refuse is reported
as invalid and never paid for. What is checked is what is sent: the size limit applies to the
exact bytes `encode_payload` returns, and the mask is compared with the image after both had
their EXIF orientation applied.

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
- Payload: a file already in an accepted format, RGB (image) or L/RGB (mask), with no rotation
  to apply is sent byte for byte. Anything else is re-encoded after orientation and conversion:
  masks and lossless images as PNG, images decoded from JPEG as JPEG quality 95 (4:4:4), because
  a rotated phone photo re-encoded as PNG can pass 30 MB.
- The 30 MB limit applies to the bytes sent before base64, as `inpaint_flows.contract` states.
- Masks: soft values are allowed; a mask is empty when no pixel is above 1 (of 255) after
  `inpainting_mask_invert`. An all-white mask is allowed (it repaints everything).
- Drawn masks (a job with a `mask_recipe`: annotations, manifest shapes, a region, grow/shrink/
  feather, on top of its mask file if any) are made at the image's size after orientation,
  checked like a file, sent as PNG, and their pixels (not a file) go into the job key: the same
  shapes pay once, a changed shape is a new job. A job without a recipe is untouched by this.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inpaint_flows.contract import MAX_IMAGE_BYTES, MAX_PIXELS
from inpaint_flows.errors import ImageError, InputError, MaskError
from inpaint_flows.jobs import problem_error
from inpaint_flows.masks import render_mask
from inpaint_flows.models import Job, PreparedJob, job_key_for
from inpaint_flows.pixels import gray_u8, is_wide, mask_luminance

__all__ = [
    "ACCEPTED_FORMATS",
    "CONVERTED_FORMATS",
    "EMPTY_MASK_LEVEL",
    "encode_payload",
    "final_mask",
    "load_image",
    "load_mask",
    "mask_coverage",
    "normalise_rgb",
    "orientation_of",
    "prepare_job",
]

ACCEPTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")  # sent as they are
CONVERTED_FORMATS: tuple[str, ...] = ("BMP", "TIFF", "GIF")  # read, then sent as PNG
_DECODERS = [*ACCEPTED_FORMATS, *CONVERTED_FORMATS]
EMPTY_MASK_LEVEL = 1  # a mask whose every pixel is <= this (of 255) repaints nothing
_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees
_FORMATS_TEXT = "PNG, JPEG or WEBP (BMP, TIFF and GIF are converted)"


@dataclass(frozen=True)
class _Role:
    """Which file of a job is read: decides the error class and the wording."""

    noun: str  # "image" or "mask"
    error: type[InputError]


_IMAGE = _Role("image", ImageError)
_MASK = _Role("mask", MaskError)


# ---------------------------------------------------------------------------------------------
# Public functions


def load_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at `path`, EXIF orientation applied, as RGB.

    Raises `ImageError` (with a reason token) when the file is missing, empty, not an image,
    animated, larger than `max_pixels` or damaged.
    """
    with _open(Path(path), _IMAGE, max_pixels) as img:
        rgb = normalise_rgb(_transpose(img, _orientation(img)))
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
    here: `prepare_job` compares it with the image.
    """
    with _open(Path(path), _MASK, max_pixels) as img:
        mask = mask_luminance(_orient_mask(img, image_size, image_orientation))
        return mask.copy() if mask is img else mask


def final_mask(job: Job) -> tuple[Image.Image, list[str]]:
    """The "L" mask `job` sends, at the image's size after orientation, and its warnings.

    A mask file without a recipe is returned oriented (as `load_mask` reads it); a recipe is
    drawn. `inpainting_mask_invert` is not applied: white means repaint unless it is set. Raises
    the `InputError` `prepare_job` would raise for an unreadable file or a shape that cannot
    be drawn (call `prepare_job` for every other check).
    """
    if job.problem is not None:
        raise problem_error(job)
    with _open(Path(job.image_path), _IMAGE, MAX_PIXELS) as raw_image:
        orientation = _orientation(raw_image)
        stored_size = raw_image.size
    image_size = _oriented_size(stored_size, orientation)
    if job.mask_recipe is not None:
        return _drawn_mask(job, stored_size, image_size, orientation)
    if job.mask_path is None:
        raise MaskError(f"{job.name}: no mask for {job.image_path}.", reason="MISSING_MASK")
    return load_mask(job.mask_path, image_size, image_orientation=orientation), []


def mask_coverage(mask: Image.Image) -> float:
    """The share of the image the "L" `mask` repaints, in percent (soft values count partly)."""
    values = np.asarray(mask.convert("L") if mask.mode != "L" else mask, dtype=np.float64)
    if values.size == 0:
        return 0.0
    return float(values.mean() / 255.0 * 100.0)


def prepare_job(job: Job) -> PreparedJob:
    """Read and check one job's image and mask; the result holds numbers, not pixels.

    Checks, in order: a discovery problem recorded on the job; the image (exists, not empty,
    readable format, one frame, at most MAX_PIXELS, not damaged, payload at most
    MAX_IMAGE_BYTES); the mask (the same, plus: same size as the image after orientation, not
    empty after `inpainting_mask_invert`). Raises the matching `InputError` subclass with a
    message naming the file, the problem and the fix.
    """
    if job.problem is not None:
        raise problem_error(job)
    image_path = Path(job.image_path)
    with _open(image_path, _IMAGE, MAX_PIXELS) as raw_image:
        orientation = _orientation(raw_image)
        stored_size = raw_image.size
        image_size = _oriented_size(stored_size, orientation)
        image_plan = _image_plan(raw_image, orientation)
        image_payload = image_plan.payload_size(image_path, raw_image)
    _check_payload(image_path, _IMAGE, image_payload)

    if job.mask_recipe is not None:
        return _prepare_drawn(job, stored_size, image_size, orientation, image_payload)
    if job.mask_path is None:
        raise MaskError(
            f"{job.name}: no mask was given for {image_path}. Add one next to it (`name_mask.png`),"
            " in `masks/`, in the manifest's `mask` column, or pass a single mask for all images.",
            reason="MISSING_MASK",
        )
    mask_path = Path(job.mask_path)
    with _open(mask_path, _MASK, MAX_PIXELS) as raw_mask:
        mask_plan = _mask_plan(raw_mask, image_size, orientation)
        mask = mask_plan.build(raw_mask)
        _check_mask_size(job, mask.size, raw_mask.size, image_size, orientation)
        mask_payload = mask_plan.payload_size(mask_path, raw_mask, built=mask)
        if job.params.inpainting_mask_invert:
            mask = ImageOps.invert(mask)
        _check_not_empty(job, mask_path, mask)
        coverage = mask_coverage(mask)
        del mask
    _check_payload(mask_path, _MASK, mask_payload)

    return PreparedJob(
        job=job,
        job_key=job_key_for(_sha256(image_path), _sha256(mask_path), job.params),
        width=image_size[0],
        height=image_size[1],
        mask_coverage_pct=round(coverage, 4),
        image_bytes=image_payload,
        mask_bytes=mask_payload,
    )


def encode_payload(job: Job) -> tuple[str, str]:
    """The base64 image and mask exactly as they are sent for `job`.

    Files that need nothing done are sent byte for byte; the others are oriented, converted and
    re-encoded (see the module docstring). Nothing is kept after returning, so calling this right
    before each submit keeps memory flat over a long batch. Raises like `prepare_job` when a file
    changed since it was checked.
    """
    if job.problem is not None:
        raise problem_error(job)
    if job.mask_path is None and job.mask_recipe is None:
        raise MaskError(f"{job.name}: no mask to send for {job.image_path}.", reason="MISSING_MASK")
    image_path = Path(job.image_path)
    with _open(image_path, _IMAGE, MAX_PIXELS) as raw_image:
        orientation = _orientation(raw_image)
        image_plan = _image_plan(raw_image, orientation)
        image_size = _oriented_size(raw_image.size, orientation)
        stored_size = raw_image.size
        image_bytes = image_plan.payload(image_path, raw_image)
    _check_payload(image_path, _IMAGE, len(image_bytes))
    image_b64 = base64.b64encode(image_bytes).decode("ascii")
    del image_bytes
    if job.mask_recipe is not None:
        mask, _ = _drawn_mask(job, stored_size, image_size, orientation)
        buffer = io.BytesIO()
        _save_png(mask, buffer)
        _check_payload(Path(job.name), _MASK, buffer.tell())
        return image_b64, base64.b64encode(buffer.getvalue()).decode("ascii")
    assert job.mask_path is not None
    mask_path = Path(job.mask_path)
    with _open(mask_path, _MASK, MAX_PIXELS) as raw_mask:
        mask_plan = _mask_plan(raw_mask, image_size, orientation)
        mask_size = _oriented_size(raw_mask.size, mask_plan.turn)
        _check_mask_size(job, mask_size, raw_mask.size, image_size, orientation)
        mask_bytes = mask_plan.payload(mask_path, raw_mask)
    _check_payload(mask_path, _MASK, len(mask_bytes))
    return image_b64, base64.b64encode(mask_bytes).decode("ascii")


def normalise_rgb(img: Image.Image) -> Image.Image:
    """`img` as 8-bit RGB: alpha dropped, palette expanded, CMYK converted, 16-bit scaled."""
    if img.mode == "RGB":
        return img
    if is_wide(img):
        return Image.fromarray(gray_u8(img), "L").convert("RGB")
    if img.has_transparency_data and img.mode not in ("RGBA", "LA"):
        img = img.convert("RGBA")  # palette/transparency keys: avoid Pillow's lossy shortcut
    return img.convert("RGB")


# ---------------------------------------------------------------------------------------------
# Opening files


class _Opened:
    """Context manager around `Image.open` that turns every failure into a specific error."""

    def __init__(self, path: Path, role: _Role, max_pixels: int) -> None:
        self.path, self.role, self.max_pixels = path, role, max_pixels
        self.img: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        path, role = self.path, self.role
        noun = role.noun.capitalize()
        if not path.exists():
            raise role.error(
                f"{noun} {path} does not exist. Check the path (a manifest's paths are relative"
                " to the manifest's folder).",
                reason=f"{role.noun.upper()}_NOT_FOUND",
            )
        if not path.is_file():
            raise role.error(
                f"{noun} {path} is not a file.", reason=f"{role.noun.upper()}_NOT_FOUND"
            )
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise role.error(f"{noun} {path} cannot be read: {exc}.", reason="UNREADABLE") from exc
        if size == 0:
            raise role.error(
                f"{noun} {path} is empty (0 bytes): the file was not written completely."
                " Export it again.",
                reason="EMPTY_FILE",
            )
        try:
            img = Image.open(path, formats=_DECODERS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise role.error(
                f"{noun} {path} is too large to decode safely (decompression bomb guard: {exc})."
                f" The limit is {MAX_PIXELS} pixels.",
                reason="IMAGE_EXCEEDS_MAX_RESOLUTION",
            ) from exc
        except UnidentifiedImageError as exc:
            raise role.error(
                f"{noun} {path} is not a {_FORMATS_TEXT} image, or is damaged beyond reading."
                " Save it again as PNG.",
                reason="INVALID_IMAGE_FORMAT",
            ) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise role.error(
                f"{noun} {path} is damaged or truncated ({exc}). Export it again.",
                reason="CORRUPT_IMAGE",
            ) from exc
        self.img = img
        try:
            self._check(img)
        except BaseException:
            img.close()
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
        if self.img is not None:
            self.img.close()
            self.img = None


def _open(path: Path, role: _Role, max_pixels: int) -> _Opened:
    return _Opened(path, role, max_pixels)


# ---------------------------------------------------------------------------------------------
# Orientation


def orientation_of(path: str | Path) -> int:
    """The EXIF orientation tag (1..8) of the image file at `path`; 1 when it has none."""
    try:
        with Image.open(path) as img:
            return _orientation(img)
    except (OSError, UnidentifiedImageError):
        return 1


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1..8); 1 when absent, unreadable or out of range."""
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block must not make a readable picture unusable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _SWAPS_AXES else size


def _transpose(img: Image.Image, orientation: int) -> Image.Image:
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


def _borrowed_orientation(
    mask: Image.Image, image_size: tuple[int, int], image_orientation: int
) -> int:
    """The image's orientation when the unoriented mask fits only the unrotated image."""
    if _orientation(mask) != 1 or image_orientation not in _SWAPS_AXES:
        return 1
    stored_image_size = (image_size[1], image_size[0])
    if mask.size == stored_image_size and mask.size != image_size:
        return image_orientation
    return 1


def _orient_mask(
    mask: Image.Image, image_size: tuple[int, int], image_orientation: int
) -> Image.Image:
    own = _orientation(mask)
    if own != 1:
        return _transpose(mask, own)
    return _transpose(mask, _borrowed_orientation(mask, image_size, image_orientation))


# ---------------------------------------------------------------------------------------------
# What is sent


@dataclass(frozen=True)
class _Plan:
    """How one file becomes payload bytes: as it is, or rebuilt and re-encoded."""

    as_is: bool
    turn: int  # the EXIF orientation applied before sending (1 = none)
    build: Callable[[Image.Image], Image.Image]  # raw opened file -> picture that is sent
    save: Callable[[Image.Image, IO[bytes]], None]

    def payload(self, path: Path, raw: Image.Image) -> bytes:
        if self.as_is:
            return path.read_bytes()
        buffer = io.BytesIO()
        self.save(self.build(raw), buffer)
        return buffer.getvalue()

    def payload_size(self, path: Path, raw: Image.Image, built: Image.Image | None = None) -> int:
        """The payload's length, without holding a copy of a re-encoded file."""
        if self.as_is:
            return path.stat().st_size
        counter = _ByteCounter()
        self.save(self.build(raw) if built is None else built, counter)  # type: ignore[arg-type]
        return counter.count


class _ByteCounter:
    """A write-only file that only counts: measures an encoding without keeping it."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _save_png(img: Image.Image, fp: IO[bytes]) -> None:
    img.save(fp, format="PNG", compress_level=6)


def _save_jpeg(img: Image.Image, fp: IO[bytes]) -> None:
    img.save(fp, format="JPEG", quality=95, subsampling=0)


def _image_plan(raw: Image.Image, orientation: int) -> _Plan:
    as_is = raw.format in (*ACCEPTED_FORMATS, "MPO") and raw.mode == "RGB" and orientation == 1

    def build(img: Image.Image) -> Image.Image:
        return normalise_rgb(_transpose(img, orientation))

    lossy_source = raw.format in ("JPEG", "MPO")
    save = _save_jpeg if lossy_source else _save_png
    return _Plan(as_is=as_is, turn=orientation, build=build, save=save)


def _mask_plan(raw: Image.Image, image_size: tuple[int, int], image_orientation: int) -> _Plan:
    turn = _orientation(raw)
    if turn == 1:
        turn = _borrowed_orientation(raw, image_size, image_orientation)
    plain_luminance = raw.mode in ("L", "RGB") and not raw.has_transparency_data
    as_is = raw.format in (*ACCEPTED_FORMATS, "MPO") and plain_luminance and turn == 1

    def build(img: Image.Image) -> Image.Image:
        return mask_luminance(_transpose(img, turn))

    return _Plan(as_is=as_is, turn=turn, build=build, save=_save_png)


# ---------------------------------------------------------------------------------------------
# Checks


def _check_payload(path: Path, role: _Role, size: int) -> None:
    if size > MAX_IMAGE_BYTES:
        raise role.error(
            f"{role.noun.capitalize()} {path} would be sent as {size / 2**20:.1f} MB; the API"
            f" takes at most {MAX_IMAGE_BYTES / 2**20:.0f} MB ({MAX_IMAGE_BYTES} bytes)."
            " Save it as JPEG or downscale it.",
            reason="IMAGE_FILE_EXCEEDS_MAX_SIZE",
        )


def _check_mask_size(
    job: Job,
    mask_size: tuple[int, int],
    stored_mask_size: tuple[int, int],
    image_size: tuple[int, int],
    orientation: int,
) -> None:
    if mask_size == image_size:
        return
    mw, mh = mask_size
    iw, ih = image_size
    turned = ""
    if orientation != 1:
        sw, sh = _oriented_size(image_size, orientation)
        turned = f" after its EXIF orientation (stored as {sw}x{sh})"
    stored = f" (stored as {stored_mask_size[0]}x{stored_mask_size[1]})"
    raise MaskError(
        f"{job.name}: mask {job.mask_path} is {mw}x{mh}"
        f"{stored if stored_mask_size != mask_size else ''} but the image is {iw}x{ih}{turned}."
        f" Resize the mask to {iw}x{ih}.",
        reason="MASK_SIZE_MISMATCH",
    )


def _drawn_mask(
    job: Job, stored_size: tuple[int, int], image_size: tuple[int, int], orientation: int
) -> tuple[Image.Image, list[str]]:
    """The job's recipe drawn over its mask file (if any), operations applied."""
    assert job.mask_recipe is not None
    file_mask = None
    if job.mask_path is not None:
        mask_path = Path(job.mask_path)
        with _open(mask_path, _MASK, MAX_PIXELS) as raw_mask:
            built = _mask_plan(raw_mask, image_size, orientation).build(raw_mask)
            _check_mask_size(job, built.size, raw_mask.size, image_size, orientation)
            file_mask = built.copy() if built is raw_mask else built  # outlives the file
    try:
        return render_mask(
            job.mask_recipe,
            file_mask,
            image_size,
            stored_size=stored_size,
            turn=lambda img: _transpose(img, orientation),
        )
    except MaskError as exc:
        raise MaskError(f"{job.name}: {exc}", reason=exc.reason) from exc


def _prepare_drawn(
    job: Job,
    stored_size: tuple[int, int],
    image_size: tuple[int, int],
    orientation: int,
    image_payload: int,
) -> PreparedJob:
    """`prepare_job` for a job whose mask is drawn: the drawn pixels are checked and hashed."""
    assert job.mask_recipe is not None
    mask, warnings = _drawn_mask(job, stored_size, image_size, orientation)
    counter = _ByteCounter()
    _save_png(mask, counter)  # type: ignore[arg-type]
    what = f"drawn from {job.mask_source}" + (
        f" ({job.mask_recipe.ops.describe()})" if job.mask_recipe.ops.any else ""
    )
    _check_payload(Path(f"{job.name} (mask {what})"), _MASK, counter.count)
    checked = ImageOps.invert(mask) if job.params.inpainting_mask_invert else mask
    _, high = checked.getextrema()
    if not (isinstance(high, int | float) and high > EMPTY_MASK_LEVEL):
        hint = (
            "inpainting_mask_invert=1 turns it into an empty mask. Set inpainting_mask_invert=0."
            if job.params.inpainting_mask_invert
            else "Check the shapes, or use a smaller --mask-shrink."
        )
        raise MaskError(
            f"{job.name}: the mask {what} is empty: nothing would be repainted. {hint}",
            reason="EMPTY_MASK",
        )
    digest = hashlib.sha256(f"L {mask.size[0]}x{mask.size[1]}\n".encode())
    digest.update(mask.tobytes())
    return PreparedJob(
        job=job,
        job_key=job_key_for(_sha256(Path(job.image_path)), digest.hexdigest(), job.params),
        width=image_size[0],
        height=image_size[1],
        mask_coverage_pct=round(mask_coverage(checked), 4),
        image_bytes=image_payload,
        mask_bytes=counter.count,
        mask_warnings=tuple(warnings),
    )


def _check_not_empty(job: Job, mask_path: Path, mask: Image.Image) -> None:
    _, high = mask.getextrema()
    if isinstance(high, int | float) and high > EMPTY_MASK_LEVEL:
        return
    if job.params.inpainting_mask_invert:
        what = (
            "is all white, and inpainting_mask_invert=1 turns it into an empty mask: nothing"
            " would be repainted. Set inpainting_mask_invert=0 or fix the mask."
        )
    else:
        what = (
            "is empty (all black): nothing would be repainted. Paint the area to repaint white,"
            " or set inpainting_mask_invert=1 if black marks it."
        )
    raise MaskError(f"{job.name}: mask {mask_path} {what}", reason="EMPTY_MASK")


# ---------------------------------------------------------------------------------------------
# Small helpers


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
