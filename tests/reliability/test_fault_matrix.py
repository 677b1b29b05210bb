"""The batch flow against every fault the local server (or a slow proxy) can inject.

For each fault, a small batch runs through the real flow (Prefect test harness, the local server
over HTTP), then a second flow run with the faults switched off. After each run:

- every input is in the report exactly once, with a status that matches what the server saw
  (a `succeeded` row names a task the server served files for) and, when failed, a reason this
  fault can truthfully cause;
- every output a row names is a complete, decodable image;
- no job was paid for more than once, unless a remote task was lost, failed, or its submit's
  outcome was unknown: then at most once more per such loss (`allowance`), read from the ledger;
- the run ends within a hang guard (not a performance bound);
- after the second run every input has succeeded.

Faults are drawn from the server's seeded generator; which request meets which fault still
depends on how concurrent requests interleave, so the assertions hold for any draw. Backoff
sleeps in the client are shortened tenfold (`fast_backoff`) to keep the matrix quick; the number
of attempts and every decision are unchanged.

`python -m tests.reliability.fault_table` runs this matrix and prints its faults x outcomes table.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from inpaint_flows import client as client_module
from inpaint_flows.ledger import LedgerEntry
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.reliability.helpers import (
    RunResult,
    assert_outputs_whole,
    job_hashes,
    ledger_entries,
    names,
    report_rows,
    run_batch,
    server_view,
    stray_temp_files,
    write_batch,
)
from tests.reliability.proxy import MisbehavingProxy

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

SEED = 1234
TABLE_ENV = "INPAINT_FAULT_TABLE"  # a file path: each case appends its row as one JSON line


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: how to break things and what may truthfully happen."""

    server: dict[str, Any] = field(default_factory=dict)  # ServerConfig fields
    reasons: frozenset[str] = frozenset()  # reasons a failed row may give under this fault
    fired: str | None = None  # a `faults` counter of the server that must be > 0
    jobs: int = 6
    proxy: dict[str, Any] | None = None  # MisbehavingProxy arguments
    request_timeout_s: float = 60.0
    poll_timeout_s: float = 60.0
    restart_after_downloads: int | None = None  # restart the server after this many downloads
    fresh_server_for_rerun: bool = False  # the fault lives in the server's settings
    unknown_creates_task: bool = False  # a submit whose answer is lost did create a task


