"""Finding jobs: folder layouts, single masks and manifests (output names: test_output_names)."""

from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path, PurePosixPath

import pytest
from PIL import Image

from inpaint_flows.errors import ImageError, InputError, ManifestError, MaskError
from inpaint_flows.jobs import discover_jobs, problem_error
from inpaint_flows.models import InpaintParams, Job, LoRA
from tests.inpaint_flows.badinputs import (
    BadManifest,
    FolderCorpus,
    ManifestCorpus,
    write_bad_manifests,
    write_manifest_corpus,
    write_pair_folder,
    write_split_folder,
)

DEFAULTS = InpaintParams()
DISCOVERY_REASONS = {
    "MISSING_MASK",
    "AMBIGUOUS_MASK",
    "IMAGE_NOT_FOUND",
    "MASK_NOT_FOUND",
    "EMPTY_IMAGE_CELL",
    "INVALID_PARAMETER",
    "INVALID_ROW",
    "DUPLICATE_ROW",
}


def _png(path: Path, size: tuple[int, int] = (8, 6), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def _by_name(jobs: list[Job]) -> dict[str, Job]:
    names = [j.name for j in jobs]
    assert len(set(names)) == len(names), f"job names are not unique: {names}"
    return {j.name: j for j in jobs}


def _assert_safe_stems(jobs: list[Job]) -> None:
    stems = [j.output_stem for j in jobs]
    folded = [unicodedata.normalize("NFC", s).casefold() for s in stems]
    assert len(set(folded)) == len(folded), f"output stems collide: {stems}"
    for stem in stems:
        parts = PurePosixPath(stem).parts
        assert not PurePosixPath(stem).is_absolute(), stem
        assert ".." not in parts and "." not in parts, stem
        assert all(p and not p.startswith(".") for p in parts), stem


# ---------------------------------------------------------------------------------------------
# Folder layouts


@pytest.fixture(scope="module")
def pair_corpus(tmp_path_factory: pytest.TempPathFactory) -> FolderCorpus:
    return write_pair_folder(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def split_corpus(tmp_path_factory: pytest.TempPathFactory) -> FolderCorpus:
    return write_split_folder(tmp_path_factory.mktemp("split"))


@pytest.mark.parametrize("layout", ["pair_corpus", "split_corpus"])
def test_folder_layout_finds_every_image_once_with_its_expected_outcome(
    layout: str, request: pytest.FixtureRequest
) -> None:
    corpus: FolderCorpus = request.getfixturevalue(layout)
    jobs = _by_name(discover_jobs(corpus.source, DEFAULTS))
    assert set(jobs) == set(corpus.expectations)
    for name, expect in corpus.expectations.items():
        job = jobs[name]
        if expect.status == "valid":
            assert job.problem is None, job.problem
            assert job.mask_path is not None and Path(job.mask_path).is_file()
        else:
            assert job.problem_reason == expect.reason, name
            assert expect.message is not None and expect.message in (job.problem or "")
            assert name in (job.problem or ""), "the message must name the input"
    for name, stem in corpus.stems.items():
        assert jobs[name].output_stem == stem
    _assert_safe_stems(list(jobs.values()))


def test_pair_layout_pairs_by_stem_across_extensions(pair_corpus: FolderCorpus) -> None:
    jobs = _by_name(discover_jobs(pair_corpus.source, DEFAULTS))
    assert Path(jobs["ça va/photo 1.png"].mask_path or "").name == "photo 1_mask.webp"
    assert Path(jobs["a.jpg"].mask_path or "").name == "a_mask.png"
    assert Path(jobs["a.png"].image_path).is_absolute()


def test_split_layout_prefers_the_mask_with_the_images_extension(
    split_corpus: FolderCorpus,
) -> None:
    jobs = _by_name(discover_jobs(split_corpus.source, DEFAULTS))
    assert Path(jobs["z.png"].mask_path or "").name == "z.png"
    assert Path(jobs["x.jpg"].mask_path or "").name == "x.png"
    assert Path(jobs["sub dir/y.webp"].mask_path or "").parent.name == "sub dir"


def test_skipped_files_are_logged_but_hidden_files_silently(
    pair_corpus: FolderCorpus, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="inpaint_flows.jobs"):
        jobs = discover_jobs(pair_corpus.source, DEFAULTS)
    names = {j.name for j in jobs}
    assert not names & set(pair_corpus.ignored)
    assert "notes.txt" in caplog.text
    assert ".DS_Store" not in caplog.text


def test_jobs_come_sorted_and_discovery_is_repeatable(pair_corpus: FolderCorpus) -> None:
    first = discover_jobs(pair_corpus.source, DEFAULTS)
    assert [j.name for j in first] == sorted(j.name for j in first)
    assert discover_jobs(pair_corpus.source, DEFAULTS) == first


def test_images_folder_without_masks_reports_every_image(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "images" / "b.png")
    jobs = discover_jobs(tmp_path, DEFAULTS)
    assert [j.problem_reason for j in jobs] == ["MISSING_MASK", "MISSING_MASK"]
    assert "expected masks/a.png" in (jobs[0].problem or "")


def test_exclude_keeps_an_output_folder_inside_the_source_out(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "a_mask.png")
    _png(tmp_path / "out" / "a.png")
    jobs = discover_jobs(tmp_path, DEFAULTS, exclude=[tmp_path / "out"])
    assert [j.name for j in jobs] == ["a.png"]


def test_discovery_never_follows_symlinked_folders(tmp_path: Path) -> None:
    _png(tmp_path / "src" / "a.png")
    _png(tmp_path / "src" / "a_mask.png")
    (tmp_path / "src" / "loop").symlink_to(tmp_path / "src", target_is_directory=True)
    assert [j.name for j in discover_jobs(tmp_path / "src", DEFAULTS)] == ["a.png"]


# ---------------------------------------------------------------------------------------------
# One mask for all


def test_single_mask_serves_images_without_their_own(tmp_path: Path) -> None:
    _png(tmp_path / "src" / "a.png")
    _png(tmp_path / "src" / "b.png")
    own = _png(tmp_path / "src" / "b_mask.png")
    shared = _png(tmp_path / "shared.png")
    jobs = _by_name(discover_jobs(tmp_path / "src", DEFAULTS, mask=shared))
    assert set(jobs) == {"a.png", "b.png"}
    assert jobs["a.png"].mask_path == str(shared)
    assert jobs["b.png"].mask_path == str(own), "an image's own mask wins over the single mask"


def test_single_mask_inside_the_source_is_not_an_image(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png")
    shared = _png(tmp_path / "images" / "all.png")
    jobs = discover_jobs(tmp_path, DEFAULTS, mask=str(shared))
    assert [(j.name, j.mask_path, j.problem) for j in jobs] == [("a.png", str(shared), None)]


def test_single_mask_that_does_not_exist_stops_discovery(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    with pytest.raises(MaskError, match="does not exist") as info:
        discover_jobs(tmp_path, DEFAULTS, mask=tmp_path / "nope.png")
    assert info.value.reason == "MASK_NOT_FOUND"


def test_manifest_without_mask_column_takes_the_single_mask(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    own = _png(tmp_path / "b_own.png")
    shared = _png(tmp_path / "m.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text("image,mask\na.png,\nb.png,b_own.png\n")
    jobs = _by_name(discover_jobs(manifest, DEFAULTS, mask=shared))
    assert jobs["a.png"].mask_path == str(shared)
    assert jobs["b.png"].mask_path == str(own)
    manifest.write_text("image\na.png\n")
    assert discover_jobs(manifest, DEFAULTS, mask=shared)[0].mask_path == str(shared)


# ---------------------------------------------------------------------------------------------
# Manifests


@pytest.fixture(scope="module")
def manifest_corpus(tmp_path_factory: pytest.TempPathFactory) -> ManifestCorpus:
    return write_manifest_corpus(tmp_path_factory.mktemp("manifest"))


def test_manifest_corpus_every_row_is_a_job_and_row_mistakes_are_recorded(
    manifest_corpus: ManifestCorpus,
) -> None:
    jobs = _by_name(discover_jobs(manifest_corpus.path, DEFAULTS))
    assert set(jobs) == set(manifest_corpus.expectations)
    for name, expect in manifest_corpus.expectations.items():
        job = jobs[name]
        if expect.reason in DISCOVERY_REASONS:
            assert job.problem_reason == expect.reason, (name, job.problem)
            assert expect.message is not None and expect.message in (job.problem or ""), name
            assert isinstance(problem_error(job), expect.error or InputError)
        else:  # files are read later, by prepare_job
            assert job.problem is None, (name, job.problem)
    for name, stem in manifest_corpus.stems.items():
        assert jobs[name].output_stem == stem
    _assert_safe_stems(list(jobs.values()))


def test_manifest_bad_value_names_column_row_and_range(manifest_corpus: ManifestCorpus) -> None:
    jobs = discover_jobs(manifest_corpus.path, DEFAULTS)
    steps = next(j for j in jobs if "'steps'" in (j.problem or ""))
    row = steps.name.rsplit("row ", 1)[1].rstrip(")")
    assert f"manifest.csv row {row}:" in (steps.problem or "")
    assert "(allowed: 1..100)" in (steps.problem or "")
    assert steps.params == DEFAULTS, "a row with a bad value keeps the defaults, and is invalid"


def test_same_image_on_several_rows_gets_distinct_names_and_stems(
    manifest_corpus: ManifestCorpus,
) -> None:
    jobs = discover_jobs(manifest_corpus.path, DEFAULTS)
    good = [j for j in jobs if j.name.startswith("files/good.png (row ")]
    assert len(good) > 10
    assert len({j.output_stem for j in good}) == len(good)
    assert all(j.output_stem.startswith("files/good_png-") for j in good)


def test_manifest_paths_resolve_relative_to_the_manifest_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _png(tmp_path / "m" / "pics" / "a.png")
    _png(tmp_path / "m" / "pics" / "a_mask.png")
    (tmp_path / "m" / "list.csv").write_text("image,mask\npics/a.png,pics/a_mask.png\n")
    monkeypatch.chdir(tmp_path)
    (job,) = discover_jobs("m/list.csv", DEFAULTS)
    assert job.problem is None
    assert job.image_path == str(tmp_path / "m" / "pics" / "a.png")
    assert (job.name, job.output_stem) == ("pics/a.png", "pics/a")


def test_csv_cells_are_coerced_and_empty_cells_keep_defaults(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    _png(tmp_path / "m.png")
    lora = json.dumps([{"model_name": "detail", "strength": 0.5}]).replace('"', '""')
    (tmp_path / "list.csv").write_text(
        "\ufeffimage , mask,steps,guidance_scale,inpainting_mask_invert,prompt,loras,seed\n"
        f'a.png,m.png,30,7,1,"a red, shiny car","{lora}",\n'
        "b.png,m.png, , ,,,,-1\n",
        encoding="utf-8",
    )
    a, b = discover_jobs(tmp_path / "list.csv", DEFAULTS)
    assert a.problem is None and b.problem is None
    assert a.params.steps == 30 and isinstance(a.params.steps, int)
    assert a.params.guidance_scale == 7.0
    assert a.params.inpainting_mask_invert == 1
    assert a.params.prompt == "a red, shiny car"
    assert a.params.loras == (LoRA(model_name="detail", strength=0.5),)
    assert b.params == DEFAULTS


def test_jsonl_values_keep_their_types_and_null_means_default(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "m.png")
    lines = [
        {
            "image": "a.png",
            "mask": "m.png",
            "steps": 12,
            "loras": [{"model_name": "x", "strength": 1}],
        },
        {},
        {"image": "a.png", "mask": "m.png", "steps": None, "strength": "0.5", "prompt": ""},
        {"image": "a.png", "mask": "m.png", "steps": 101},
    ]
    text = "\n".join("" if not line else json.dumps(line) for line in lines)
    (tmp_path / "list.jsonl").write_text(text + "\n")
    first, second, third = discover_jobs(tmp_path / "list.jsonl", DEFAULTS)
    assert first.params.steps == 12 and first.params.loras == (LoRA(model_name="x", strength=1),)
    assert second.params == DEFAULTS.with_overrides({"strength": 0.5})
    assert third.problem_reason == "INVALID_PARAMETER"
    assert "list.jsonl row 4: column 'steps' = 101" in (third.problem or "")
    assert {j.name for j in (first, second, third)} == {
        "a.png (row 1)",
        "a.png (row 3)",
        "a.png (row 4)",
    }


def test_csv_row_numbers_are_spreadsheet_rows_even_with_multiline_cells(tmp_path: Path) -> None:
    _png(tmp_path / "m.png")
    (tmp_path / "list.csv").write_text(
        'image,mask,prompt\na.png,m.png,"two\nlines"\n\ngone.png,m.png,x\n'
    )
    jobs = discover_jobs(tmp_path / "list.csv", DEFAULTS)
    gone = next(j for j in jobs if j.name == "gone.png")
    assert "list.csv row 4:" in (gone.problem or ""), "blank rows still count, as in a spreadsheet"


def test_row_with_more_cells_than_the_header_is_invalid_but_the_rest_go_on(
    tmp_path: Path,
) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "m.png")
    (tmp_path / "list.csv").write_text("image,mask\na.png,m.png,oops\na.png,m.png\n")
    bad, good = discover_jobs(tmp_path / "list.csv", DEFAULTS)
    assert bad.problem_reason == "INVALID_ROW" and "double quotes" in (bad.problem or "")
    assert good.problem is None


@pytest.fixture(scope="module")
def bad_manifests(tmp_path_factory: pytest.TempPathFactory) -> list[BadManifest]:
    return write_bad_manifests(tmp_path_factory.mktemp("bad_manifests"))


@pytest.mark.parametrize(
    "kind",
    [
        "missing_image_column",
        "only_mask_column",
        "missing_mask_column",
        "unknown_column_typo",
        "duplicate_column",
        "semicolon_separated",
        "empty_file",
        "not_utf8",
        "broken_csv_quotes",
        "jsonl_bad_line",
        "jsonl_not_object",
        "jsonl_unknown_key",
    ],
)
def test_unusable_manifest_is_refused_as_a_whole(
    kind: str, bad_manifests: list[BadManifest]
) -> None:
    (case,) = [c for c in bad_manifests if c.kind == kind]
    with pytest.raises(ManifestError) as info:
        discover_jobs(case.path, DEFAULTS, mask=case.mask)
    assert case.message in str(info.value)
    assert str(case.path) in str(info.value), "the message names the manifest"


def test_every_bad_manifest_kind_is_tested(bad_manifests: list[BadManifest]) -> None:
    assert len(bad_manifests) == 12


def test_missing_source_and_non_manifest_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as info:
        discover_jobs(tmp_path / "nope", DEFAULTS)
    assert info.value.reason == "SOURCE_NOT_FOUND"
    photo = _png(tmp_path / "photo.png")
    with pytest.raises(InputError, match="not a manifest"):
        discover_jobs(photo, DEFAULTS)


def test_problem_error_uses_the_class_of_the_reason() -> None:
    job = Job(
        name="a.png",
        image_path="/x/a.png",
        mask_path=None,
        params=DEFAULTS,
        output_stem="a",
        problem="a.png: no mask",
        problem_reason="MISSING_MASK",
    )
    error = problem_error(job)
    assert isinstance(error, MaskError) and error.reason == "MISSING_MASK"
    assert str(error) == "a.png: no mask"
    gone = job.model_copy(update={"problem_reason": "IMAGE_NOT_FOUND"})
    assert isinstance(problem_error(gone), ImageError)
    dup = job.model_copy(update={"problem_reason": "DUPLICATE_ROW"})
    assert isinstance(problem_error(dup), ManifestError)


def test_manifest_rows_without_overrides_share_the_batch_defaults(tmp_path: Path) -> None:
    """A frozen model, held once: a big manifest does not keep one copy of it per row."""
    (tmp_path / "list.csv").write_text(
        "image,mask,seed\na.png,m.png,\nb.png,m.png,\nc.png,m.png,7\n"
    )
    a, b, c = discover_jobs(tmp_path / "list.csv", DEFAULTS)
    assert a.params is DEFAULTS and b.params is DEFAULTS
    assert c.params.seed == 7 and DEFAULTS.seed != 7
