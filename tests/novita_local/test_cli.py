"""`local-api`: flags map onto ServerConfig, and the process serves without printing the key."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import typer
from typer.testing import CliRunner

from novita_local import cli
from novita_local.cli import app, local_api
from novita_local.config import ServerConfig, parse_latency

KEY = "sk-cli-SECRET-4242"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0.0), ("2.5", 2.5), ("1-3", (1.0, 3.0)), (" 0.2-0.4 ", (0.2, 0.4))],
)
def test_parse_latency(text: str, expected: object) -> None:
    assert parse_latency(text) == expected


def test_parse_latency_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency("fast")


def test_help_lists_every_knob() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "local-api" in result.output
    command = typer.main.get_command(app)
    flags = {opt for param in command.params for opt in param.opts}
    for flag in (
        "--port", "--host", "--api-key", "--ipm", "--latency", "--workers", "--fail-rate",
        "--corrupt-image-rate", "--submit-429-rate", "--submit-500-rate", "--submit-503-rate",
        "--drop-submit-rate", "--drop-after-create", "--result-500-rate", "--result-429-rate",
        "--drop-poll-rate", "--seed", "--image-url-ttl", "--max-body-mb", "--request-timeout",
        "--profile", "--auth-status", "--max-side", "--balance", "--moderation-rate",
        "--unknown-status-rate",
    ):  # fmt: skip
        assert flag in flags, flag
    assert callable(local_api)


@pytest.mark.parametrize(
    "args",
    [
        ["--latency", "3-1"],
        ["--submit-429-rate", "0.7", "--submit-500-rate", "0.7"],
        ["--profile", "real"],
        ["--auth-status", "402"],
        ["--max-side", "-1"],
        ["--balance", "-5"],
        ["--moderation-rate", "2"],
    ],
    ids=[
        "latency-range-reversed",
        "rates-over-1",
        "unknown-profile",
        "auth-status-402",
        "negative-side",
        "negative-balance",
        "rate-over-1",
    ],
)
def test_impossible_flags_exit_with_a_usage_error(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], {"profile": "novita", "auth_status": 403, "max_side": None}, id="default"),
        pytest.param(
            ["--profile", "helpful", "--auth-status", "401", "--max-side", "0"],
            {"profile": "helpful", "auth_status": 401, "max_side": 0},
            id="helpful-401",
        ),
        pytest.param(
            ["--balance", "12", "--moderation-rate", "0.1", "--unknown-status-rate", "0.2"],
            {"balance": 12, "moderation_rate": 0.1, "unknown_status_rate": 0.2},
            id="account-knobs",
        ),
    ],
)
def test_flags_map_onto_the_server_config(
    monkeypatch: pytest.MonkeyPatch, args: list[str], expected: dict[str, object]
) -> None:
    served: list[ServerConfig] = []
    monkeypatch.setattr(cli, "serve", served.append)  # capture the config instead of serving
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (config,) = served
    assert {name: getattr(config, name) for name in expected} == expected


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_cli_process_serves_and_never_prints_the_key() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVITA")}
    env["NOVITA_LOCAL_API_KEY"] = KEY
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "novita_local.cli",
            "--port",
            str(port),
            "--seed",
            "5",
            "--ipm",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/_local/stats", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the CLI server did not start"
                time.sleep(0.1)
        assert httpx.get(f"{base}/v3/model").json()["code"] == 400  # key required
        ok = httpx.get(f"{base}/v3/model", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200
        assert httpx.get(f"{base}/_local/stats").json()["fault_seed"] == 5
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=15)
    output = (stdout + stderr).decode()
    assert f"http://127.0.0.1:{port}" in output
    assert "profile: novita" in output
    assert "GET /v3/model" in output  # the access log is on
    assert KEY not in output
