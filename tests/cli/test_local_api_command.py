"""`inpaint-flows local-api`: the server's own CLI, loaded only when that command runs."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from cli.app import app
from tests.benchmarks.bench_support import REPO


def test_local_api_help_is_the_servers_own() -> None:
    result = CliRunner().invoke(app, ["local-api", "--help"])
    assert result.exit_code == 0, result.output
    for flag in ("--port", "--latency", "--profile", "--workers"):
        assert flag in result.output


def test_local_api_refuses_a_bad_flag_like_the_server_cli() -> None:
    result = CliRunner().invoke(app, ["local-api", "--latency", "3-1"])
    assert result.exit_code != 0


def test_the_other_commands_never_load_the_servers_packages() -> None:
    code = (
        "import sys, cli.app, flows.inpaint_batch; "
        "print(sorted(m for m in ('cv2', 'fastapi', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
