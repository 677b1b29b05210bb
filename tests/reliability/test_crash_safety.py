"""SIGKILL the batch flow's process at chosen points, then run the batch again.

The flow runs in a child process (`crash_driver`) against a local server this test process owns,
so the server's counters survive the kill. The child is killed with SIGKILL (no cleanup, no
`finally`), at one of these points:

- before any submit (paused right before the first one leaves);
- mid-submits (paced submits, killed once two are recorded in the ledger);
- mid-polls (every task submitted and polled, none finished);
- mid-downloads (some results downloaded, others not);
- half-way through writing a result image (its temporary file half full);
- half-way through writing report.csv, on a first run and on a run that replaces a report.

After the kill: every visible output decodes, report.csv (if any) parses and is the previous
version, the ledger files parse. After a rerun (a new flow run): every input succeeded, each job
was paid for once (or, for a submit cut off with no answer, at most twice: the ledger said
"submitting"), outputs are whole and no temporary file of an output is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL

from inpaint_flows.report import read_report
from inpaint_flows.result_images import validate_result_image
from inpaint_flows.storage import atomic_writer, is_temp_file_of
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.reliability.crash_driver import MARKER_ENV, PAUSE_ENV
from tests.reliability.helpers import (
    assert_outputs_whole,
    job_hashes,
    ledger_entries,
    names,
    outputs_of,
    report_rows,
    run_batch,
    server_view,
    stray_temp_files,
    visible_files,
    write_batch,
)

ROOT = Path(__file__).resolve().parents[2]
JOBS = 6
WAIT_S = 90.0  # for the kill point to be reached; a hang guard, not a bound


@dataclass(frozen=True)
class Watch:
    """What the test can see of the running child: the server's counters and the files."""

    server: LocalServer
    out: Path
    marker: Path

    def stats(self) -> dict[str, Any]:
        return self.server.stats()

    def ledger_states(self) -> list[str]:
        try:
            return [e.state for e in ledger_entries(self.out / ".inpaint-state").values()]
        except (ValueError, OSError):  # a file being replaced right now
            return []


@dataclass(frozen=True)
class CrashPoint:
    pause: str = ""  # a CRASH_PAUSE_AT hook of the driver
    when: Callable[[Watch], bool] | None = None  # otherwise: kill when this holds
    server: dict[str, Any] = field(default_factory=dict)
    images_per_minute: float | None = None
    previous_report: bool = False  # run the batch to the end once before the crashing run


def _mid_submits(w: Watch) -> bool:
    # Two tasks accepted (a fast job may already be done), the rest still to submit.
    return sum(s in ("submitted", "succeeded") for s in w.ledger_states()) >= 2


def _mid_polls(w: Watch) -> bool:
    # max_in_flight=4: four tasks accepted and polled, none finished (each takes 3 s). Four
    # polls alone could come from the first two or three tasks, before the fourth is accepted.
    stats = w.stats()
    return (
        stats["submissions"]["accepted"] >= 4
        and stats["polls"]["total"] >= 4
        and stats["downloads"]["total"] == 0
    )


def _mid_downloads(w: Watch) -> bool:
    # A result on disk (the server counts a download before the client has checked and written
    # it) and jobs still to download.
    return bool(results_in(w.out)) and w.stats()["downloads"]["total"] < JOBS


def results_in(out: Path) -> list[Path]:
    """The result images written so far (the output folder's own files, no reports)."""
    return [p for p in visible_files(out) if p.parent == out]


POINTS = [
    pytest.param(CrashPoint(pause="submit"), id="before-any-submit"),
    pytest.param(
        CrashPoint(when=_mid_submits, images_per_minute=30, server={"latency": 1.0}),
        id="mid-submits",
    ),
    pytest.param(
        CrashPoint(when=_mid_polls, server={"latency": 3.0, "workers": 6}), id="mid-polls"
    ),
    pytest.param(
        CrashPoint(when=_mid_downloads, server={"latency": (0.2, 4.0), "workers": 6}),
        id="mid-downloads",
    ),
    pytest.param(CrashPoint(pause="output"), id="mid-output-write"),
    pytest.param(CrashPoint(pause="report"), id="mid-first-report-write"),
    pytest.param(CrashPoint(pause="report", previous_report=True), id="mid-report-rewrite"),
]