FAULTS = [
    pytest.param(
        Fault(
            server={"submit_429_rate": 0.6},
            reasons=frozenset({"RATE_LIMIT_EXCEEDED"}),
            fired="submit_429",
            jobs=12,
        ),
        id="submit-429-storm",
    ),
    pytest.param(
        Fault(
            server={"submit_500_rate": 0.5},
            reasons=frozenset({"CREATE_TASK_FAILED"}),
            fired="submit_500",
            jobs=12,
        ),
        id="submit-500",
    ),
    pytest.param(
        Fault(
            server={"submit_503_rate": 0.5},
            reasons=frozenset({"SERVICE_UNAVAILABLE"}),
            fired="submit_503",
            jobs=12,
        ),
        id="submit-503",
    ),
    pytest.param(
        Fault(
            server={"drop_submit_rate": 0.5},
            reasons=frozenset({"SUBMIT_OUTCOME_UNKNOWN"}),
            fired="submit_drop",
            jobs=10,
        ),
        id="submit-drop-before-create",
    ),
    pytest.param(
        Fault(
            server={"drop_submit_rate": 0.5, "drop_after_create": True},
            reasons=frozenset({"SUBMIT_OUTCOME_UNKNOWN"}),
            fired="submit_drop",
            jobs=10,
            unknown_creates_task=True,
        ),
        id="submit-drop-after-create",
    ),
    pytest.param(
        Fault(
            server={"drop_poll_rate": 0.5, "latency": 0.5},
            reasons=frozenset({"TRANSPORT_ERROR"}),
            fired="poll_drop",
        ),
        id="poll-drop",
    ),
    pytest.param(
        Fault(
            server={"result_500_rate": 0.5, "latency": 0.5},
            reasons=frozenset({"GET_RESULT_FAILED"}),
            fired="poll_500",
        ),
        id="task-result-500",
    ),
    pytest.param(
        Fault(
            server={"result_429_rate": 0.5, "latency": 0.5},
            reasons=frozenset({"RATE_LIMIT_EXCEEDED"}),
            fired="poll_429",
        ),
        id="task-result-429",
    ),
    pytest.param(
        Fault(
            server={"task_fail_rate": 0.6},
            reasons=frozenset({"TASK_FAILED"}),
            fired="task_failed",
            jobs=10,
        ),
        id="task-failed",
    ),
    pytest.param(
        Fault(
            proxy={
                "delay": 2.0,
                "slow_rates": {"submit": 0.3, "poll": 0.3, "download": 0.3},
            },
            request_timeout_s=0.75,
            unknown_creates_task=True,
            reasons=frozenset({"SUBMIT_OUTCOME_UNKNOWN", "TRANSPORT_ERROR", "DOWNLOAD_FAILED"}),
            jobs=8,
        ),
        id="slow-responses",
    ),
    pytest.param(
        Fault(
            server={"image_url_ttl": 0, "latency": 0.3},
            reasons=frozenset({"RESULT_URL_EXPIRED"}),
            jobs=4,
            fresh_server_for_rerun=True,
        ),
        id="result-url-expired",
    ),
    pytest.param(
        Fault(
            server={"latency": (0.2, 3.0), "workers": 2},
            reasons=frozenset({"TASK_NOT_FOUND"}),
            restart_after_downloads=1,
        ),
        id="server-restart",
    ),
    pytest.param(
        Fault(
            server={"latency": 4.0, "workers": 8},
            poll_timeout_s=1.0,
            reasons=frozenset({"POLL_TIMEOUT"}),
            jobs=4,
        ),
        id="task-slower-than-poll-budget",
    ),
    pytest.param(
        Fault(
            server={"corrupt_image_rate": 0.6},
            reasons=frozenset({"CORRUPT_RESULT_IMAGE"}),
            fired="corrupt_image",
            jobs=10,
        ),
        id="corrupt-result-image",
    ),
]


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    async def quick(seconds: float) -> None:
        await asyncio.sleep(seconds / 10)

    monkeypatch.setattr(client_module, "_sleep", quick)


