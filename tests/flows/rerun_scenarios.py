"""Rerun scenarios: how a first run goes wrong, what changes before the rerun, what must follow.

Shared by the in-process tests (tests/flows/test_reruns.py: a new flow run, the rerun-failed
flow and CLI) and the real-server tests (tests/deployments/: the UI's Retry of a deployment run,
the rerun-failed deployment). Every guarantee is checked on the local server's own counters
(`/_local/stats`), per job:

- done      succeeded before            → no submit, no poll, no download again;
- repoll    submitted, not finished     → the same task id is polled again, no new submit;
- resubmit  FAILED remotely / task lost → exactly one new submit;
- fixed     invalid input, then fixed   → exactly one submit.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.helpers import JobCounts, job_counts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")
BROKEN = "rocket.jpg"  # the input whose mask goes missing in scenarios that need a bad input

Expect = Literal["done", "repoll", "resubmit", "fixed"]
Kind = Literal["invalid-fixed", "poll-timeout", "remote-failed", "unknown-task"]
KINDS: tuple[Kind, ...] = ("invalid-fixed", "poll-timeout", "remote-failed", "unknown-task")

# A first run that gives up on its remote tasks: each takes SLOW_S on the server while the run
# waits at most POLL_TIMEOUT_S. The rerun keeps the same parameters (a Retry cannot change them),
# and succeeds because the remote tasks have finished by then, or, where the provider lost
# them, because a new task at no latency finishes well within POLL_TIMEOUT_S even when CI
# loads the machine (1.5 s was too tight there: a resubmitted task timed out again).
SLOW_S = 8.0
POLL_TIMEOUT_S = 4.0


def copy_examples(dst: Path) -> Path:
    shutil.copytree(EXAMPLES, dst, ignore=shutil.ignore_patterns("*.md"))
    return dst


def read_report(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "report.csv").set_index("name")


@dataclass
class Scenario:
    """One batch over a copy of examples/, against its own local server."""

    kind: Kind
    root: Path
    missing_mask: bool = False
    server: LocalServer = field(init=False)
    src: Path = field(init=False)
    out: Path = field(init=False)
    _mask: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self.src = copy_examples(self.root / "in")
        self.out = self.root / "out"
        slow = self.kind in ("poll-timeout", "unknown-task")
        config = ServerConfig(
            workers=4,
            latency=SLOW_S if slow else 0.0,
            task_fail_rate=1.0 if self.kind == "remote-failed" else 0.0,
        )
        self.server = LocalServer(config).start()
        if self.missing_mask or self.kind == "invalid-fixed":
            mask = self.src / "masks" / "rocket.png"
            self._mask = mask.read_bytes()
            mask.unlink()

    @property
    def poll_timeout_s(self) -> float:
        return POLL_TIMEOUT_S if self.kind in ("poll-timeout", "unknown-task") else 60.0

    @property
    def batch_name(self) -> str:
        return f"{self.kind}{'-and-invalid' if self.missing_mask else ''}"

    def params(self) -> dict[str, Any]:
        """Flow parameters, JSON-ready (a deployment run takes the same dict)."""
        return {"settings": self.settings()}

    def settings(self) -> dict[str, Any]:
        """The batch's settings (`BatchSettings` fields), JSON-ready."""
        return {
            "source": str(self.src),
            "out": str(self.out),
            "base_url": self.server.base_url,
            "api_key_secret": None,
            "images_per_minute": None,
            "max_in_flight": 4,
            "poll_timeout_s": self.poll_timeout_s,
            "defaults": {"steps": 1},
            "batch_name": self.batch_name,
        }

    def expectations(self) -> dict[str, Expect]:
        per_kind: dict[Kind, Expect] = {
            "invalid-fixed": "done",
            "poll-timeout": "repoll",
            "remote-failed": "resubmit",
            "unknown-task": "resubmit",
        }
        expect: dict[str, Expect] = {name: per_kind[self.kind] for name in NAMES}
        if self._mask:
            expect[BROKEN] = "fixed"
        return expect

    def counts(self) -> JobCounts:
        return job_counts(self.server)

    def report(self) -> pd.DataFrame:
        return read_report(self.out)

    # -- between the runs --------------------------------------------------------------------
    def check_first_run(self, report: pd.DataFrame, counts: JobCounts) -> None:
        reasons = {
            "poll-timeout": "POLL_TIMEOUT",
            "unknown-task": "POLL_TIMEOUT",
            "remote-failed": "TASK_FAILED",
        }
        for name, expect in self.expectations().items():
            row = report.loc[name]
            if expect == "fixed":
                assert row["status"] == "invalid", row.to_dict()
                assert row["reason"] == "MISSING_MASK"
            elif expect == "done":
                assert row["status"] == "succeeded", row.to_dict()
            else:
                assert row["status"] == "failed", row.to_dict()
                assert row["reason"] == reasons[self.kind], row.to_dict()
        paid = sorted(counts.submits_per_job)
        remote = sum(1 for e in self.expectations().values() if e != "fixed")
        # A remote failure is resubmitted once within the run (max_resubmits=1), no more.
        assert paid == [2 if self.kind == "remote-failed" else 1] * remote

    def prepare_rerun(self) -> None:
        """What happens between the runs: the user fixes inputs; the world moves on."""
        if self._mask:
            (self.src / "masks" / "rocket.png").write_bytes(self._mask)
        if self.kind == "poll-timeout":
            self.wait_for_remote_tasks()
        elif self.kind == "remote-failed":
            self._reconfigure(task_fail_rate=0.0)  # the provider recovered
        elif self.kind == "unknown-task":
            self.server.restart()  # the provider lost every task (expired, crashed)
            self._reconfigure(latency=0.0)

    def wait_for_remote_tasks(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            by_status = self.counts().stats["tasks"]["by_status"]
            running = by_status["TASK_STATUS_QUEUED"] + by_status["TASK_STATUS_PROCESSING"]
            if running == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"remote tasks still running after {timeout} s")

    def _reconfigure(self, **changes: Any) -> None:
        # Test-only: novita_local has no runtime switch for its fault knobs, and the tasks and
        # counters must stay on the same server. The fault injector reads its config per draw.
        faults = self.server.state.faults
        faults.config = dataclasses.replace(faults.config, **changes)

    # -- after the rerun ---------------------------------------------------------------------
    def check_rerun(
        self,
        first: pd.DataFrame,
        before: JobCounts,
        after: JobCounts,
        final: pd.DataFrame,
        *,
        merged: bool = False,
    ) -> None:
        check_guarantees(self.expectations(), first, before, after, final, merged=merged)

    def close(self) -> None:
        self.server.stop()