def start_driver(
    src: Path, out: Path, base_url: str, point: CrashPoint, marker: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
        PAUSE_ENV: point.pause,
        MARKER_ENV: str(marker),
    }
    args = [sys.executable, "-m", "tests.reliability.crash_driver", str(src), str(out), base_url]
    if point.images_per_minute:
        args.append(str(point.images_per_minute))
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_and_kill(proc: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    try:
        while not ready():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(
                    f"the flow ended (exit {proc.returncode}) before the kill point:\n{err}"
                )
            if time.monotonic() > deadline:
                pytest.fail("the kill point was not reached in time")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver's own process group
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("point", POINTS)
async def test_sigkill_then_rerun(point: CrashPoint, tmp_path: Path) -> None:
    src = write_batch(tmp_path / "in", JOBS, seed=7)
    out = tmp_path / "out"
    marker = tmp_path / "paused-at"
    hashes = job_hashes(src)

    with LocalServer(ServerConfig(seed=5, **point.server)) as server:
        old_report: bytes | None = None
        if point.previous_report:
            assert (await run_batch(src, out, server.base_url)).completed
            old_report = (out / "report.csv").read_bytes()
            # Make the next run do real work: one output lost, fetched again from its task.
            first_row = report_rows(out).iloc[0]
            (out / outputs_of(first_row)[0]).unlink()

        watch = Watch(server, out, marker)
        proc = start_driver(src, out, server.base_url, point, marker)
        when = point.when
        wait_and_kill(proc, (lambda: when(watch)) if when is not None else marker.exists)

        # --- what the kill left behind --------------------------------------------------
        at_kill = ledger_entries(out / ".inpaint-state")  # parses, or raises
        unknown = {name for name, e in at_kill.items() if e.state == "submitting"}
        stats = server_view(server)
        states = Counter(e.state for e in at_kill.values())
        outputs_at_kill = results_in(out)
        # The kill landed where it was meant to.
        if point.pause == "submit":
            assert stats.total_submitted == 0
        if point.when is _mid_submits:
            assert 2 <= stats.total_accepted < JOBS
        if point.when is _mid_polls:
            assert stats.total_accepted >= 4 and not outputs_at_kill
        if point.when is _mid_downloads:
            assert 1 <= len(outputs_at_kill) < JOBS
        for path in visible_files(out):
            validate_result_image(path.read_bytes())  # no partial result where one is expected
        report = out / "report.csv"
        if old_report is not None:
            assert report.read_bytes() == old_report, "report.csv is the previous one, whole"
        if report.exists():
            read_report(report)  # parses
        if point.pause == "report" and old_report is None:
            assert not report.exists(), "no half report.csv"
        if point.pause in ("output", "report"):
            assert stray_temp_files(out), "the kill did land inside a write"

        # --- a new flow run finishes the batch --------------------------------------------
        rerun = await run_batch(src, out, server.base_url)
        assert rerun.completed
        rows = report_rows(out)
        assert sorted(rows["name"]) == sorted(hashes)
        assert names(rows, ("succeeded", "skipped-already-done")) == set(hashes)
        assert_outputs_whole(out, rows)
        after = server_view(server)
        for name, digest in hashes.items():
            paid = after.accepted(digest)
            if name in unknown:
                # The kill cut a submit off: the ledger said so, and the rerun submitted again.
                assert 1 <= paid <= 2, (name, paid)
            else:
                assert paid == 1, (name, paid, at_kill.get(name))
        # Tasks recorded before the kill were polled again, not paid again.
        for entry in at_kill.values():
            if entry.state == "submitted" and entry.task_id:
                assert after.stats["polls"]["by_task"].get(entry.task_id, 0) >= 1
        leftovers = [p for p in stray_temp_files(out) if not p.name.startswith(".report.")]
        assert not leftovers, f"temporary files of outputs left behind: {leftovers}"
        print(
            f"crash point {point_id(point)}: ledger at kill {dict(states)}, "
            f"{stats.total_accepted} tasks paid at kill, {len(outputs_at_kill)} outputs at kill; "
            f"after rerun: {dict(Counter(rows['status']))}, paid per job "
            f"{dict(Counter(after.accepted(d) for d in hashes.values()))}"
        )


def point_id(point: CrashPoint) -> str:
    return next(str(p.id) for p in POINTS if p.values[0] is point)


@pytest.mark.parametrize("name", ["img0.png", "ça va/photo 1.png", "x" * 80 + ".png"])
def test_a_killed_writes_temporary_file_is_recognised_as_stale(tmp_path: Path, name: str) -> None:
    """What `atomic_writer` leaves when killed is what the rerun's clean-up looks for."""
    target = tmp_path / name
    with atomic_writer(target) as fh:
        fh.write(b"half")
        (temp,) = [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
        assert is_temp_file_of(temp.name, target.name)
        assert not is_temp_file_of(temp.name, "other" + target.name)
    assert not is_temp_file_of(target.name, target.name)
