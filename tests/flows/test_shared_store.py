"""Runs that share a job store: two at once over one folder, and a folder from an older release.

The two runs are separate processes (`shared_store_driver`), made to overlap, against one local
server, whose `/_local/stats` counts what was paid per job. Once with the SQLite default, once
with PostgreSQL (a throwaway cluster; its URL, password included, given to the runs in
`$INPAINT_STATE_URL` as on a worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from prefect.settings import PREFECT_API_URL

from inpaint_flows.ledger_json import write_json_entry
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.canary_support import wait_until
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


WAITING = "is working on this job; waiting for it"  # the ledger's line for a held job


class Run:
    """One driver process; its output is read as it comes, so the test can wait on a line."""

    def __init__(self, src: Path, out: Path, base_url: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.flows.shared_store_driver", str(src), str(out), base_url],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.waited = threading.Event()  # it met a job the other run holds
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise AssertionError(f"the run did not start: {line} {self.proc.communicate()}")
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            if WAITING in line:
                self.waited.set()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self) -> tuple[str, str]:
        self.proc.wait(timeout=HANG_GUARD_S)
        for reader in self.readers:
            reader.join(timeout=HANG_GUARD_S)
        return "".join(self.stdout), "".join(self.stderr)


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

    # Made to overlap, not timed to: the server keeps tasks queued while run A holds a job it
    # has submitted, and lets them go only once run B has met that job and waits for it.
    with LocalServer(ServerConfig(latency=0.5, workers=8, seed=1)) as server:

        async def a_submitted() -> bool:
            return bool(server.stats()["submissions"]["accepted"])

        async def b_waits() -> bool:
            return run_b.waited.is_set()

        run_a, run_b = Run(src, out, server.base_url, env), Run(src, out, server.base_url, env)
        server.hold()
        run_a.go()
        await wait_until("run A submits a job", a_submitted, HANG_GUARD_S, run_a.running)
        run_b.go()
        await wait_until("run B meets a job run A holds", b_waits, HANG_GUARD_S, run_b.running)
        server.hold(False)
        runs = [run_a, run_b]
        outputs = [run.finish() for run in runs]
        paid = server_view(server)

    results: list[dict[str, Any]] = []
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.proc.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    for result in results:  # neither run was refused; every input succeeded in each
        assert result["completed"], result["message"]
        assert set(result["statuses"]) == set(hashes)
        assert set(result["statuses"].values()) <= set(DONE), result["statuses"]
    # Each job was done by one run and found done by the other (it waited, or came later).
    for name in hashes:
        assert sorted(r["statuses"][name] for r in results) == sorted(DONE), name
    # They ran at the same time: one met a job the other held, and waited for it.
    assert any(WAITING in err for _, err in outputs), results
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
