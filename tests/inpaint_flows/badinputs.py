"""The bad-input corpus: writes every kind of awkward input into a folder, with what must happen.

Importable by any test (`from tests.inpaint_flows.badinputs import write_file_cases, ...`):

- `FILE_KINDS`: the table of file kinds and the outcome each must get.
- `write_file_cases(folder)`: one image (and mask) per kind, each a `FileCase` whose `expect`
  says what `prepare_job` must do: `valid` (and the size and mask coverage it must report) or
  `invalid` (the error class, the reason token and a distinctive piece of the message).
- `write_manifest_corpus(root)`: a CSV manifest listing every file case plus rows that only a
  manifest can get wrong (bad values, paths to nowhere, duplicates, `../` paths, one image on
  several rows); `expectations` maps each job name to its `Expect`, through discovery and
  preparation together.
- `write_pair_folder(root)` / `write_split_folder(root)`: the two folder layouts with missing and
  ambiguous masks, Unicode and spaces, colliding names, hidden and non-image files.
- `write_bad_manifests(root)`: manifests that must be refused as a whole (`ManifestError`).

Big files (a > 16 MP image, a decompression bomb, a > 30 MB image) are made once per process
and cached as bytes; the whole corpus is written in well under a second after that.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import struct
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from inpaint_flows.errors import ImageError, InputError, ManifestError, MaskError
from inpaint_flows.models import InpaintParams, Job

W, H = 64, 48  # the size of every small image in the corpus

__all__ = [
    "FILE_KINDS",
    "INVALID_KINDS",
    "VALID_KINDS",
    "BadManifest",
    "Expect",
    "FileCase",
    "FolderCorpus",
    "ManifestCorpus",
    "write_bad_manifests",
    "write_file_cases",
    "write_manifest_corpus",
    "write_pair_folder",
    "write_split_folder",
]


# Every file kind and what `prepare_job` must say: "valid", or the reason token it refuses with.
FILE_KINDS: dict[str, str] = {
    "zero_byte_image": "EMPTY_FILE",
    "zero_byte_mask": "EMPTY_FILE",
    "not_an_image": "INVALID_IMAGE_FORMAT",
    "mask_not_an_image": "INVALID_IMAGE_FORMAT",
    "unsupported_format_ico": "INVALID_IMAGE_FORMAT",
    "truncated_png": "CORRUPT_IMAGE",
    "truncated_jpeg": "CORRUPT_IMAGE",
    "truncated_mask": "CORRUPT_IMAGE",
    "animated_gif": "INVALID_IMAGE_FORMAT",
    "over_16_megapixels": "IMAGE_EXCEEDS_MAX_RESOLUTION",
    "decompression_bomb": "IMAGE_EXCEEDS_MAX_RESOLUTION",
    "payload_over_30_mb": "IMAGE_FILE_EXCEEDS_MAX_SIZE",
    "image_path_to_nowhere": "IMAGE_NOT_FOUND",
    "mask_path_to_nowhere": "MASK_NOT_FOUND",
    "missing_mask": "MISSING_MASK",
    "mask_of_different_size": "MASK_SIZE_MISMATCH",
    "empty_mask": "EMPTY_MASK",
    "nearly_empty_mask": "EMPTY_MASK",
    "empty_after_invert": "EMPTY_MASK",
    "exif_rotated_mask_fits_neither": "MASK_SIZE_MISMATCH",
    "all_white_mask": "valid",
    "soft_mask": "valid",
    "mask_with_alpha": "valid",
    "opaque_rgba_mask": "valid",
    "one_bit_mask": "valid",
    "jpeg_mask": "valid",
    "palette_image": "valid",
    "palette_transparent_image": "valid",
    "16_bit_grey_image": "valid",
    "16_bit_rgb_image": "valid",
    "cmyk_jpeg": "valid",
    "grey_jpeg": "valid",
    "la_image": "valid",
    "rgba_image": "valid",
    "exif_rotated_jpeg_unrotated_mask": "valid",
    "exif_rotated_jpeg_rotated_mask": "valid",
    "webp_image": "valid",
    "bmp_image": "valid",
    "tiff_image": "valid",
    "jpeg_named_png": "valid",
    "unicode_and_spaces": "valid",
}
VALID_KINDS: tuple[str, ...] = tuple(k for k, v in FILE_KINDS.items() if v == "valid")
INVALID_KINDS: tuple[str, ...] = tuple(k for k, v in FILE_KINDS.items() if v != "valid")


@dataclass(frozen=True)
class Expect:
    """What must happen to one input.

    For `valid`: `size` is (width, height) after EXIF orientation and `coverage` the mask
    coverage in percent (checked to within 1 point). For `invalid`: the error class `prepare_job`
    raises, its `reason` token and a `message` fragment only that kind produces.
    """

    status: Literal["valid", "invalid"]
    reason: str | None = None
    error: type[InputError] | None = None
    message: str | None = None
    size: tuple[int, int] | None = None
    coverage: float | None = None


def valid(size: tuple[int, int] = (W, H), coverage: float = 50.0) -> Expect:
    return Expect("valid", size=size, coverage=coverage)


def invalid(error: type[InputError], reason: str, message: str) -> Expect:
    return Expect("invalid", reason=reason, error=error, message=message)


@dataclass(frozen=True)
class FileCase:
    kind: str
    image: Path
    mask: Path | None
    expect: Expect
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def job(self, defaults: InpaintParams | None = None) -> Job:
        """The job discovery would make for this case (no discovery problem)."""
        params = (defaults or InpaintParams()).with_overrides(dict(self.overrides))
        return Job(
            name=self.image.name,
            image_path=str(self.image),
            mask_path=None if self.mask is None else str(self.mask),
            params=params,
            output_stem=self.kind,
        )


# ---------------------------------------------------------------------------------------------
# Pixels


def _noise(w: int = W, h: int = H, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _rgb(w: int = W, h: int = H, seed: int = 0) -> Image.Image:
    return Image.fromarray(_noise(w, h, 3, seed), "RGB")


def _half_mask(w: int = W, h: int = H) -> Image.Image:
    """White on the left half: 50 % coverage."""
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = 255
    return Image.fromarray(mask, "L")


def _encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: Any) -> bytes:
    """A PNG written by hand, streaming `rows` (bytes per row, without filter byte)."""
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(b"\0" + row) for row in rows]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


@functools.cache
def _bomb_png() -> bytes:
    """20000x20000 one-bit PNG of zeros: ~50 kB on disk, 400 megapixels decoded."""
    side = 20_000
    row = bytes(side // 8)
    return _raw_png(side, side, 1, 0, (row for _ in range(side)))


@functools.cache
def _over_16mp_png() -> bytes:
    """5000x4000 = 20 MP (> 16 MP), one colour: a few kB."""
    return _encode(Image.new("L", (5000, 4000), 128), "PNG")


@functools.cache
def _over_30mb_png() -> bytes:
    """3300x3300 RGB noise stored uncompressed: 10.9 MP (within 16 MP) but ~32.7 MB (> 30 MB)."""
    return _encode(_rgb(3300, 3300, seed=7), "PNG", compress_level=0)


def _rgb16_png() -> bytes:
    """A 16-bit-per-channel RGB PNG: left half 0x8000 grey (must read as 128), right half black."""
    row = np.zeros((W, 3), ">u2")
    row[: W // 2] = 0x8000
    return _raw_png(W, H, 16, 2, (row.tobytes() for _ in range(H)))


def _exif_rotated_jpeg() -> bytes:
    """Stored 64x48 with EXIF orientation 6: shown 48x64 (turned 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_rgb(), "JPEG", quality=90, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (W, H), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# File cases


def write_file_cases(folder: Path) -> list[FileCase]:
    """Write one input per kind into `folder`; returns the cases, in a stable order."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[FileCase] = []

    def put(name: str, data: bytes | Image.Image, fmt: str = "PNG", **kwargs: Any) -> Path:
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else _encode(data, fmt, **kwargs))
        return path

    good_mask = put("half_mask.png", _half_mask())
    good_image = put("good.png", _rgb())

    def case(
        kind: str,
        image: Path,
        mask: Path | None,
        expect: Expect,
        **overrides: Any,
    ) -> None:
        cases.append(FileCase(kind, image, mask, expect, overrides))

    # --- refused: the file itself ---------------------------------------------------------
    case(
        "zero_byte_image",
        put("zero_byte.png", b""),
        good_mask,
        invalid(ImageError, "EMPTY_FILE", "is empty (0 bytes)"),
    )
    case(
        "zero_byte_mask",
        good_image,
        put("zero_byte_mask.png", b""),
        invalid(MaskError, "EMPTY_FILE", "is empty (0 bytes)"),
    )
    case(
        "not_an_image",
        put("notes.png", b"these are my notes, not a picture\n"),
        good_mask,
        invalid(ImageError, "INVALID_IMAGE_FORMAT", "is not a PNG, JPEG or WEBP"),
    )
    case(
        "mask_not_an_image",
        good_image,
        put("html_mask.png", b"<html>404</html>"),
        invalid(MaskError, "INVALID_IMAGE_FORMAT", "is not a PNG, JPEG or WEBP"),
    )
    case(
        "unsupported_format_ico",
        put("icon.png", _rgb(32, 32), "ICO"),
        good_mask,
        invalid(ImageError, "INVALID_IMAGE_FORMAT", "BMP, TIFF and GIF are converted"),
    )
    png = _encode(_rgb(), "PNG")
    case(
        "truncated_png",
        put("truncated.png", png[: len(png) // 2]),
        good_mask,
        invalid(ImageError, "CORRUPT_IMAGE", "damaged or truncated"),
    )
    jpeg = _encode(_rgb(), "JPEG")
    case(
        "truncated_jpeg",
        put("truncated.jpg", jpeg[: len(jpeg) // 2]),
        good_mask,
        invalid(ImageError, "CORRUPT_IMAGE", "damaged or truncated"),
    )
    mask_png = _encode(Image.fromarray(_noise(channels=1), "L"), "PNG")
    case(
        "truncated_mask",
        good_image,
        put("truncated_mask.png", mask_png[: len(mask_png) // 2]),
        invalid(MaskError, "CORRUPT_IMAGE", "damaged or truncated"),
    )
    case(
        "animated_gif",
        put("animated.gif", _animated_gif()),
        good_mask,
        invalid(ImageError, "INVALID_IMAGE_FORMAT", "has 3 frames"),
    )
    case(
        "over_16_megapixels",
        put("huge.png", _over_16mp_png()),
        good_mask,
        invalid(ImageError, "IMAGE_EXCEEDS_MAX_RESOLUTION", "20.0 megapixels"),
    )
    case(
        "decompression_bomb",
        put("bomb.png", _bomb_png()),
        good_mask,
        invalid(ImageError, "IMAGE_EXCEEDS_MAX_RESOLUTION", "decompression bomb"),
    )
    case(
        "payload_over_30_mb",
        put("heavy.png", _over_30mb_png()),
        good_mask,
        invalid(ImageError, "IMAGE_FILE_EXCEEDS_MAX_SIZE", "at most 30 MB"),
    )
    case(
        "image_path_to_nowhere",
        folder / "nowhere.png",
        good_mask,
        invalid(ImageError, "IMAGE_NOT_FOUND", "does not exist"),
    )
    case(
        "mask_path_to_nowhere",
        good_image,
        folder / "nowhere_mask.png",
        invalid(MaskError, "MASK_NOT_FOUND", "does not exist"),
    )
    case(
        "missing_mask",
        put("maskless.png", _rgb()),
        None,
        invalid(MaskError, "MISSING_MASK", "no mask"),
    )

    # --- refused: the mask does not fit ---------------------------------------------------
    case(
        "mask_of_different_size",
        good_image,
        put("small_mask.png", _half_mask(32, 24)),
        invalid(MaskError, "MASK_SIZE_MISMATCH", "is 32x24 but the image is 64x48"),
    )
    case(
        "empty_mask",
        good_image,
        put("black_mask.png", Image.new("L", (W, H), 0)),
        invalid(MaskError, "EMPTY_MASK", "is empty (all black)"),
    )
    case(
        "nearly_empty_mask",
        good_image,
        put("faint_mask.png", Image.new("L", (W, H), 1)),
        invalid(MaskError, "EMPTY_MASK", "is empty (all black)"),
    )
    white = put("white_mask.png", Image.new("L", (W, H), 255))
    case(
        "empty_after_invert",
        good_image,
        white,
        invalid(MaskError, "EMPTY_MASK", "inpainting_mask_invert=1"),
        inpainting_mask_invert=1,
    )
    rotated = put("rotated.jpg", _exif_rotated_jpeg())
    case(
        "exif_rotated_mask_fits_neither",
        rotated,
        put("odd_mask.png", _half_mask(50, 50)),
        invalid(MaskError, "MASK_SIZE_MISMATCH", "after its EXIF orientation (stored as 64x48)"),
    )

    # --- accepted, converted --------------------------------------------------------------
    case("all_white_mask", good_image, white, valid(coverage=100.0))
    case(
        "soft_mask",
        good_image,
        put("grey_mask.png", Image.new("L", (W, H), 128)),
        valid(coverage=128 / 255 * 100),
    )
    alpha = np.zeros((H, W, 4), np.uint8)  # black everywhere; alpha opaque on the left half
    alpha[:, : W // 2, 3] = 255
    case(
        "mask_with_alpha",
        good_image,
        put("alpha_mask.png", Image.fromarray(alpha, "RGBA")),
        valid(coverage=50.0),
    )
    opaque = np.full((H, W, 4), 255, np.uint8)  # fully opaque: luminance counts
    opaque[:, W // 2 :, :3] = 0
    case(
        "opaque_rgba_mask",
        good_image,
        put("opaque_mask.png", Image.fromarray(opaque, "RGBA")),
        valid(coverage=50.0),
    )
    case("one_bit_mask", good_image, put("bit_mask.png", _half_mask().convert("1")), valid())
    case("jpeg_mask", good_image, put("jpeg_mask.jpg", _half_mask(), "JPEG", quality=95), valid())
    case("palette_image", put("palette.png", _rgb().quantize(16)), good_mask, valid())
    palette_t = _rgb().quantize(16)
    palette_t.info["transparency"] = 0
    case(
        "palette_transparent_image",
        put("palette_t.png", palette_t, transparency=0),
        good_mask,
        valid(),
    )
    gray16 = np.full((H, W), 0x8000, np.uint16)
    case("16_bit_grey_image", put("grey16.png", Image.fromarray(gray16)), good_mask, valid())
    case("16_bit_rgb_image", put("rgb16.png", _rgb16_png()), good_mask, valid())
    cmyk = Image.new("CMYK", (W, H), (0, 255, 255, 0))  # pure red
    case("cmyk_jpeg", put("cmyk.jpg", cmyk, "JPEG", quality=95), good_mask, valid())
    case("grey_jpeg", put("grey.jpg", _rgb().convert("L"), "JPEG"), good_mask, valid())
    la = Image.fromarray(np.dstack([_noise(channels=1), _noise(channels=1, seed=1)]), "LA")
    case("la_image", put("la.png", la), good_mask, valid())
    case("rgba_image", put("rgba.png", _rgb().convert("RGBA")), good_mask, valid())
    case(
        "exif_rotated_jpeg_unrotated_mask",
        rotated,
        put("stored_mask.png", _half_mask()),
        valid(size=(H, W)),
    )
    case(
        "exif_rotated_jpeg_rotated_mask",
        rotated,
        put("shown_mask.png", _half_mask(H, W)),
        valid(size=(H, W)),
    )
    case("webp_image", put("photo.webp", _rgb(), "WEBP", quality=90), good_mask, valid())
    case("bmp_image", put("scan.bmp", _rgb(), "BMP"), good_mask, valid())
    case("tiff_image", put("scan.tiff", _rgb(), "TIFF"), good_mask, valid())
    case("jpeg_named_png", put("actually_jpeg.png", _rgb(), "JPEG"), good_mask, valid())
    unicode_dir = folder / "ça va"
    unicode_dir.mkdir(exist_ok=True)
    case(
        "unicode_and_spaces",
        put("ça va/画像 été 1.png", _rgb()),
        put("ça va/画像 été 1_mask.png", _half_mask()),
        valid(),
    )
    table = {c.kind: c.expect.reason or "valid" for c in cases}
    assert table == FILE_KINDS and list(table) == list(FILE_KINDS), "FILE_KINDS is out of date"
    return cases


# ---------------------------------------------------------------------------------------------
# Manifests


@dataclass(frozen=True)
class ManifestCorpus:
    path: Path
    expectations: dict[str, Expect]  # job name -> what must happen
    stems: dict[str, str]  # job name -> output stem, where the exact stem matters


def _row_names(rows: list[dict[str, str]], base: Path) -> list[str]:
    """Job names as `discover_jobs` makes them: the path relative to the manifest's folder,
    with ` (row N)` when several rows name the same file, `row N` when the cell is empty."""
    rels = [
        Path(os.path.relpath(os.path.normpath(base / r["image"]), base)).as_posix()
        if r.get("image")
        else ""
        for r in rows
    ]
    counts = Counter(rels)
    return [
        f"row {n}" if not rel else f"{rel} (row {n})" if counts[rel] > 1 else rel
        for n, rel in enumerate(rels, start=2)
    ]


def write_manifest_corpus(root: Path) -> ManifestCorpus:
    """`root/batch/manifest.csv` over every file case plus manifest-only mistakes."""
    batch = root / "batch"
    cases = write_file_cases(batch / "files")
    (root / "outside.png").write_bytes(_encode(_rgb(seed=3), "PNG"))
    elsewhere = root / "elsewhere.png"
    elsewhere.write_bytes(_encode(_rgb(seed=4), "PNG"))
    good = "files/good.png"
    mask = "files/half_mask.png"
    columns = ["image", "mask", "steps", "guidance_scale", "inpainting_mask_invert", "loras"]
    rows: list[dict[str, str]] = []
    expects: list[Expect] = []

    def row(expect: Expect, **cells: str) -> None:
        rows.append(cells)
        expects.append(expect)

    for case in cases:
        cells = {"image": case.image.relative_to(batch).as_posix()}
        if case.mask is not None:
            cells["mask"] = case.mask.relative_to(batch).as_posix()
        cells.update({k: str(v) for k, v in case.overrides.items()})
        row(case.expect, **cells)

    param = ManifestError
    row(
        invalid(
            param, "INVALID_PARAMETER", "'steps' = '500': Input should be less than or equal to 100"
        ),
        image="files/good.png",
        mask=mask,
        steps="500",
    )
    row(
        invalid(param, "INVALID_PARAMETER", "'guidance_scale' = 'high'"),
        image=good,
        mask=mask,
        guidance_scale="high",
    )
    row(
        invalid(param, "INVALID_PARAMETER", "'inpainting_mask_invert' = '2'"),
        image=good,
        mask=mask,
        inpainting_mask_invert="2",
    )
    row(
        invalid(param, "INVALID_PARAMETER", "'loras' = '[oops' is not JSON"),
        image=good,
        mask=mask,
        loras="[oops",
    )
    row(
        invalid(param, "INVALID_PARAMETER", "[0].strength Input should be less than or equal to 1"),
        image=good,
        mask=mask,
        loras='[{"model_name": "detail", "strength": 2}]',
    )
    row(
        invalid(ImageError, "IMAGE_NOT_FOUND", "image 'files/gone.png' does not exist"),
        image="files/gone.png",
        mask=mask,
    )
    row(
        invalid(MaskError, "MASK_NOT_FOUND", "mask 'files/gone_mask.png' does not exist"),
        image=good,
        mask="files/gone_mask.png",
        steps="31",
    )
    row(invalid(ManifestError, "EMPTY_IMAGE_CELL", "the image cell is empty"), mask=mask)
    # one image on several rows: distinct names and stems; the exact repeat is a duplicate
    row(valid(), image=good, mask=mask, steps="30")
    row(
        invalid(param, "DUPLICATE_ROW", "same image, mask and parameters as row"),
        image=good,
        mask=mask,
        steps="30",
    )
    row(
        valid(),
        image=good,
        mask=mask,
        steps="40",
        # a LoRA the local server's catalogue lists (an unknown name is refused, as on Novita)
        loras='[{"model_name": "add_detail_44319", "strength": 0.5}]',
    )
    row(valid(), image="../outside.png", mask=mask)  # reads outside; writes inside
    row(valid(), image=str(elsewhere), mask=mask)  # an absolute path
    batch.mkdir(parents=True, exist_ok=True)
    path = batch / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    names = _row_names(rows, batch)
    expectations = dict(zip(names, expects, strict=True))
    stems = {"../outside.png": "__/outside", "../elsewhere.png": "__/elsewhere"}
    return ManifestCorpus(path=path, expectations=expectations, stems=stems)


@dataclass(frozen=True)
class BadManifest:
    kind: str
    path: Path
    message: str  # a distinctive fragment of the ManifestError
    mask: Path | None = None  # the `mask=` to pass, if any


def write_bad_manifests(root: Path) -> list[BadManifest]:
    """Manifests `discover_jobs` must refuse as a whole with `ManifestError`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.png").write_bytes(_encode(_rgb(), "PNG"))
    (root / "a_mask.png").write_bytes(_encode(_half_mask(), "PNG"))
    out: list[BadManifest] = []

    def put(kind: str, name: str, data: bytes | str, message: str) -> None:
        path = root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        out.append(BadManifest(kind, path, message))

    put(
        "missing_image_column",
        "no_image.csv",
        "picture,mask\na.png,a_mask.png\n",
        "unknown column(s) 'picture'",
    )
    put("only_mask_column", "only_mask.csv", "mask\na_mask.png\n", "has no 'image' column")
    put("missing_mask_column", "no_mask.csv", "image\na.png\n", "has no 'mask' column")
    put(
        "unknown_column_typo",
        "typo.csv",
        "image,mask,stpes\na.png,a_mask.png,30\n",
        "'stpes' (did you mean 'steps'?)",
    )
    put(
        "duplicate_column",
        "twice.csv",
        "image,mask,steps,steps\na.png,a_mask.png,1,2\n",
        "steps appear twice",
    )
    put("semicolon_separated", "semicolon.csv", "image;mask\na.png;a_mask.png\n", "use commas")
    put("empty_file", "empty.csv", "", "is empty")
    put(
        "not_utf8",
        "latin1.csv",
        "image,mask,prompt\na.png,a_mask.png,caf\xe9\n".encode("latin-1"),
        "is not UTF-8",
    )
    put("broken_csv_quotes", "quotes.csv", 'image,mask\n"a.png,a_mask.png\n', "not valid CSV")
    put(
        "jsonl_bad_line",
        "bad.jsonl",
        '{"image": "a.png", "mask": "a_mask.png"}\n{"image": \n',
        "line 2 is not valid JSON",
    )
    put("jsonl_not_object", "list.jsonl", '["a.png", "a_mask.png"]\n', "is not a JSON object")
    put(
        "jsonl_unknown_key",
        "keys.jsonl",
        '{"image": "a.png", "mask": "a_mask.png", "sed": 1}\n',
        "'sed' (did you mean 'seed'?)",
    )
    return out


# ---------------------------------------------------------------------------------------------
# Folders


@dataclass(frozen=True)
class FolderCorpus:
    source: Path
    expectations: dict[str, Expect]  # job name -> what must happen (discovery + preparation)
    stems: dict[str, str]  # job name -> expected output stem
    ignored: tuple[str, ...]  # files that must not become jobs


def write_pair_folder(root: Path) -> FolderCorpus:
    """`name.ext` + `name_mask.ext` pairs, with everything that goes wrong with them."""
    src = root / "pairs"
    (src / "ça va").mkdir(parents=True, exist_ok=True)
    (src / ".hidden").mkdir(exist_ok=True)

    def put(rel: str, img: Image.Image | bytes, fmt: str = "PNG") -> None:
        (src / rel).write_bytes(img if isinstance(img, bytes) else _encode(img, fmt))

    put("a.png", _rgb())
    put("a.jpg", _rgb(), "JPEG")  # same stem: both use a_mask.png, stems must differ
    put("a_mask.png", _half_mask())
    put("ça va/photo 1.png", _rgb())
    put("ça va/photo 1_mask.webp", _half_mask(), "WEBP")
    put("lonely.png", _rgb())  # no mask
    put("CON.png", _rgb())  # a Windows device name
    put("CON_mask.png", _half_mask())
    put("two.png", _rgb())  # two masks, neither with the image's extension
    put("two_mask.jpg", _half_mask(), "JPEG")
    put("two_mask.webp", _half_mask(), "WEBP")
    put(".DS_Store", b"\0\0\0\1Bud1")
    put("notes.txt", b"not an image")
    put(".hidden/secret.png", _rgb())
    put("orphan_mask.png", _half_mask())  # a mask without image: not a job
    expectations = {
        "a.jpg": valid(),
        "a.png": valid(),
        "ça va/photo 1.png": valid(),
        "lonely.png": invalid(MaskError, "MISSING_MASK", "expected lonely_mask.png"),
        "CON.png": valid(),
        "two.png": invalid(MaskError, "AMBIGUOUS_MASK", "several masks fit"),
    }
    stems = {
        "a.jpg": "a_jpg",
        "a.png": "a_png",
        "ça va/photo 1.png": "ça va/photo 1",
        "CON.png": "_CON",
    }
    ignored = (".DS_Store", "notes.txt", ".hidden/secret.png", "orphan_mask.png")
    return FolderCorpus(src, expectations, stems, ignored)


def write_split_folder(root: Path) -> FolderCorpus:
    """`images/` + `masks/`, matched by relative path and stem in any image format."""
    src = root / "split"
    for sub in ("images/sub dir", "masks/sub dir"):
        (src / sub).mkdir(parents=True, exist_ok=True)

    def put(rel: str, img: Image.Image | bytes, fmt: str = "PNG") -> None:
        (src / rel).write_bytes(img if isinstance(img, bytes) else _encode(img, fmt))

    put("images/x.jpg", _rgb(), "JPEG")
    put("masks/x.png", _half_mask())  # another extension than the image
    put("images/sub dir/y.webp", _rgb(), "WEBP")
    put("masks/sub dir/y.png", _half_mask())
    put("images/z.png", _rgb())
    put("masks/z.png", _half_mask())  # the image's extension wins over z.jpg
    put("masks/z.jpg", Image.new("L", (W, H), 0), "JPEG")
    put("images/nomask.png", _rgb())
    put("images/.DS_Store", b"\0")
    put("images/readme.md", b"# photos")
    expectations = {
        "x.jpg": valid(),
        "sub dir/y.webp": valid(),
        "z.png": valid(),
        "nomask.png": invalid(MaskError, "MISSING_MASK", "expected masks/nomask.png"),
    }
    stems = {"x.jpg": "x", "sub dir/y.webp": "sub dir/y", "z.png": "z", "nomask.png": "nomask"}
    return FolderCorpus(src, expectations, stems, ("images/.DS_Store", "images/readme.md"))
