"""What is sent (`payload`): the bytes match what was checked, conversions are right."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from inpaint_flows import payload, pixels
from inpaint_flows.errors import ImageError, InputError, MaskError
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.models import InpaintParams, Job
from inpaint_flows.payload import encode_payload
from inpaint_flows.pictures import mask_coverage
from tests.inpaint_flows.badinputs import VALID_KINDS, FileCase

DEFAULTS = InpaintParams()


def _decode(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def _case_job(case: FileCase) -> Job:
    return case.job(DEFAULTS)


@pytest.mark.parametrize("kind", VALID_KINDS)
def test_what_is_sent_is_what_was_checked(kind: str, corpus: dict[str, FileCase]) -> None:
    """Sizes, byte counts and mask coverage of the payload match the prepared job."""
    job = _case_job(corpus[kind])
    prepared = prepare_job(job)
    image_b64, mask_b64 = encode_payload(job, prepared)
    assert (image_b64, mask_b64) == encode_payload(job), "the check's hashes change nothing sent"
    image_bytes, mask_bytes = base64.b64decode(image_b64), base64.b64decode(mask_b64)
    assert (len(image_bytes), len(mask_bytes)) == (prepared.image_bytes, prepared.mask_bytes)
    image, mask = _decode(image_b64), _decode(mask_b64)
    assert image.format in ("PNG", "JPEG", "WEBP") and mask.format in ("PNG", "JPEG", "WEBP")
    assert image.size == mask.size == (prepared.width, prepared.height)
    assert image.mode == "RGB", "the API gets RGB pictures"
    assert image.getexif().get(0x0112, 1) == 1, "no orientation left for the API to apply"
    sent_mask = pixels.mask_luminance(mask)
    if job.params.inpainting_mask_invert:
        sent_mask = ImageOps.invert(sent_mask)
    assert mask_coverage(sent_mask) == pytest.approx(prepared.mask_coverage_pct, abs=0.5)


def test_invalid_cases_fail_the_same_way_when_encoding(corpus: dict[str, FileCase]) -> None:
    """A file that broke after its check never reaches the API as garbage."""
    for kind in ("truncated_png", "zero_byte_mask", "decompression_bomb", "payload_over_30_mb"):
        job = _case_job(corpus[kind])
        with pytest.raises(InputError) as info:
            encode_payload(job)
        assert info.value.reason == corpus[kind].expect.reason


# ---------------------------------------------------------------------------------------------
# Conversions that must be right, not just accepted


def test_unchanged_files_are_sent_byte_for_byte(corpus: dict[str, FileCase]) -> None:
    case = corpus["all_white_mask"]  # good.png (RGB PNG) + white_mask.png (L PNG)
    image_b64, mask_b64 = encode_payload(_case_job(case))
    assert base64.b64decode(image_b64) == case.image.read_bytes()
    assert case.mask is not None and base64.b64decode(mask_b64) == case.mask.read_bytes()


def test_palette_image_is_sent_as_its_rgb_pixels(corpus: dict[str, FileCase]) -> None:
    case = corpus["palette_image"]
    image_b64, _ = encode_payload(_case_job(case))
    sent = _decode(image_b64)
    assert sent.format == "PNG" and sent.mode == "RGB"
    with Image.open(case.image) as original:
        assert np.array_equal(np.asarray(sent), np.asarray(original.convert("RGB")))


def test_sixteen_bit_images_are_scaled_not_clipped(corpus: dict[str, FileCase]) -> None:
    grey = _decode(encode_payload(_case_job(corpus["16_bit_grey_image"]))[0])
    assert grey.getpixel((0, 0)) == (128, 128, 128)  # 0x8000 / 257, not 255
    rgb = _decode(encode_payload(_case_job(corpus["16_bit_rgb_image"]))[0])
    assert rgb.getpixel((0, 0)) == (128, 128, 128)
    assert rgb.getpixel((63, 0)) == (0, 0, 0)


def test_cmyk_jpeg_becomes_the_right_rgb(corpus: dict[str, FileCase]) -> None:
    sent = _decode(encode_payload(_case_job(corpus["cmyk_jpeg"]))[0])
    assert sent.format == "JPEG", "a JPEG source is re-encoded as JPEG to stay small"
    red, green, blue = np.asarray(sent).reshape(-1, 3).mean(axis=0)
    assert red > 240 and green < 15 and blue < 15


def test_mask_with_alpha_is_sent_as_its_alpha(corpus: dict[str, FileCase]) -> None:
    _, mask_b64 = encode_payload(_case_job(corpus["mask_with_alpha"]))
    sent = _decode(mask_b64)
    assert sent.mode == "L"
    values = np.asarray(sent)
    assert (values[:, :32] == 255).all() and (values[:, 32:] == 0).all()


def test_exif_rotated_photo_and_unrotated_mask_are_sent_turned_alike(
    corpus: dict[str, FileCase],
) -> None:
    case = corpus["exif_rotated_jpeg_unrotated_mask"]
    image_b64, mask_b64 = encode_payload(_case_job(case))
    image, mask = _decode(image_b64), _decode(mask_b64)
    assert image.size == mask.size == (48, 64)
    with Image.open(case.image) as original:
        expected = np.asarray(ImageOps.exif_transpose(original), dtype=np.int16)
    assert np.abs(np.asarray(image, dtype=np.int16) - expected).mean() < 4
    # the mask's left half (stored) is the top half once turned 90 degrees clockwise
    values = np.asarray(mask)
    assert (values[:32, :] == 255).all() and (values[32:, :] == 0).all()


def test_mask_drawn_on_the_rotated_photo_is_left_alone(corpus: dict[str, FileCase]) -> None:
    case = corpus["exif_rotated_jpeg_rotated_mask"]
    _, mask_b64 = encode_payload(_case_job(case))
    assert case.mask is not None and base64.b64decode(mask_b64) == case.mask.read_bytes()


def test_re_encoded_payload_size_is_checked_against_the_limit(
    corpus: dict[str, FileCase], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _case_job(corpus["palette_image"])
    size = prepare_job(job).image_bytes
    monkeypatch.setattr(payload, "MAX_IMAGE_BYTES", size - 1)
    with pytest.raises(ImageError, match="would be sent as") as info:
        prepare_job(job)
    assert info.value.reason == "IMAGE_FILE_EXCEEDS_MAX_SIZE"


def _job(image: Path, mask: Path) -> Job:
    return Job(
        name=image.name,
        image_path=str(image),
        mask_path=str(mask),
        params=DEFAULTS,
        output_stem=image.stem,
    )


def test_phone_mpo_jpeg_is_a_jpeg_and_sent_unchanged(tmp_path: Path) -> None:
    """Many phones write MPO (a JPEG with a preview frame appended): not an animation."""
    photo, mask = tmp_path / "phone.jpg", tmp_path / "phone_mask.png"
    Image.new("RGB", (64, 48), "red").save(
        photo, "MPO", save_all=True, append_images=[Image.new("RGB", (32, 24), "blue")]
    )
    Image.new("L", (64, 48), 255).save(mask)
    job = _job(photo, mask)
    assert (prepare_job(job).width, prepare_job(job).height) == (64, 48)
    assert base64.b64decode(encode_payload(job)[0]) == photo.read_bytes()


def test_mask_changed_after_its_check_is_not_sent(tmp_path: Path) -> None:
    image, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.new("RGB", (64, 48), "red").save(image)
    Image.new("L", (64, 48), 255).save(mask)
    job = _job(image, mask)
    prepare_job(job)
    Image.new("L", (10, 10), 255).save(mask)
    with pytest.raises(MaskError, match="is 10x10 but the image is 64x48") as info:
        encode_payload(job)
    assert info.value.reason == "MASK_SIZE_MISMATCH"


@pytest.mark.parametrize("which", ["image", "mask"])
def test_a_file_changed_after_its_check_into_another_valid_picture_is_not_sent(
    tmp_path: Path, which: str
) -> None:
    """Only the bytes that were checked (and that the job key names) are ever sent."""
    image, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.new("RGB", (64, 48), "red").save(image)
    Image.new("L", (64, 48), 255).save(mask)
    job = _job(image, mask)
    prepared = prepare_job(job)
    if which == "image":
        Image.new("RGB", (64, 48), "blue").save(image)  # as valid as before, not the same
    else:
        Image.new("L", (64, 48), 128).save(mask)
    error = ImageError if which == "image" else MaskError
    changed = f"{which.capitalize()} .* changed after it was checked"
    with pytest.raises(error, match=changed) as info:
        encode_payload(job, prepared)
    assert info.value.reason == "INPUT_CHANGED"


def test_a_file_gone_after_its_check_says_so(tmp_path: Path) -> None:
    image, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.new("RGB", (64, 48), "red").save(image)
    Image.new("L", (64, 48), 255).save(mask)
    job = _job(image, mask)
    prepared = prepare_job(job)
    image.unlink()
    with pytest.raises(ImageError, match="does not exist") as info:
        encode_payload(job, prepared)
    assert info.value.reason == "IMAGE_NOT_FOUND"


def test_payload_limit_is_on_the_bytes_sent_not_their_base64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`inpaint_flows.contract`: 30 MB applies to the decoded file, not the base64 text."""
    image, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.new("RGB", (64, 48), "red").save(image)
    Image.new("L", (64, 48), 255).save(mask)
    size = image.stat().st_size
    monkeypatch.setattr(payload, "MAX_IMAGE_BYTES", size)  # base64 would be 4/3 of this
    assert prepare_job(_job(image, mask)).image_bytes == size
    monkeypatch.setattr(payload, "MAX_IMAGE_BYTES", size - 1)
    with pytest.raises(ImageError, match="at most"):
        prepare_job(_job(image, mask))