def _accepted(counts: JobCounts) -> dict[str, int]:
    by_hash = counts.stats["submissions"]["by_content_hash"]
    return {h: int(c["accepted"]) for h, c in by_hash.items()}


def check_guarantees(
    expect: Mapping[str, Expect],
    first: pd.DataFrame,
    before: JobCounts,
    after: JobCounts,
    final: pd.DataFrame,
    *,
    merged: bool = False,
) -> None:
    """Each job's counters between `before` and `after` match what its class promises."""
    new_submits = sum(1 for e in expect.values() if e in ("resubmit", "fixed"))
    assert after.total_submits - before.total_submits == new_submits, (
        f"expected {new_submits} new paid submits, got {after.total_submits - before.total_submits}"
    )
    grew = {h: n - _accepted(before).get(h, 0) for h, n in _accepted(after).items()}
    assert all(d <= 1 for d in grew.values()), f"a job was paid for twice in one rerun: {grew}"
    known_tasks = set(before.stats["polls"]["by_task"]) | set(before.stats["downloads"]["by_task"])
    for name, kind in expect.items():
        row = final.loc[name]
        old_task = str(first.loc[name, "task_id"])
        task = str(row["task_id"])
        where = f"{name} ({kind})"
        if kind == "done":
            assert row["status"] == ("succeeded" if merged else "skipped-already-done"), where
            assert task == old_task, where
            assert after.polls_for(task) == before.polls_for(task), f"{where}: polled again"
            assert after.downloads_for(task) == before.downloads_for(task), f"{where}: downloaded"
            continue
        assert row["status"] == "succeeded", f"{where}: {row.to_dict()}"
        if kind == "repoll":
            assert task == old_task, f"{where}: a new task instead of the live one"
            assert after.polls_for(task) > before.polls_for(task), f"{where}: not polled again"
        else:  # resubmit or fixed: a new task, paid once, downloaded once
            assert task not in known_tasks, f"{where}: no new task"
        assert after.downloads_for(task) == 1, f"{where}: {after.downloads_for(task)} downloads"
    if any(kind == "resubmit" for kind in expect.values()):
        # Tasks that failed or were lost are never polled again once the ledger says so,
        # except the one poll that discovers a loss (404).
        for task in known_tasks:
            extra = after.polls_for(task) - before.polls_for(task)
            assert extra <= 1, f"old task {task} polled {extra} more times"
