"""The batch flow end to end: a real Prefect API, the local server over HTTP, real files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from flows.inpaint_batch import rerun_failed
from inpaint_flows.models import InpaintParams
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.helpers import call_batch_flow, job_counts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAST = InpaintParams(steps=1)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as srv:
        yield srv


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    shutil.copytree(EXAMPLES, src, ignore=shutil.ignore_patterns("*.md"))
    return src


async def run(src: Path, out: Path, server: LocalServer, **kw: object):
    return await call_batch_flow(
        source=str(src),
        out=str(out),
        defaults=FAST,
        base_url=server.base_url,
        images_per_minute=None,
        max_in_flight=4,
        return_state=True,
        **kw,
    )


async def test_all_good_batch_completes_with_outputs_report_and_gallery(
    batch: Path, tmp_path: Path, server: LocalServer
) -> None:
    out = tmp_path / "out"
    state = await run(batch, out, server)

    assert state.is_completed(), state.message
    report = pd.read_csv(out / "report.csv")
    assert sorted(report["name"]) == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert set(report["status"]) == {"succeeded"}
    for column in (
        "task_id",
        "job_key",
        "mask_coverage_pct",
        "seed_used",
        "latency_s",
        "param_prompt",
        "param_steps",
        "param_model_name",
        "outputs",
    ):
        assert column in report.columns
    assert (report["param_steps"] == 1).all()
    for cell in report["outputs"]:
        (rel,) = json.loads(cell)
        with Image.open(out / rel) as img:
            img.load()
            assert img.size[0] > 0
    assert (out / "report.parquet").is_file()
    gallery = (out / "index.html").read_text(encoding="utf-8")
    assert gallery.count("astronaut.jpg") >= 1 and "succeeded" in gallery
    counts = job_counts(server)
    assert counts.submits_per_job == [1, 1, 1, 1]


async def test_partly_failing_batch_reports_invalid_items_and_ends_failed(
    batch: Path, tmp_path: Path, server: LocalServer
) -> None:
    (batch / "masks" / "rocket.png").unlink()  # an image without a mask
    (batch / "images" / "broken.png").write_bytes(b"not a png at all")
    (batch / "masks" / "broken.png").write_bytes((batch / "masks" / "coffee.png").read_bytes())
    out = tmp_path / "out"

    state = await run(batch, out, server)

    assert state.is_failed()
    report = pd.read_csv(out / "report.csv").set_index("name")
    assert report.loc["rocket.jpg", "status"] == "invalid"
    assert "mask" in report.loc["rocket.jpg", "message"].lower()
    assert report.loc["broken.png", "status"] == "invalid"
    assert "broken.png" in report.loc["broken.png", "message"]
    good = report[report["status"] == "succeeded"]
    assert sorted(good.index) == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    # Nothing is paid for invalid items.
    assert job_counts(server).total_submits == 3


async def test_new_run_over_same_inputs_pays_nothing_again(
    batch: Path, tmp_path: Path, server: LocalServer
) -> None:
    out = tmp_path / "out"
    assert (await run(batch, out, server)).is_completed()
    before = job_counts(server)

    second = await run(batch, out, server)

    assert second.is_completed()
    after = job_counts(server)
    assert after.total_submits == before.total_submits
    assert after.total_polls == before.total_polls
    assert after.total_downloads == before.total_downloads
    report = pd.read_csv(out / "report.csv")
    assert set(report["status"]) == {"skipped-already-done"}


async def test_rerun_failed_redoes_only_fixed_rows_and_merges_report(
    batch: Path, tmp_path: Path, server: LocalServer
) -> None:
    mask = batch / "masks" / "rocket.png"
    saved = mask.read_bytes()
    mask.unlink()
    out = tmp_path / "out"
    assert (await run(batch, out, server)).is_failed()
    before = job_counts(server)
    mask.write_bytes(saved)  # the user fixes the input

    state = await rerun_failed(report=str(out / "report.csv"), return_state=True)

    assert state.is_completed(), state.message
    after = job_counts(server)
    assert after.total_submits == before.total_submits + 1
    report = pd.read_csv(out / "report.csv").set_index("name")
    assert len(report) == 4
    assert report.loc["rocket.jpg", "status"] == "succeeded"
    assert set(report.drop(index="rocket.jpg")["status"]) == {"succeeded"}
