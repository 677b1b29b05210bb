"""The command line as a user types it, in its own process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import tiny_batch
from tests.deployments.prefect_server import INPAINT_FLOWS, clean_env
from tests.reliability.helpers import ledger_entries


def _wait_for_a_paid_step(state_dir: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    """Until the ledger records a submit (the run is mid-batch), or fail with its output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger_entries(state_dir):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.1)  # polling a condition, not waiting a fixed time
    proc.kill()
    raise AssertionError(f"no submit recorded within {timeout} s: {proc.communicate()}")


def _as_a_background_job() -> None:
    """What a non-interactive shell does to `cmd &`: SIGINT ignored, inherited across exec."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("started", ["in a terminal", "as a background job"])
def test_ctrl_c_ends_with_one_line_on_how_to_resume(tmp_path: Path, started: str) -> None:
    """SIGINT stops the run however it was started: a run started with `&` from a script
    inherits SIGINT ignored, and before the CLI took it back it went on paying for the batch."""
    source = tiny_batch(tmp_path / "in", 6)
    out = tmp_path / "out"
    with LocalServer(ServerConfig(latency=60.0, workers=6)) as server:
        proc = subprocess.Popen(
            [
                INPAINT_FLOWS,
                "run",
                str(source),
                "--out",
                str(out),
                "--base-url",
                server.base_url,
                "--no-check-names",
            ],
            env=clean_env(
                PREFECT_API_URL=str(PREFECT_API_URL.value()),
                PREFECT_HOME=str(tmp_path / "prefect-home"),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_as_a_background_job if started == "as a background job" else None,
        )
        _wait_for_a_paid_step(out / ".inpaint-state", proc, timeout=120)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 130, stderr[-3000:]
    assert "Interrupted. Every paid step so far is recorded" in stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr, stderr[-3000:]


def test_check_pays_nothing_and_tells_the_bill(tmp_path: Path) -> None:
    source = tiny_batch(tmp_path / "in", 5)
    with LocalServer(ServerConfig(api_key="sk_check_key")) as server:
        result = subprocess.run(
            [INPAINT_FLOWS, "check", str(source), "--base-url", server.base_url, "--ipm", "10"],
            env=clean_env(NOVITA_API_KEY="sk_check_key", PREFECT_HOME=str(tmp_path / "ph")),
            capture_output=True,
            text=True,
            timeout=300,
        )
        submitted = server.stats()["submissions"]["total"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Key: accepted" in result.stderr
    assert "Model names: all listed by the API." in result.stderr
    assert "To pay: 5 request(s), 5 image(s)" in result.stderr
    assert "Time at 10 images/min: about 30 s" in result.stderr
    assert submitted == 0
    assert "sk_check_key" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "code", "shown"),
    [
        pytest.param(["--help"], 0, "rerun-failed", id="help"),
        pytest.param(["run"], 2, "Missing argument", id="usage-error"),
    ],
)
def test_the_prompt_exit_keeps_the_exit_code_output_and_exit_handlers(
    args: list[str], code: int, shown: str
) -> None:
    """`main()` ends the process with `os._exit`: what a normal exit does must still happen."""
    program = (
        "import atexit; atexit.register(print, 'exit handler ran', flush=False); "
        "from cli.main import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code, result.stderr[-3000:]
    assert shown in result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("exit handler ran")  # ran, and its output flushed
