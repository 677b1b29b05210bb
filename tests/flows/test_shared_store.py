"""Runs that share a job store: two at once over one folder, and a folder from an older release.

The two runs are separate processes (`shared_store_driver`) started together against one local
server, whose `/_local/stats` counts what was paid per job. Once with the SQLite default, once
with PostgreSQL (a throwaway cluster; its URL, password included, given to the runs in
`$INPAINT_STATE_URL` as on a worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL

from inpaint_flows.ledger_json import write_json_entry
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.reliability.helpers import (
    HANG_GUARD_S,
    assert_outputs_whole,
    job_hashes,
    ledger_entries,
    report_rows,
    run_batch,
    server_view,
    write_batch,
)

ROOT = Path(__file__).resolve().parents[2]
JOBS = 6
DONE = ("succeeded", "skipped-already-done")

pytestmark = pytest.mark.usefixtures("prefect_harness")


def start_run(src: Path, out: Path, base_url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.flows.shared_store_driver", str(src), str(out), base_url],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise AssertionError(f"the run did not start: {line} {proc.communicate()}")
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
async def test_two_runs_over_one_folder_at_once_both_finish_and_pay_each_job_once(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    src = write_batch(tmp_path / "in", JOBS, seed=3)
    out = tmp_path / "out"
    hashes = job_hashes(src)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
    }
    secret = None
    if store == "postgresql":
        server_pg = request.getfixturevalue("postgres_server")
        env["INPAINT_STATE_URL"] = server_pg.url(server_pg.create_database())
        secret = server_pg.password

    # Each task takes 2 s and each run keeps 2 in flight: one run alone needs ~6 s, so runs
    # started together meet on held jobs (the assertions below check that they did).
    with LocalServer(ServerConfig(latency=2.0, workers=8, seed=1)) as server:
        runs = [start_run(src, out, server.base_url, env) for _ in range(2)]
        for proc in runs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=HANG_GUARD_S) for proc in runs]
        paid = server_view(server)

    results: list[dict[str, Any]] = []
    for proc, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    for result in results:  # neither run was refused; every input succeeded in each
        assert result["completed"], result["message"]
        assert set(result["statuses"]) == set(hashes)
        assert set(result["statuses"].values()) <= set(DONE), result["statuses"]
    # Each job was done by one run and found done by the other (it waited, or came later).
    for name in hashes:
        assert sorted(r["statuses"][name] for r in results) == sorted(DONE), name
    # They ran at the same time: one met a job the other held, and waited for it.
    assert any("is working on this job; waiting for it" in err for _, err in outputs), results
    for name, digest in hashes.items():
        assert paid.accepted(digest) == 1, (name, paid.accepted(digest))
    rows = report_rows(out)
    assert sorted(rows["name"]) == sorted(hashes)
    assert set(rows["status"]) <= set(DONE)
    assert assert_outputs_whole(out, rows) == JOBS
    sqlite_file = out / ".inpaint-state" / "jobs.sqlite3"
    assert sqlite_file.exists() == (store == "sqlite"), "the runs used the store asked for"
    if secret is not None:  # the database's password is in no file and no output
        for path in out.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        for stdout, stderr in outputs:
            assert secret not in stdout and secret not in stderr


async def test_a_folder_an_older_release_ran_is_resumed_without_paying_again(
    tmp_path: Path,
) -> None:
    src = write_batch(tmp_path / "in", 3, seed=4)
    out = tmp_path / "out"
    state = out / ".inpaint-state"
    with LocalServer(ServerConfig(seed=2)) as server:
        assert (await run_batch(src, out, server.base_url)).completed
        # What an older release leaves: JSON files, no database. One job was mid-flight: its
        # task submitted and not yet downloaded.
        entries = ledger_entries(state)
        name, task = next(iter(entries.items()))
        in_flight = task.evolve(state="submitted", outputs=(), output_sizes=(), finished_at=None)
        entries[name] = in_flight
        for entry in entries.values():
            write_json_entry(state, entry)
        for path in state.glob("jobs.sqlite3*"):
            path.unlink()
        (out / task.outputs[0]).unlink()
        paid_before = server_view(server).total_accepted

        rerun = await run_batch(src, out, server.base_url)

        after = server_view(server)
    assert rerun.completed
    assert after.total_accepted == paid_before, "an imported job was paid for again"
    assert after.stats["polls"]["by_task"].get(task.task_id, 0) >= 1, "its task was polled"
    rows = report_rows(out)
    assert rows.loc[name, "status"] == "succeeded"
    assert set(rows.drop(index=name)["status"]) == {"skipped-already-done"}
    assert assert_outputs_whole(out, rows) == 3
    imported = ledger_entries(state)
    assert imported.keys() == entries.keys()
    assert imported[name].state == "succeeded" and imported[name].task_id == task.task_id
