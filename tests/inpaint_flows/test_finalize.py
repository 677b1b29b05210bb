"""Closing a batch: two runs that share an output folder write its report one at a time; the
report a flow returns stays cheap for Prefect and asyncio to handle."""

from __future__ import annotations

import fcntl
import pickle
import threading
from pathlib import Path
from typing import Any

from prefect.states import Completed
from prefect.utilities.collections import visit_collection

from inpaint_flows.finalize import REPORT_LOCK, BatchReport, ReportRows, finalize_report
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


def test_a_returned_report_is_not_walked_row_by_row(tmp_path: Path) -> None:
    report = finalize_report([outcome(f"{i}.png") for i in range(50)], str(tmp_path), title="t")
    assert isinstance(report.outcomes, ReportRows)
    assert [o.name for o in report.outcomes] == [f"{i}.png" for i in range(50)]
    assert report.outcomes[3].name == "3.png" and len(report.outcomes[:2]) == 2
    # What Prefect does to a flow's return value (looking for futures), and asyncio's repr of
    # the run's task at its end: neither goes into the rows.
    visited: list[Any] = []
    visit_collection(Completed(data=report), visit_fn=visited.append, return_data=False)
    assert not any(isinstance(v, type(report.outcomes[0])) for v in visited)
    assert report.outcomes in visited
    assert "<50 report rows>" in repr(Completed(data=report))
    assert "0.png" not in repr(report)


def test_report_rows_validate_serialize_and_pickle_like_a_tuple(tmp_path: Path) -> None:
    rows = [outcome("a.png"), outcome("b.png")]
    report = finalize_report(rows, str(tmp_path), title="t")
    again = BatchReport.model_validate({**dict(report), "outcomes": tuple(rows)})
    assert again == report
    assert report.model_dump()["outcomes"] == tuple(o.model_dump() for o in rows)
    assert BatchReport.model_validate_json(report.model_dump_json()) == report
    assert pickle.loads(pickle.dumps(report)) == report