def restart_when(server: LocalServer, downloads: int) -> Callable[[], None]:
    """Start a thread that restarts `server` once it has served `downloads` files."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if server.stats()["downloads"]["total"] >= downloads:
                server.restart()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def join() -> None:
        stop.set()
        thread.join(5)

    return join


def check_report(
    out: Path, expected: set[str], reasons: frozenset[str], served: Callable[[str], int]
) -> None:
    """Each input once; statuses and reasons truthful; every named output whole."""
    rows = report_rows(out)
    assert sorted(rows["name"]) == sorted(expected), "every input exactly once"
    assert set(rows["status"]) <= {"succeeded", "failed", "skipped-already-done"}
    for _, row in rows.iterrows():
        if row["status"] == "failed":
            assert row["reason"] in reasons, (row["name"], row["reason"], row["message"])
            assert isinstance(row["message"], str) and row["message"].strip()
        else:
            assert not isinstance(row["reason"], str), (row["name"], row["reason"])
        if row["status"] == "succeeded":
            # Truthful: the server really handed out this task's files.
            assert served(str(row["task_id"])) >= 1, (row["name"], row["task_id"])
    assert_outputs_whole(out, rows)
    assert not stray_temp_files(out), stray_temp_files(out)


def losses(entry: LedgerEntry | None) -> int:
    """How often this job's paid task was lost, failed, or its submit's outcome was unknown."""
    if entry is None:
        return 0
    return entry.remote_failures + (1 if entry.state == "submitting" else 0)


def check_paid(
    hashes: dict[str, str], accepted: Callable[[str], int], allowance: dict[str, int]
) -> dict[str, int]:
    paid = {name: accepted(digest) for name, digest in hashes.items()}
    for name, count in paid.items():
        assert count <= 1 + allowance.get(name, 0), (name, count, allowance.get(name, 0))
    return paid


@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_then_rerun(
    fault: Fault, tmp_path: Path, fast_backoff: None, request: pytest.FixtureRequest
) -> None:
    case = request.node.callspec.id
    src = write_batch(tmp_path / "in", fault.jobs, seed=zlib.crc32(case.encode()) % 1000)
    out = tmp_path / "out"
    state_dir = out / ".inpaint-state"
    hashes = job_hashes(src)
    assert len(hashes) == fault.jobs

    with ExitStack() as stack:
        server = stack.enter_context(LocalServer(ServerConfig(seed=SEED, **fault.server)))
        base_url = server.base_url
        proxy = None
        if fault.proxy is not None:
            proxy = stack.enter_context(MisbehavingProxy(server.base_url, seed=SEED, **fault.proxy))
            base_url = proxy.base_url
        join = (
            restart_when(server, fault.restart_after_downloads)
            if fault.restart_after_downloads
            else None
        )

        first = await run_batch(
            src, out, base_url, fault.request_timeout_s, poll_timeout_s=fault.poll_timeout_s
        )
        if join is not None:
            join()
        view = server_view(server)
        ledger = ledger_entries(state_dir)

        # The fault really happened.
        if fault.fired:
            assert view.faults().get(fault.fired, 0) > 0, view.faults()
        if proxy is not None:
            assert sum(proxy.slowed.values()) > 0
        if fault.restart_after_downloads:
            assert view.stats["restarts"] == 1
        if fault.server.get("image_url_ttl") == 0:
            assert view.stats["downloads"]["refused"]["expired"] > 0

        check_report(out, set(hashes), fault.reasons, view.downloads_for)
        allowance = {name: losses(ledger.get(name)) for name in hashes}
        paid_first = check_paid(hashes, view.accepted, allowance)
        unknown = {n for n, e in ledger.items() if e.state == "submitting"}
        failed_first = names(report_rows(out), "failed")

        # Second run: the same server with its faults switched off (the ledger's task ids are
        # this server's), or a fresh server when the fault is in settings fixed at start.
        if fault.fresh_server_for_rerun:
            rerun_server = stack.enter_context(LocalServer(ServerConfig(seed=SEED + 1)))
        else:
            server.state.faults.config = ServerConfig(seed=SEED)
            rerun_server = server
        second = await run_batch(src, out, rerun_server.base_url)
        view2 = server_view(rerun_server)
        ledger2 = ledger_entries(state_dir)

        check_report(out, set(hashes), frozenset(), view2.downloads_for)
        rows = report_rows(out)
        assert second.completed
        assert names(rows, "skipped-already-done") == set(hashes) - failed_first
        assert names(rows, "succeeded") == failed_first
        if fault.fresh_server_for_rerun:
            # A new server: only the jobs not yet succeeded are submitted, each once.
            paid_second = check_paid(hashes, view2.accepted, {})
            assert {n for n, c in paid_second.items() if c} == failed_first
        else:
            # Exactly one paid task per job, plus one per task lost or failed remotely, plus one
            # for a submit whose answer never came if that submit created a task.
            expected = {
                name: 1
                + ledger2[name].remote_failures
                + (1 if name in unknown and fault.unknown_creates_task else 0)
                for name in hashes
            }
            paid_second = {name: view2.accepted(digest) for name, digest in hashes.items()}
            assert paid_second == expected
            for name in set(hashes) - failed_first:
                assert paid_second[name] == paid_first[name], f"{name} was paid again"

    injected = view.faults()
    if proxy is not None:
        injected.update({f"slow_{kind}": n for kind, n in proxy.slowed.items()})
    record_row(case, fault, view, injected, first, second, paid_first, paid_second)


def record_row(
    case: str,
    fault: Fault,
    view: Any,
    injected: dict[str, int],
    first: RunResult,
    second: RunResult,
    paid_first: dict[str, int],
    paid_second: dict[str, int],
) -> None:
    path = os.environ.get(TABLE_ENV)
    if not path:
        return
    row = {
        "fault": case,
        "jobs": fault.jobs,
        "injected": injected,
        "restarts": view.stats["restarts"],
        "expired_downloads": view.stats["downloads"]["refused"]["expired"],
        "first": {
            "elapsed_s": round(first.elapsed, 1),
            "statuses": dict(first.statuses),
            "reasons": dict(first.reasons),
            "paid": dict(Counter(paid_first.values())),
        },
        "rerun": {
            "elapsed_s": round(second.elapsed, 1),
            "statuses": dict(second.statuses),
            "paid": dict(Counter(paid_second.values())),
        },
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
