"""The flow against a server that answers as Novita's docs say (`profile="novita"`), with a key.

What a paying user's first nights would meet: eta 0 and no timings while tasks run, 429s with
no Retry-After when two runs share one account, a balance that runs out, a refused key, a model
name that does not exist, an API that cannot be reached, moderation refusals, and the odd
TASK_STATUS_UNKNOWN. Each is counted against the local server's own `/_local/stats`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from inpaint_flows.models import InpaintParams
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import tiny_batch
from tests.flows.helpers import call_batch_flow, job_counts

pytestmark = pytest.mark.usefixtures("prefect_harness")

KEY = "sk_test_0123456789abcdef"
FAST = InpaintParams(steps=1)


@contextmanager
def novita(**config: Any) -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(profile="novita", api_key=KEY, seed=11, **config)) as server:
        yield server


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NOVITA_API_KEY", KEY)
    return KEY


def distinct_photos(folder: Path, count: int, side: int = 48) -> Path:
    """`images/` + `masks/` with `count` different images (so per-image checks differ)."""
    rng = np.random.default_rng(5)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    mask = np.zeros((side, side), dtype=np.uint8)
    mask[side // 4 : -side // 4, side // 4 : -side // 4] = 255
    for i in range(count):
        pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / "images" / f"p{i:02d}.png")
        Image.fromarray(mask, "L").save(folder / "masks" / f"p{i:02d}.png")
    return folder


async def run(source: Path, out: Path, server_url: str, **settings: Any) -> Any:
    settings.setdefault("images_per_minute", None)
    settings.setdefault("max_in_flight", 4)
    settings.setdefault("defaults", FAST)
    return await call_batch_flow(
        source=str(source), out=str(out), base_url=server_url, return_state=True, **settings
    )


def report(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "report.csv")


async def test_polls_few_times_when_the_api_reports_eta_0_and_no_timings(
    tmp_path: Path, key: str
) -> None:
    source = tiny_batch(tmp_path / "in", 24)
    with novita(latency=1.0, workers=8) as server:
        state = await run(source, tmp_path / "out", server.base_url)
        stats = job_counts(server).stats
    assert state.is_completed(), state.message
    rows = report(tmp_path / "out")
    assert set(rows["status"]) == {"succeeded"}
    assert rows["polls"].mean() <= 3, rows["polls"].tolist()
    assert stats["polls"]["total"] == rows["polls"].sum()


@pytest.mark.slow
async def test_two_runs_sharing_one_accounts_limit_both_finish_every_job(
    tmp_path: Path, key: str
) -> None:
    # The account allows 4 images a minute; each run paces itself to the whole limit, so
    # together they ask for twice it. No Retry-After comes with the 429s.
    with novita(ipm=4, workers=4) as server:
        first, second = await asyncio.gather(
            run(
                tiny_batch(tmp_path / "a", 3),
                tmp_path / "out-a",
                server.base_url,
                images_per_minute=4,
            ),
            run(
                tiny_batch(tmp_path / "b", 3, side=56),
                tmp_path / "out-b",
                server.base_url,
                images_per_minute=4,
            ),
        )
        counts = job_counts(server)
    assert first.is_completed(), first.message
    assert second.is_completed(), second.message
    rows = pd.concat([report(tmp_path / "out-a"), report(tmp_path / "out-b")])
    assert set(rows["status"]) == {"succeeded"}
    assert counts.submits_per_job == [1] * 6  # each paid once
    limited = int(counts.stats["rate_limited"]["ipm"])
    assert limited > 0  # the runs did collide, and no 429 failed a job
    assert rows["rate_limited"].sum() == limited


async def test_balance_running_out_stops_new_submits_and_says_what_to_do(
    tmp_path: Path, key: str
) -> None:
    source = distinct_photos(tmp_path / "in", 10)
    with novita(balance=3, latency=0.2) as server:
        state = await run(source, tmp_path / "out", server.base_url, max_in_flight=2)
        counts = job_counts(server)
    assert state.is_failed()
    assert "BILLING_BALANCE_NOT_ENOUGH" in (state.message or "")
    rows = report(tmp_path / "out")
    assert (rows["status"] == "succeeded").sum() == 3
    unsent = rows[rows["status"] == "not-submitted"]
    assert len(unsent) == 7
    assert set(unsent["reason"]) == {"BILLING_BALANCE_NOT_ENOUGH"}
    assert all("top up" in m and "nothing is paid twice" in m for m in unsent["message"])
    assert counts.total_submits == 3
    refused = counts.stats["submissions"]["rejected"].get("BILLING_BALANCE_NOT_ENOUGH", 0)
    assert refused <= 2  # stopped at once: at most the submits already out


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_stops_the_batch_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    monkeypatch.setenv("NOVITA_API_KEY", "sk_wrong_key")
    source = distinct_photos(tmp_path / "in", 6)
    with novita(auth_status=status) as server:
        state = await run(source, tmp_path / "out", server.base_url)
        counts = job_counts(server)
    assert state.is_failed()
    rows = report(tmp_path / "out")
    assert set(rows["status"]) == {"not-submitted"}
    assert all("check the key" in m for m in rows["message"])
    assert "sk_wrong_key" not in (tmp_path / "out" / "report.csv").read_text()
    assert counts.stats["submissions"]["total"] == 0


async def test_a_model_the_api_does_not_list_makes_its_rows_invalid_before_paying(
    tmp_path: Path, key: str
) -> None:
    source = distinct_photos(tmp_path / "in", 3)
    bad = InpaintParams(steps=1, model_name="noSuchModel_v1-inpainting.safetensors")
    with novita() as server:
        state = await run(source, tmp_path / "out", server.base_url, defaults=bad)
        counts = job_counts(server)
    assert state.is_failed()
    rows = report(tmp_path / "out")
    assert set(rows["status"]) == {"invalid"}
    assert set(rows["reason"]) == {"MODEL_NOT_FOUND"}
    assert all("noSuchModel_v1-inpainting.safetensors" in m for m in rows["message"])
    assert counts.stats["submissions"]["total"] == 0


async def test_an_unknown_model_met_at_submit_stops_the_batch_when_the_check_is_off(
    tmp_path: Path, key: str
) -> None:
    source = distinct_photos(tmp_path / "in", 6)
    bad = InpaintParams(steps=1, model_name="noSuchModel_v1-inpainting.safetensors")
    with novita() as server:
        state = await run(
            source,
            tmp_path / "out",
            server.base_url,
            defaults=bad,
            check_names=False,
            max_in_flight=1,
        )
        counts = job_counts(server)
    assert state.is_failed()
    rows = report(tmp_path / "out")
    assert set(rows["status"]) == {"not-submitted"}
    assert counts.stats["submissions"]["total"] == 1  # the first refusal stopped the rest


async def test_an_unreachable_api_stops_a_large_batch_quickly(tmp_path: Path, key: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    source = tiny_batch(tmp_path / "in", 120)
    state = await run(source, tmp_path / "out", dead, max_in_flight=8)
    assert state.is_failed()
    assert "API_UNREACHABLE" in (state.message or "")
    rows = report(tmp_path / "out")
    assert len(rows) == 120
    assert set(rows["status"]) == {"not-submitted"}
    assert set(rows["reason"]) == {"API_UNREACHABLE"}


async def test_moderation_refusals_fail_only_their_images(tmp_path: Path, key: str) -> None:
    source = distinct_photos(tmp_path / "in", 12)
    with novita(moderation_rate=0.5) as server:
        state = await run(source, tmp_path / "out", server.base_url)
        counts = job_counts(server)
    assert state.is_failed()
    rows = report(tmp_path / "out")
    refused = rows[rows["reason"] == "ILLEGAL_IMAGE_CONTENT"]
    assert 0 < len(refused) < 12
    assert set(refused["status"]) == {"failed"}
    assert set(rows[rows["reason"] != "ILLEGAL_IMAGE_CONTENT"]["status"]) == {"succeeded"}
    assert counts.total_submits == 12 - len(refused)


async def test_task_status_unknown_is_polled_through(tmp_path: Path, key: str) -> None:
    source = tiny_batch(tmp_path / "in", 8)
    with novita(unknown_status_rate=0.5, latency=0.5) as server:
        state = await run(source, tmp_path / "out", server.base_url)
        counts = job_counts(server)
    assert state.is_completed(), state.message
    assert set(report(tmp_path / "out")["status"]) == {"succeeded"}
    assert counts.submits_per_job == [1] * 8
