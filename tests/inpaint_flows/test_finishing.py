"""Gallery work done as each job finishes: thumbnails ready before the gallery is written.

What a user notices: the run ends soon after the last result is downloaded (the gallery only
renders a page then), and the gallery looks exactly as it did when everything was made at the
end.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from inpaint_flows import gallery
from inpaint_flows.batch import open_run
from inpaint_flows.endpoint import Endpoint
from inpaint_flows.finalize import finalize_report
from inpaint_flows.finishing import JobFinisher, run_and_finish
from inpaint_flows.gallery import THUMBS_DIR, Thumbnailer, write_gallery
from inpaint_flows.job_record import JobRecord
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.models import InpaintParams, JobOutcome, JobStatus
from inpaint_flows.pipeline import prepare_many
from inpaint_flows.settings import BatchSettings
from novita_local.config import ServerConfig
from novita_local.server import LocalServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(latency=0.2, workers=8)) as srv:
        yield srv


def _states() -> list[JobRecord]:
    return prepare_many(discover_jobs(str(EXAMPLES), InpaintParams(steps=1), None))


def _settings(server: LocalServer, out: Path) -> tuple[BatchSettings, Endpoint]:
    settings = BatchSettings(
        source=str(EXAMPLES),
        out=str(out),
        max_in_flight=2,
        images_per_minute=None,
    )
    return settings, Endpoint(server.base_url, api_key=None, local=False)


def _thumbs(out: Path) -> set[str]:
    folder = out / THUMBS_DIR
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


async def test_each_finished_jobs_thumbnails_are_made_before_the_gallery(
    server: LocalServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    states = _states()
    async with (
        open_run(*_settings(server, out)) as run,
        JobFinisher(out) as finisher,
    ):
        done = await run_and_finish(run, states, finisher)
        await finisher.drain()

    assert [s.job.name for s in done] == [s.job.name for s in states]  # order kept
    outcomes = [s.outcome for s in done if s.outcome]
    assert {o.status for o in outcomes} == {JobStatus.SUCCEEDED}
    assert finisher.finished == len(states)
    # original, mask and result for every row, all made before any gallery is written
    assert len(_thumbs(out)) == 3 * len(states)
    assert not (out / "index.html").exists()

    made = {p: p.stat().st_mtime_ns for p in (out / THUMBS_DIR).iterdir()}
    with_finisher = write_gallery(outcomes, out, title="t", thumbnails=finisher.thumbnails)
    page = with_finisher.read_text(encoding="utf-8")
    # nothing was made again: the page only links what the finisher made
    assert {p: p.stat().st_mtime_ns for p in (out / THUMBS_DIR).iterdir()} == made

    # The same page, and the same thumbnails, as a gallery made from scratch at the end.
    early = {p.name: p.read_bytes() for p in (out / THUMBS_DIR).iterdir()}
    shutil.rmtree(out / THUMBS_DIR)
    scratch = write_gallery(outcomes, out, title="t").read_text(encoding="utf-8")
    assert scratch == page
    assert {p.name: p.read_bytes() for p in (out / THUMBS_DIR).iterdir()} == early


async def test_results_thumbnails_come_from_the_download_check_not_a_second_decode(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    states = _states()
    opened: list[str] = []
    make_from_file = gallery._make_thumbnail

    def spy(source: str) -> gallery.Thumbnail:
        opened.append(source)
        return make_from_file(source)

    monkeypatch.setattr(gallery, "_make_thumbnail", spy)
    async with (
        JobFinisher(out) as finisher,
        open_run(*_settings(server, out), previews=finisher) as run,
    ):
        done = await run_and_finish(run, states, finisher)
        await finisher.drain()

    outcomes = [s.outcome for s in done if s.outcome]
    results = {str(out / rel) for o in outcomes for rel in o.outputs}
    assert len(results) == len(states)
    assert len(_thumbs(out)) == 3 * len(states)  # original, mask, result for every row
    assert not results & set(opened)  # no result file was opened to make its thumbnail
    assert len(opened) == 2 * len(states)  # the inputs were
    # ... and the gallery shows the same thumbnails as one made from the files at the end.
    early = {p.name: p.read_bytes() for p in (out / THUMBS_DIR).iterdir()}
    page = write_gallery(outcomes, out, title="t", thumbnails=finisher.thumbnails).read_text()
    shutil.rmtree(out / THUMBS_DIR)
    assert write_gallery(outcomes, out, title="t").read_text() == page
    assert {p.name: p.read_bytes() for p in (out / THUMBS_DIR).iterdir()} == early


async def test_invalid_inputs_are_finished_too_and_nothing_is_sent(
    server: LocalServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    bad = tmp_path / "in"
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    (bad / "images" / "broken.png").write_bytes(b"not an image")
    (bad / "masks" / "broken.png").write_bytes(b"nor a mask")
    states = prepare_many(discover_jobs(str(bad), InpaintParams(steps=1), None))
    assert all(s.final for s in states)
    async with open_run(*_settings(server, out)) as run, JobFinisher(out) as finisher:
        done = await run_and_finish(run, states, finisher)
        await finisher.drain()
    assert [s.outcome.status for s in done if s.outcome] == [JobStatus.INVALID]
    assert finisher.finished == 1
    assert _thumbs(out) == set()  # undecodable: shown as a placeholder by the gallery
    assert server.stats()["submissions"]["total"] == 0


async def test_without_a_finisher_jobs_run_as_before(server: LocalServer, tmp_path: Path) -> None:
    states = _states()
    async with open_run(*_settings(server, tmp_path / "out")) as run:
        done = await run_and_finish(run, states, None)
    assert {s.outcome.status for s in done if s.outcome} == {JobStatus.SUCCEEDED}


def test_a_thumbnail_made_earlier_is_not_decoded_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = EXAMPLES / "images" / "rocket.jpg"
    thumbs = Thumbnailer(out)
    first = thumbs.thumb(str(source))
    made = next((out / THUMBS_DIR).iterdir())
    made.write_bytes(b"damaged")  # were it opened again, it would be remade
    assert thumbs.thumb(str(source)) == first
    assert made.read_bytes() == b"damaged"


def test_a_thumbnailer_for_another_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="thumbnails were made for"):
        write_gallery([], tmp_path / "a", thumbnails=Thumbnailer(tmp_path / "b"))


async def test_a_finisher_that_fails_costs_a_thumbnail_not_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"

    def broken(self: Thumbnailer, outcome: JobOutcome) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Thumbnailer, "prepare", broken)
    outcome = JobOutcome(
        name="rocket.jpg",
        image_path=str(EXAMPLES / "images" / "rocket.jpg"),
        mask_path=str(EXAMPLES / "masks" / "rocket.png"),
        status=JobStatus.SUCCEEDED,
        params=InpaintParams(),
    )
    async with JobFinisher(out) as finisher:
        finisher.job_finished(outcome)
        await finisher.drain()
    assert finisher.finished == 0
    monkeypatch.undo()
    report = await asyncio.to_thread(
        finalize_report, [outcome], str(out), title="t", thumbnails=finisher.thumbnails
    )
    assert len(_thumbs(out)) == 2  # made by the gallery instead
    assert "rocket.jpg" in Path(report.gallery).read_text(encoding="utf-8")


async def test_a_jobs_input_thumbnails_are_made_as_it_starts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (state,) = [s for s in _states() if s.job.name.startswith("rocket")]
    async with JobFinisher(out) as finisher:
        finisher.job_started(state.job)
        await finisher.drain()
    assert len(_thumbs(out)) == 2  # original and mask, before any result exists
    made = {p.name: p.stat().st_mtime_ns for p in (out / THUMBS_DIR).iterdir()}
    outcome = JobOutcome(
        name=state.job.name,
        image_path=state.job.image_path,
        mask_path=state.job.mask_path,
        status=JobStatus.FAILED,
        params=InpaintParams(),
    )
    write_gallery([outcome], out, thumbnails=finisher.thumbnails)
    assert {p.name: p.stat().st_mtime_ns for p in (out / THUMBS_DIR).iterdir()} == made
