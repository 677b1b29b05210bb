"""Several batches at once, on process workers, sharing one account's limit (issue 13, part 1).

What a user does: record the account's limit on the Prefect server (`inpaint-flows limits set`),
start two workers on the pool, and start batches over different folders. Everything is real: a
started `prefect server`, `prefect worker start` processes picking up deployment runs, and the
local Novita-compatible server enforcing the account's images per minute the way Novita does
(no `Retry-After`), which counts what it saw. Used by tests/deployments/test_account_sharing.py
(small N) and tests/benchmarks/bench_account.py (the throughput figures).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from inpaint_flows.account import RUNS_SUFFIX, limit_name
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import report_rows
from tests.deployments.nightly_story import create_run
from tests.deployments.prefect_server import (
    FINAL_STATES,
    INPAINT_FLOWS,
    POOL,
    PREFECT,
    REPO,
    PrefectServer,
)

ON_DEMAND = "inpaint-batch/on-demand"  # no concurrency limit, unlike the nightly


@dataclass(frozen=True)
class SharingResult:
    states: list[str]
    statuses: list[str]  # every report row's status, all runs
    jobs: int
    accepted_submits: int
    paid_per_content: list[int]
    rate_limited: int  # 429s the local server answered
    most_runs_at_once: int  # the account's runs limit, as seen while the batches ran
    images_per_minute: float  # submits per minute, all runs together
    account_ipm: int

    @property
    def share_of_limit(self) -> float:
        return self.images_per_minute / self.account_ipm

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / max(1, self.accepted_submits + self.rate_limited)

    def summary(self) -> str:
        return (
            f"{len(self.states)} runs, {self.jobs} jobs: {self.images_per_minute:.1f} images/min "
            f"together = {self.share_of_limit:.2f} of the account's {self.account_ipm}; "
            f"429s {self.rate_limited} ({self.rate_limited_share:.1%} of submits); "
            f"most runs at once {self.most_runs_at_once}; states {sorted(set(self.states))}"
        )


def distinct_batch(folder: Path, jobs: int, salt: int, side: int = 48) -> Path:
    """A manifest of `jobs` rows, each its own image (content differs across batches too)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1000 + salt)
    lines = ["image,mask"]
    mask = np.zeros((side, side), dtype=np.uint8)
    mask[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 255
    Image.fromarray(mask, mode="L").save(folder / "mask.png")
    for number in range(jobs):
        pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels, mode="RGB").save(folder / f"img{number}.png")
        lines.append(f"img{number}.png,mask.png")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


@contextmanager
def workers(
    server: PrefectServer, count: int, logs: Path, state_url: str | None = None
) -> Iterator[None]:
    """`count` process workers on the pool, polling every second, stopped (Ctrl-C) at the end;
    with `state_url`, the runs they start share that job store (INPAINT_STATE_URL), as workers
    on several machines would."""
    store = {"INPAINT_STATE_URL": state_url} if state_url else {}
    procs = []
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for number in range(count):
            with (logs / f"worker{number}.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(
                        [PREFECT, "worker", "start", "--pool", POOL, "--name", f"w{number}"],
                        env=server.env(PREFECT_WORKER_QUERY_SECONDS="1", **store),
                        cwd=REPO,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def run_sharing(
    server: PrefectServer,
    root: Path,
    *,
    runs: int,
    jobs: int,
    ipm: int = 60,
    window_s: float = 10.0,
    latency: float = 0.3,
    worker_count: int = 2,
    hold_until_all_started: bool = False,
    state_url: str | None = None,
    timeout: float = 600.0,
) -> SharingResult:
    """`runs` batches of `jobs` at once on `worker_count` workers, under one account limit.

    `hold_until_all_started` keeps the server's tasks queued until every run holds its place
    in the account's runs limit, so the runs certainly overlap (a test must not depend on how
    fast a busy machine starts flow processes); a benchmark leaves them free.
    """
    server.deploy()
    config = ServerConfig(ipm=ipm, ipm_window_s=window_s, latency=latency, workers=8)
    with LocalServer(config) as api:
        name = limit_name(api.base_url)
        server.run(INPAINT_FLOWS, "limits", "set", "--ipm", str(ipm), "--base-url", api.base_url)
        outs = [root / f"out{i}" for i in range(runs)]
        try:
            with workers(server, worker_count, root / "logs", state_url):
                run_ids = [
                    create_run(
                        server,
                        ON_DEMAND,
                        {
                            "settings": {
                                "source": str(distinct_batch(root / f"in{i}", jobs, salt=i)),
                                "out": str(out),
                                "batch_name": f"share-{runs}-{i}",
                                "base_url": api.base_url,
                                "api_key_secret": None,
                                "images_per_minute": None,  # the account's limit decides
                                "max_in_flight": 4,
                                "defaults": {"steps": 1},
                            }
                        },
                    )
                    for i, out in enumerate(outs)
                ]
                if hold_until_all_started:
                    httpx.post(f"{api.base_url}/_local/hold", timeout=10).raise_for_status()
                states, most = _wait_for_runs(
                    server,
                    run_ids,
                    name + RUNS_SUFFIX,
                    timeout,
                    release=f"{api.base_url}/_local/hold" if hold_until_all_started else None,
                )
        finally:
            server.run(INPAINT_FLOWS, "limits", "delete", "--base-url", api.base_url)
        stats = httpx.get(f"{api.base_url}/_local/stats", timeout=10).json()
    rows = [row for out in outs if (out / "report.csv").exists() for row in report_rows(out)]
    return SharingResult(
        states=states,
        statuses=[row["status"] for row in rows],
        jobs=runs * jobs,
        accepted_submits=int(stats["submissions"]["accepted"]),
        paid_per_content=sorted(
            int(c["accepted"]) for c in stats["submissions"]["by_content_hash"].values()
        ),
        rate_limited=int(stats["rate_limited"]["total"]),
        most_runs_at_once=most,
        images_per_minute=_submits_per_minute(rows),
        account_ipm=ipm,
    )


def _wait_for_runs(
    server: PrefectServer,
    run_ids: list[Any],
    runs_limit: str,
    timeout: float,
    release: str | None = None,
) -> tuple[list[str], int]:
    """Every run's final state, and the most runs the account's runs limit held at once;
    `release` (the server's hold) is lifted once every run holds its place."""
    deadline = time.monotonic() + timeout
    most = 0
    while time.monotonic() < deadline:
        limit = server.api("GET", f"/v2/concurrency_limits/{runs_limit}")
        most = max(most, int(limit["active_slots"]))
        if release is not None and most >= len(run_ids):
            httpx.post(release, params={"held": "false"}, timeout=10).raise_for_status()
            release = None
        states = [server.api("GET", f"/flow_runs/{run_id}")["state"] for run_id in run_ids]
        types = [str(s["type"]) if s else "" for s in states]
        if all(t in FINAL_STATES for t in types):
            return types, most
        time.sleep(0.2)  # polling a condition, not waiting a fixed time
    raise AssertionError(f"runs not finished within {timeout} s (workers: see their logs)")


def _submits_per_minute(rows: list[dict[str, str]]) -> float:
    stamps = sorted(datetime.fromisoformat(r["submitted_at"]) for r in rows if r["submitted_at"])
    if len(stamps) < 2:
        return 0.0
    span = (stamps[-1] - stamps[0]).total_seconds()
    return (len(stamps) - 1) / span * 60 if span > 0 else 0.0
