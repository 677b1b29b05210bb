"""`inpaint-flows run --canary K` asks in the terminal, and never hangs without one."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from prefect.settings import PREFECT_API_URL

from novita_local.server import LocalServer
from tests.deployments.prefect_server import INPAINT_FLOWS, clean_env
from tests.flows.canary_support import write_batch

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run_canary(tmp_path: Path, server: LocalServer, **popen: object) -> subprocess.Popen[str]:
    manifest = write_batch(tmp_path / "in")
    return subprocess.Popen(
        [
            *(INPAINT_FLOWS, "run", str(manifest), "--out", str(tmp_path / "out")),
            *("--base-url", server.base_url, "--steps", "1", "--canary", "2"),
        ],
        env=clean_env(
            PREFECT_API_URL=str(PREFECT_API_URL.value()),
            PREFECT_HOME=str(tmp_path / "prefect-home"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[call-overload]
    )


def test_without_a_terminal_the_timeout_rule_applies_at_once_and_says_so(
    tmp_path: Path,
) -> None:
    with LocalServer() as server:
        proc = run_canary(tmp_path, server, stdin=subprocess.DEVNULL)
        _, stderr = proc.communicate(timeout=300)
        submitted = server.stats()["submissions"]["accepted"]

    assert proc.returncode == 1, stderr[-3000:]
    assert "No terminal to ask (stdin is not a TTY)" in stderr
    assert str(tmp_path / "out" / "canary" / "index.html") in " ".join(stderr.split())
    assert submitted == 2  # the canary only
    report = pd.read_csv(tmp_path / "out" / "report.csv")
    assert (report["status"] == "not-submitted").sum() == 4


def test_in_a_terminal_an_answer_typed_there_runs_the_rest(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"a\n")  # typed ahead: read when the question is asked
        with LocalServer() as server:
            proc = run_canary(tmp_path, server, stdin=terminal)
            stdout, stderr = proc.communicate(timeout=300)
            submitted = server.stats()["submissions"]["accepted"]
    finally:
        os.close(terminal)
        os.close(controller)

    assert proc.returncode == 0, stderr[-3000:]
    said = " ".join(stderr.split())
    assert "Canary of batch.csv: 2 of 2 done; 4 job(s) wait for your approval" in said
    assert "[a]pprove, [c]ancel" in stdout + said  # the question was asked
    assert submitted == 6
    report = pd.read_csv(tmp_path / "out" / "report.csv")
    assert set(report["status"]) == {"succeeded"}
