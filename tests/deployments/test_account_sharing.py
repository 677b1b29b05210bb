"""Batches at once on two process workers share one account's limit: nothing fails, each job
is paid once. The throughput figures come from tests/benchmarks/bench_account.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deployments.account_story import run_sharing
from tests.deployments.prefect_server import PrefectServer

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.mark.parametrize(("runs", "jobs"), [(2, 4), (3, 3)])
def test_concurrent_batches_share_the_account_limit(
    prefect_server: PrefectServer, job_store_url: str | None, tmp_path: Path, runs: int, jobs: int
) -> None:
    result = run_sharing(
        prefect_server,
        tmp_path,
        runs=runs,
        jobs=jobs,
        ipm=120,
        hold_until_all_started=True,
        state_url=job_store_url,
    )
    print(result.summary())  # the figures, for the record (pytest -s)

    assert result.states == ["COMPLETED"] * runs, result.summary()
    assert result.statuses == ["succeeded"] * (runs * jobs)  # no job failed, 429s or not
    assert result.paid_per_content == [1] * (runs * jobs)  # each job paid once
    assert result.accepted_submits == runs * jobs
    assert result.most_runs_at_once == runs  # every run held its share at once
