"""Every setting survives rerun-failed; a chunk that crashes still yields a full report."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.inpaint_batch import inpaint_batch, rerun_failed
from inpaint_flows.batch import BatchRun
from inpaint_flows.containment import CHUNK_CRASHED
from inpaint_flows.models import InpaintParams
from inpaint_flows.settings import BatchSettings
from inpaint_flows.spec import SPEC_FILE, load_settings
from novita_local.config import ServerConfig
from novita_local.server import LocalServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig()) as srv:
        yield srv


def _copy_examples(dst: Path) -> Path:
    shutil.copytree(EXAMPLES, dst, ignore=shutil.ignore_patterns("*.md"))
    return dst


async def test_rerun_failed_keeps_every_setting_of_the_batch(
    tmp_path: Path, server: LocalServer
) -> None:
    src = _copy_examples(tmp_path / "in")
    mask = next((src / "masks").iterdir())
    moved = tmp_path / mask.name
    mask.rename(moved)  # one input has no mask: invalid, to be fixed and rerun
    settings = BatchSettings(
        source=str(src),
        out=str(tmp_path / "out"),
        base_url=server.base_url,
        images_per_minute=None,
        max_in_flight=3,
        chunk_size=2,
        poll_timeout_s=123.0,
        request_timeout_s=45.0,
        batch_name="keep-me",
        defaults=InpaintParams(steps=1, prompt="a brick wall", seed=7, mask_blur=0),
    )
    state = await inpaint_batch(settings=settings, return_state=True)
    assert state.is_failed()
    saved = json.loads((tmp_path / "out" / SPEC_FILE).read_text())
    assert BatchSettings.model_validate(saved) == settings  # saved whole

    moved.rename(mask)  # the user fixes the input
    report = tmp_path / "out" / "report.csv"
    rerun = await rerun_failed(report=str(report), return_state=True)
    assert rerun.is_completed(), rerun.message
    # The rerun ran with the original batch's every setting (it saves what it was given).
    assert load_settings(report) == settings
    rows = pd.read_csv(report)
    assert set(rows["status"]) == {"succeeded"}
    assert set(rows["param_prompt"]) == {"a brick wall"}
    assert set(rows["param_seed"]) == {7}


async def test_a_chunk_that_crashes_still_yields_a_report_with_every_input(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _copy_examples(tmp_path / "in")
    names = sorted(p.name for p in (src / "images").iterdir())
    original = BatchRun.run_jobs

    async def crash_the_first_chunk(self: BatchRun, states: Any) -> Any:
        if any(s.job.name == names[0] for s in states):
            raise OSError("No space left on device (simulated)")
        return await original(self, states)

    monkeypatch.setattr(BatchRun, "run_jobs", crash_the_first_chunk)
    settings = BatchSettings(
        source=str(src),
        out=str(tmp_path / "out"),
        base_url=server.base_url,
        images_per_minute=None,
        chunk_size=2,
        defaults=InpaintParams(steps=1),
    )
    state = await inpaint_batch(settings=settings, return_state=True)

    assert state.is_failed()
    rows = pd.read_csv(tmp_path / "out" / "report.csv")
    assert sorted(rows["name"]) == names  # every input has its row
    crashed = rows[rows["reason"] == CHUNK_CRASHED]
    assert list(crashed["name"]) == names[:2]
    assert all("No space left on device" in m for m in crashed["message"])
    assert set(rows[rows["reason"] != CHUNK_CRASHED]["status"]) == {"succeeded"}


async def test_a_flow_run_with_no_key_and_no_base_url_fails_at_once(tmp_path: Path) -> None:
    src = _copy_examples(tmp_path / "in")
    settings = BatchSettings(source=str(src), out=str(tmp_path / "out"))
    state = await inpaint_batch(settings=settings, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="No API key") as raised:
        await state.result()
    assert "base_url" in str(raised.value)
    assert not (tmp_path / "out" / "report.csv").exists()  # nothing ran, nothing was paid


async def test_shards_without_a_shard_deployment_stop_at_once_saying_what_to_do(
    tmp_path: Path, server: LocalServer
) -> None:
    src = _copy_examples(tmp_path / "in")
    state = await inpaint_batch(
        settings=BatchSettings(
            source=str(src), out=str(tmp_path / "out"), base_url=server.base_url, shards=2
        ),
        return_state=True,
    )
    assert state.is_failed()
    assert "inpaint-batch/shard deployment" in (state.message or "")
    assert "set shards to 1" in (state.message or "")
    assert server.stats()["submissions"]["accepted"] == 0  # nothing was paid
