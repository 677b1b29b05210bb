"""Reading, checking and encoding images and masks, over the bad-input corpus and on its own."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from inpaint_flows import images, pixels
from inpaint_flows.errors import ImageError, InputError, MaskError
from inpaint_flows.images import (
    encode_payload,
    load_image,
    load_mask,
    mask_coverage,
    prepare_job,
)
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.models import InpaintParams, Job, job_key_for
from tests.inpaint_flows.badinputs import (
    FILE_KINDS,
    VALID_KINDS,
    FileCase,
    ManifestCorpus,
    write_file_cases,
    write_manifest_corpus,
)

DEFAULTS = InpaintParams()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FileCase]:
    cases = write_file_cases(tmp_path_factory.mktemp("cases"))
    return {c.kind: c for c in cases}


KINDS = list(FILE_KINDS)


def _decode(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def _case_job(case: FileCase) -> Job:
    return case.job(DEFAULTS)


# ---------------------------------------------------------------------------------------------
# The corpus, table-driven


def test_corpus_has_at_least_fifteen_refused_kinds_and_ten_accepted() -> None:
    assert len(VALID_KINDS) >= 10 and len(KINDS) - len(VALID_KINDS) >= 15


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_job_over_the_corpus(kind: str, corpus: dict[str, FileCase]) -> None:
    case = corpus[kind]
    expect = case.expect
    job = _case_job(case)
    if expect.status == "invalid":
        assert expect.error is not None and expect.message is not None
        with pytest.raises(expect.error) as info:
            prepare_job(job)
        assert info.value.reason == expect.reason
        assert expect.message in str(info.value)
        return
    prepared = prepare_job(job)
    assert (prepared.width, prepared.height) == expect.size
    assert expect.coverage is not None
    assert prepared.mask_coverage_pct == pytest.approx(expect.coverage, abs=1.0)
    assert prepared.job == job


@pytest.mark.parametrize("kind", VALID_KINDS)
def test_what_is_sent_is_what_was_checked(kind: str, corpus: dict[str, FileCase]) -> None:
    """Sizes, byte counts and mask coverage of the payload match the prepared job."""
    job = _case_job(corpus[kind])
    prepared = prepare_job(job)
    image_b64, mask_b64 = encode_payload(job)
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


def test_checking_and_encoding_never_modify_the_inputs(corpus: dict[str, FileCase]) -> None:
    folder = next(iter(corpus.values())).image.parent

    def snapshot() -> dict[Path, str]:
        return {
            p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.stat().st_size < 1_000_000
        }

    before = snapshot()
    for case in corpus.values():
        job = _case_job(case)
        try:
            prepare_job(job)
            encode_payload(job)
        except InputError:
            pass
    assert snapshot() == before


@pytest.fixture(scope="module")
def manifest_corpus(tmp_path_factory: pytest.TempPathFactory) -> ManifestCorpus:
    return write_manifest_corpus(tmp_path_factory.mktemp("manifest"))


def test_manifest_corpus_end_to_end(manifest_corpus: ManifestCorpus) -> None:
    """Discovery then preparation gives every row its expected outcome; none stops the rest."""
    jobs = discover_jobs(manifest_corpus.path, DEFAULTS)
    outcomes: dict[str, tuple[str, str | None, str]] = {}
    for job in jobs:
        try:
            prepare_job(job)
            outcomes[job.name] = ("valid", None, "")
        except InputError as exc:
            outcomes[job.name] = ("invalid", exc.reason, str(exc))
    assert set(outcomes) == set(manifest_corpus.expectations)
    wrong = []
    for name, expect in manifest_corpus.expectations.items():
        status, reason, message = outcomes[name]
        if status != expect.status or (
            status == "invalid"
            and (reason != expect.reason or (expect.message or "") not in message)
        ):
            wrong.append((name, expect.status, expect.reason, outcomes[name]))
    assert not wrong, wrong
    assert sum(1 for o in outcomes.values() if o[0] == "valid") >= 20


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


# ---------------------------------------------------------------------------------------------
# The functions on their own


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


def test_job_key_hashes_file_bytes_and_params(corpus: dict[str, FileCase]) -> None:
    case = corpus["soft_mask"]
    job = _case_job(case)
    prepared = prepare_job(job)
    assert case.mask is not None
    expected = job_key_for(
        hashlib.sha256(case.image.read_bytes()).hexdigest(),
        hashlib.sha256(case.mask.read_bytes()).hexdigest(),
        job.params,
    )
    assert prepared.job_key == expected
    other = job.model_copy(update={"params": job.params.with_overrides({"seed": 7})})
    assert prepare_job(other).job_key != prepared.job_key


def test_re_encoded_payload_size_is_checked_against_the_limit(
    corpus: dict[str, FileCase], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _case_job(corpus["palette_image"])
    size = prepare_job(job).image_bytes
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", size - 1)
    with pytest.raises(ImageError, match="would be sent as") as info:
        prepare_job(job)
    assert info.value.reason == "IMAGE_FILE_EXCEEDS_MAX_SIZE"


def test_prepare_job_refuses_a_job_with_a_discovery_problem(corpus: dict[str, FileCase]) -> None:
    job = _case_job(corpus["soft_mask"]).model_copy(
        update={"problem": "row 3: duplicate", "problem_reason": "DUPLICATE_ROW"}
    )
    with pytest.raises(InputError, match="row 3: duplicate") as info:
        prepare_job(job)
    assert info.value.reason == "DUPLICATE_ROW"
    with pytest.raises(InputError):
        encode_payload(job)


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


def test_payload_limit_is_on_the_bytes_sent_not_their_base64(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`inpaint_flows.contract`: 30 MB applies to the decoded file, not the base64 text."""
    image, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.new("RGB", (64, 48), "red").save(image)
    Image.new("L", (64, 48), 255).save(mask)
    size = image.stat().st_size
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", size)  # base64 would be 4/3 of this
    assert prepare_job(_job(image, mask)).image_bytes == size
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", size - 1)
    with pytest.raises(ImageError, match="at most"):
        prepare_job(_job(image, mask))
