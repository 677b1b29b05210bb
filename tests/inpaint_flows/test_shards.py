"""Splitting a batch into shards and gathering their rows back."""

from __future__ import annotations

from pathlib import Path

import pytest

from inpaint_flows.models import InpaintParams, Job, JobOutcome, JobStatus
from inpaint_flows.settings import BatchSettings
from inpaint_flows.shards import (
    SHARD_CRASHED,
    load_rows,
    rows_of_shards,
    rows_path,
    save_rows,
    shard_settings,
    split,
)


def _job(name: str) -> Job:
    return Job(
        name=name,
        image_path=f"/in/{name}",
        mask_path=None,
        params=InpaintParams(),
        output_stem=name,
    )


def _row(job: Job) -> JobOutcome:
    return JobOutcome(
        name=job.name,
        status=JobStatus.SUCCEEDED,
        image_path=job.image_path,
        mask_path=None,
        params=job.params,
        api="local",
    )


@pytest.mark.parametrize(("count", "shards"), [(7, 2), (7, 3), (2, 5), (0, 3), (5, 1)])
def test_split_covers_every_job_once_in_near_equal_parts(count: int, shards: int) -> None:
    names = [f"n{i}.png" for i in reversed(range(count))]
    parts = split(names, shards)
    assert sorted(n for part in parts for n in part) == sorted(names)
    assert len(parts) == min(count, shards)
    assert max(map(len, parts), default=0) - min(map(len, parts), default=0) <= 1
    assert split(list(reversed(names)), shards) == parts  # the same split every time


def test_a_shard_runs_here_under_a_name_of_its_own() -> None:
    settings = BatchSettings(source="photos", batch_name="night", shards=3, max_in_flight=5)
    child = shard_settings(settings, 1, 3)
    assert (child.shards, child.batch_name, child.max_in_flight) == (1, "night-shard-2-of-3", 5)


def test_rows_round_trip_and_a_shard_without_rows_reports_its_jobs(tmp_path: Path) -> None:
    jobs = [_job(f"j{i}.png") for i in range(4)]
    parts = split([j.name for j in jobs], 2)
    paths = [rows_path(tmp_path, "parent", i) for i in range(2)]
    by_name = {j.name: j for j in jobs}
    save_rows([_row(by_name[n]) for n in parts[0]], paths[0])
    assert load_rows(paths[0]) == [_row(by_name[n]) for n in parts[0]]
    cut = Path(paths[1])
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_text('[{"name": "cut', encoding="utf-8")  # a child killed mid-write
    assert load_rows(paths[1]) is None

    rows = rows_of_shards(jobs, parts, paths, ["worker gone", "worker gone"])
    assert sorted(r.name for r in rows) == sorted(by_name)
    crashed = [r for r in rows if r.reason == SHARD_CRASHED]
    assert sorted(r.name for r in crashed) == sorted(parts[1])
    assert all(r.status == JobStatus.FAILED and "worker gone" in (r.message or "") for r in crashed)
