"""Reading input pictures (`pictures`): opening, refusing, orienting, converting."""

from __future__ import annotations

import base64
import builtins
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
from PIL import Image

from inpaint_flows import pictures
from inpaint_flows.errors import ImageError, MaskError
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.models import InpaintParams, Job
from inpaint_flows.payload import encode_payload
from inpaint_flows.pictures import final_mask, load_image, load_mask, mask_coverage, orientation_of
from tests.inpaint_flows.badinputs import FileCase


def test_load_image_returns_oriented_rgb_usable_after_the_file_closed(
    corpus: dict[str, FileCase],
) -> None:
    img = load_image(corpus["exif_rotated_jpeg_unrotated_mask"].image)
    assert (img.mode, img.size) == ("RGB", (48, 64))
    plain = load_image(corpus["all_white_mask"].image)
    assert plain.mode == "RGB" and plain.getpixel((0, 0)) is not None
    for kind in ("palette_transparent_image", "la_image", "cmyk_jpeg", "bmp_image", "tiff_image"):
        assert load_image(corpus[kind].image).mode == "RGB", kind


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("zero_byte_image", "EMPTY_FILE"),
        ("truncated_jpeg", "CORRUPT_IMAGE"),
        ("decompression_bomb", "IMAGE_EXCEEDS_MAX_RESOLUTION"),
        ("over_16_megapixels", "IMAGE_EXCEEDS_MAX_RESOLUTION"),
        ("image_path_to_nowhere", "IMAGE_NOT_FOUND"),
    ],
)
def test_load_image_refuses(kind: str, reason: str, corpus: dict[str, FileCase]) -> None:
    with pytest.raises(ImageError) as info:
        load_image(corpus[kind].image)
    assert info.value.reason == reason


def test_load_mask_rules(tmp_path: Path) -> None:
    stored = tmp_path / "stored.png"
    Image.new("L", (64, 48), 200).save(stored)
    assert load_mask(stored, (64, 48)).size == (64, 48)
    turned = load_mask(stored, (48, 64), image_orientation=6)
    assert turned.size == (48, 64), "a mask of the stored image is turned like the image"
    square = tmp_path / "square.png"
    Image.new("L", (40, 40), 200).save(square)
    assert load_mask(square, (40, 40), image_orientation=3).size == (40, 40)
    opaque = tmp_path / "opaque.png"
    Image.new("RGBA", (4, 4), (255, 255, 255, 255)).save(opaque)
    assert load_mask(opaque, (4, 4)).getextrema() == (255, 255), "opaque: luminance"
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (255, 255, 255, 0)).save(clear)
    assert load_mask(clear, (4, 4)).getextrema() == (0, 0), "transparent: alpha"
    with pytest.raises(MaskError) as info:
        load_mask(tmp_path / "missing.png", (4, 4))
    assert info.value.reason == "MASK_NOT_FOUND"


def test_mask_with_its_own_exif_orientation_uses_it(tmp_path: Path) -> None:
    values = np.zeros((48, 64), np.uint8)
    values[:, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "m.jpg"
    Image.fromarray(values, "L").save(path, quality=100, exif=exif.tobytes())
    mask = load_mask(path, (48, 64))
    assert mask.size == (48, 64)
    assert np.asarray(mask)[:32].mean() > 240 and np.asarray(mask)[32:].mean() < 15


def test_mask_coverage_counts_soft_values_partly() -> None:
    assert mask_coverage(Image.new("L", (10, 10), 0)) == 0.0
    assert mask_coverage(Image.new("L", (10, 10), 255)) == 100.0
    assert mask_coverage(Image.new("L", (10, 10), 51)) == pytest.approx(20.0)
    half = Image.new("L", (10, 10), 0)
    half.paste(255, (0, 0, 5, 10))
    assert mask_coverage(half) == pytest.approx(50.0)


def test_input_files_are_read_only_through_read_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One function opens input files, so serving them from elsewhere is a one-place change."""
    plain, plain_mask = tmp_path / "plain.png", tmp_path / "plain_mask.png"
    Image.new("RGB", (64, 48), "red").save(plain)  # sent as it is
    Image.new("L", (64, 48), 255).save(plain_mask)
    alpha, alpha_mask = tmp_path / "alpha.png", tmp_path / "alpha_mask.png"
    Image.new("RGBA", (64, 48), (0, 0, 255, 128)).save(alpha)  # converted, re-encoded
    Image.new("LA", (64, 48), (255, 100)).save(alpha_mask)
    contents = {p: p.read_bytes() for p in (plain, plain_mask, alpha, alpha_mask)}
    read: list[Path] = []

    @contextmanager
    def from_memory(path: str | Path) -> Iterator[BinaryIO]:
        read.append(Path(path))
        yield io.BytesIO(contents[Path(path)])

    real_open = builtins.open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        assert Path(os.fspath(file)) not in contents, f"{file} opened outside _read_source"
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(pictures, "_read_source", from_memory)
    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: guarded_open(self, *a, **k))
    for image, mask in ((plain, plain_mask), (alpha, alpha_mask)):
        job = Job(
            name=image.name,
            image_path=str(image),
            mask_path=str(mask),
            params=InpaintParams(),
            output_stem=image.stem,
        )
        prepared = prepare_job(job)
        image_b64, mask_b64 = encode_payload(job)
        assert len(base64.b64decode(image_b64)) == prepared.image_bytes
        assert len(base64.b64decode(mask_b64)) == prepared.mask_bytes
        assert final_mask(job)[0].size == load_image(image).size == (64, 48)
        assert orientation_of(image) == 1
    assert set(read) == set(contents)
