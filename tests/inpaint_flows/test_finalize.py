"""Closing a batch: two runs that share an output folder write its report one at a time."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

from inpaint_flows.finalize import REPORT_LOCK, finalize_report
from inpaint_flows.report import outcomes_from_frame, outcomes_to_frame, read_report, write_report
from tests.inpaint_flows.test_report import outcome


def test_a_merging_run_waits_for_another_runs_report_and_keeps_its_rows(tmp_path: Path) -> None:
    finalize_report([outcome("a.png"), outcome("b.png")], str(tmp_path), title="first")
    with open(tmp_path / REPORT_LOCK, "a+b") as held:  # another run is writing the report
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        merging = threading.Thread(
            target=finalize_report,
            args=([outcome("c.png")], str(tmp_path)),
            kwargs={"title": "rerun", "merge": True},
        )
        merging.start()
        merging.join(0.5)
        assert merging.is_alive(), "the merge did not wait for the report being written"
        # What the other run writes meanwhile is what the merge must read.
        rows = [outcome("a.png"), outcome("b.png"), outcome("d.png")]
        write_report(outcomes_to_frame(rows), str(tmp_path))
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    merging.join(60)
    names = sorted(o.name for o in outcomes_from_frame(read_report(tmp_path / "report.csv")))
    assert names == ["a.png", "b.png", "c.png", "d.png"]
