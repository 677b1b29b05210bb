"""The HTML gallery a person opens after a batch."""

from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import markupsafe
import pytest
from PIL import Image

from inpaint_flows import gallery
from inpaint_flows.gallery import STATUS_COLOURS, THUMB_MAX_SIDE, write_gallery
from inpaint_flows.models import InpaintParams, JobOutcome, JobStatus


class _Page(HTMLParser):
    """Collects rows, image sources, link targets and visible text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-name" in found:
            self.rows.append(found)
        if tag == "img":
            self.srcs.append(found["src"] or "")
        if tag == "a":
            self.hrefs.append(found["href"] or "")
        for key in ("src", "href", "style"):
            assert "://" not in (found.get(key) or ""), f"external URL in {tag}: {found}"

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def visible(self) -> str:
        return " ".join(self.text)


def _image(path: Path, size: tuple[int, int], mode: str = "RGB", **save: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour: Any = 128 if mode == "L" else (200, 40, 40)
    Image.new(mode, size, colour).save(path, **save)
    return str(path)


def _outcome(name: str, **fields: Any) -> JobOutcome:
    base: dict[str, Any] = {
        "name": name,
        "image_path": "",
        "mask_path": None,
        "status": JobStatus.SUCCEEDED,
        "params": InpaintParams(),
    }
    return JobOutcome.model_validate({**base, **fields})


@pytest.fixture
def batch(tmp_path: Path) -> tuple[list[JobOutcome], Path]:
    inputs = tmp_path / "inputs"
    out = tmp_path / "out"
    tricky = "ünï <script>alert(\"x\")</script> & 'q'.png"
    outcomes = [
        _outcome(
            "cat.png",
            image_path=_image(inputs / "cat.jpg", (1024, 768), format="JPEG"),
            mask_path=_image(inputs / "cat_mask.png", (1024, 768), mode="L"),
            outputs=(_image(out / "cat.png", (1024, 768)),),
            task_id="task-cat",
            latency_s=12.34,
            width=1024,
            height=768,
        ),
        _outcome(
            tricky,
            image_path=_image(inputs / "tricky.png", (300, 200)),
            mask_path=_image(inputs / "tricky_mask.png", (300, 200), mode="L"),
            status=JobStatus.FAILED,
            reason="TASK_FAILED",
            message='Novita said "NSFW <content>"; change the prompt and rerun',
            task_id='t-<1>"',
        ),
        _outcome(
            "broken.png",
            image_path=str(_write(inputs / "broken.png", b"this is not a png")),
            mask_path=str(inputs / "missing_mask.png"),
            status=JobStatus.INVALID,
            reason="INVALID_IMAGE",
            message="broken.png cannot be decoded; re-export it as PNG or JPEG",
        ),
        _outcome(
            "sub/two results #1.png",
            image_path=_image(inputs / "sub" / "x.png", (64, 64)),
            mask_path=_image(inputs / "sub" / "x_mask.png", (64, 64), mode="L"),
            outputs=(
                _image(out / "sub" / "two results #1_0.png", (64, 64)),
                "sub/two results #1_1.png",  # relative to the output folder
            ),
            status=JobStatus.SKIPPED_ALREADY_DONE,
        ),
    ]
    _image(out / "sub" / "two results #1_1.png", (64, 64))
    return outcomes, out


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _render(outcomes: list[JobOutcome], out: Path, title: str = "Nightly") -> _Page:
    index = write_gallery(outcomes, out, title=title)
    assert index == out / "index.html"
    return _Page(index.read_text(encoding="utf-8"))


def test_one_row_per_outcome_in_order(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    page = _render(outcomes, out)
    assert [r["data-name"] for r in page.rows] == [o.name for o in outcomes]
    assert [r["data-status"] for r in page.rows] == [o.status.value for o in outcomes]


def test_text_is_escaped(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    page = _render(outcomes, out, title="<b>Batch</b> & co")
    raw = (out / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in raw
    assert str(markupsafe.escape(outcomes[1].name)) in raw
    assert "&lt;b&gt;Batch&lt;/b&gt; &amp; co" in raw
    assert outcomes[1].name in page.visible  # a person sees the real name
    assert 'Novita said "NSFW <content>"' in page.visible
    assert 't-<1>"' in page.visible


def test_thumbnails_exist_are_small_and_decodable(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    page = _render(outcomes, out)
    # cat: 3 images, tricky: 2 (no result), broken: none, sub: 2 inputs + 2 results.
    assert len(page.srcs) == 3 + 2 + 0 + 4
    for src in page.srcs:
        assert src.startswith("_thumbs/")
        with Image.open(out / unquote(src)) as im:
            im.load()
            assert max(im.size) <= THUMB_MAX_SIDE
    with Image.open(out / page.srcs[0]) as first:
        assert first.size == (256, 192)  # aspect ratio kept


def test_invalid_rows_render_their_errors(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    raw = (write_gallery(outcomes, out, title="t")).read_text(encoding="utf-8")
    broken = raw.split('id="row-3"')[1].split("</tr>")[0]
    assert "cannot preview" in broken and "broken.png" in broken
    assert "missing_mask.png" in broken and "No such file" in broken
    assert "INVALID_IMAGE" in broken
    assert "re-export it as PNG or JPEG" in broken
    assert "<img" not in broken
    failed = raw.split('id="row-2"')[1].split("</tr>")[0]
    assert "no result (failed)" in failed


def test_no_mask_gets_a_placeholder(tmp_path: Path) -> None:
    image = _image(tmp_path / "in" / "a.png", (10, 10))
    page = _render([_outcome("a.png", image_path=image, status="invalid")], tmp_path / "out")
    assert "no mask" in page.visible


def test_drawn_mask_says_where_it_came_from(tmp_path: Path) -> None:
    image = _image(tmp_path / "in" / "a.png", (10, 10))
    outcome = _outcome("a.png", image_path=image, mask_path=None, mask_source="coco+region")
    page = _render([outcome], tmp_path / "out")
    assert "mask drawn from coco+region" in page.visible and "no mask" not in page.visible


def test_links_are_relative_and_survive_a_move(
    batch: tuple[list[JobOutcome], Path], tmp_path: Path
) -> None:
    outcomes, out = batch
    _render(outcomes, out)
    moved = tmp_path / "elsewhere" / "gallery"
    shutil.copytree(out, moved)
    page = _Page((moved / "index.html").read_text(encoding="utf-8"))
    assert page.hrefs, "results inside the output folder are linked"
    for target in page.srcs + page.hrefs:
        assert not target.startswith(("/", "file:")), target
        assert ".." not in target
        assert (moved / unquote(target)).is_file(), target
    assert "sub/two%20results%20%231_0.png" in page.hrefs


def test_inputs_outside_the_folder_are_not_linked(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    page = _render(outcomes, out)
    assert all(not h.startswith("_thumbs") and "inputs" not in h for h in page.hrefs)


def test_status_badges_have_their_colours(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    raw = write_gallery(outcomes, out, title="t").read_text(encoding="utf-8")
    for index, o in enumerate(outcomes, start=1):
        row = raw.split(f'id="row-{index}"')[1].split("</tr>")[0]
        assert STATUS_COLOURS[o.status] in row
    assert len(set(STATUS_COLOURS.values())) == len(JobStatus)


def test_summary_header_counts_statuses(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    page = _render(outcomes, out)
    header = page.visible.split("Input")[0]
    for phrase in ("succeeded: 1", "failed: 1", "invalid: 1", "skipped-already-done: 1"):
        assert phrase in header
    assert "TASK_FAILED" in header


def test_row_shows_task_id_and_latency(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    page = _render(outcomes, out)
    assert "task-cat" in page.visible
    assert "12.3 s" in page.visible


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    source = tmp_path / "in" / "phone.jpg"
    source.parent.mkdir()
    Image.new("RGB", (400, 200), (0, 90, 200)).save(source, exif=exif)
    out = tmp_path / "out"
    page = _render([_outcome("phone.jpg", image_path=str(source))], out)
    with Image.open(out / page.srcs[0]) as im:
        assert im.height > im.width


def test_rewrite_reuses_thumbnails_and_prunes_stale_ones(
    batch: tuple[list[JobOutcome], Path],
) -> None:
    outcomes, out = batch
    _render(outcomes, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "_thumbs").iterdir()}
    foreign = out / "_thumbs" / "README.txt"
    foreign.write_text("not ours")
    page = _render(outcomes[:1], out)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "_thumbs").iterdir()}
    kept = {Path(s).name for s in page.srcs}
    assert set(after) == kept | {"README.txt"}
    assert all(after[name] == before[name] for name in kept)


def test_index_is_replaced_atomically(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    _render(outcomes, out)
    _render(outcomes[:2], out)
    assert len(_Page((out / "index.html").read_text(encoding="utf-8")).rows) == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_empty_batch_renders(tmp_path: Path) -> None:
    page = _render([], tmp_path / "out")
    assert page.rows == []
    assert "No inputs in this batch." in page.visible


def test_page_is_self_contained(batch: tuple[list[JobOutcome], Path]) -> None:
    outcomes, out = batch
    raw = write_gallery(outcomes, out, title="t").read_text(encoding="utf-8")
    assert "<script" not in raw
    assert "<link" not in raw
    assert "http:" not in raw and "https:" not in raw
    assert "<style>" in raw
    assert '<meta charset="utf-8">' in raw


def test_relative_input_is_not_confused_with_a_same_named_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    Image.new("RGB", (32, 32), (0, 0, 255)).save(_write(inputs / "cat.png", b"").as_posix())
    Image.new("RGB", (32, 32), (255, 0, 0)).save(_write(out / "cat.png", b"").as_posix())
    monkeypatch.chdir(inputs)
    page = _render([_outcome("cat.png", image_path="cat.png", outputs=("cat.png",))], out)
    original, result = (_centre_pixel(out / s) for s in page.srcs)
    assert original[2] > 200 and original[0] < 50  # blue input
    assert result[0] > 200 and result[2] < 50  # red result


def _centre_pixel(path: Path) -> tuple[int, ...]:
    with Image.open(path) as im:
        pixel = im.convert("RGB").getpixel((im.width // 2, im.height // 2))
    assert isinstance(pixel, tuple)
    return pixel


def test_real_paths_resolve_like_realpath_with_each_folder_resolved_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_folder = tmp_path / "real"
    real_folder.mkdir()
    (real_folder / "a.png").write_bytes(b"a")
    (real_folder / "b.png").write_bytes(b"b")
    (tmp_path / "linked").symlink_to(real_folder)  # a symlinked folder
    (real_folder / "c.png").symlink_to(tmp_path / "real" / "a.png")  # a symlinked file
    monkeypatch.chdir(tmp_path)
    paths = ["linked/a.png", str(tmp_path / "linked" / "b.png"), "linked/c.png", "real/none.png"]
    real = gallery._RealPaths()
    assert [real(p) for p in paths] == [os.path.realpath(p) for p in paths]


def test_rows_rendered_as_jobs_finish_make_the_same_page_and_stale_ones_are_redone(
    batch: tuple[list[JobOutcome], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes, out = batch
    scratch = write_gallery(outcomes, out, title="t").read_text(encoding="utf-8")
    shutil.rmtree(out / gallery.THUMBS_DIR)

    thumbs = gallery.Thumbnailer(out)
    for outcome in outcomes:  # as the run's finisher does, job by job
        thumbs.prepare(outcome)
    rendered: list[str] = []
    render_row = gallery._row

    def spy(index: int, outcome: JobOutcome, *args: Any) -> Any:
        rendered.append(outcome.name)
        return render_row(index, outcome, *args)

    monkeypatch.setattr(gallery, "_row", spy)
    page = write_gallery(outcomes, out, title="t", thumbnails=thumbs).read_text(encoding="utf-8")
    assert page == scratch
    # Every row was put in as rendered when its job finished, but the one showing placeholders
    # (its files are broken or missing): that one is tried again with the page.
    broken = outcomes[2].name
    assert rendered == [broken]

    # The cat's row changed after its job finished (a rerun's row, say): rendered again.
    changed = [outcomes[0].evolve(message="redone"), *outcomes[1:]]
    rendered.clear()
    again = write_gallery(changed, out, title="t", thumbnails=thumbs).read_text(encoding="utf-8")
    assert rendered == [outcomes[0].name, broken]
    assert "redone" in again and _Page(again).rows == _Page(page).rows

    # A thumbnail a row shows was removed meanwhile (another run's clean-up): made again.
    shown = _Page(page).srcs[3]  # the second row's original (the cat shows three)
    (out / unquote(shown)).unlink()
    rendered.clear()
    assert write_gallery(outcomes, out, title="t", thumbnails=thumbs).read_text() == page
    assert rendered == [outcomes[1].name, broken] and (out / unquote(shown)).is_file()
